"""Fixture scores of a released deep-salience model through the plain model and the fast path.

Usage:
    python benchmarks/score_fast_path.py [--out benchmarks/results/fast_path_scores.json]

The fast inference copy (`mir.models.fused.inference_model`, the default of
`mir.inference.infer_track`) must give the plain model's outputs to float rounding in float32,
so the scores must not move; in bfloat16 and int8 (opt-in) they may move a little. For each case (a
released model on the real fixtures that test it: ``multif0`` on the Bach10 chorales,
``melody2`` on MedleyDB MusicDelta_Reggae) the whole track runs through `infer_track` four
ways (plain model, fast path in float32, bfloat16 and int8), is decoded by the task and
scored with its `mir_eval` metrics; the largest difference of the raw outputs from the plain
model's is reported too. Fixtures: ``$MIR_FIXTURES`` or ``../shared/fixtures``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
CASES = (  # (released model, loader, tracks, metrics)
    (
        "multif0",
        "bach10",
        ("01-AchGottundHerr", "02-AchLiebenChristen"),
        ("Precision", "Recall", "Accuracy"),
    ),
    (
        "melody2",
        "medleydb",
        ("MusicDelta_Reggae",),
        ("Overall Accuracy", "Raw Pitch Accuracy", "Voicing Recall"),
    ),
)
WAYS = {
    "plain model": {"fast": False},
    "fast path, float32": {"fast": True},
    "fast path, bfloat16": {"fast": True, "dtype": torch.bfloat16},
    "fast path, int8": {"fast": True, "dtype": torch.qint8},
}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/fast_path_scores.json")
    args = p.parse_args(argv)

    import mir.pretrained as pretrained
    from mir.data.bach10 import Bach10
    from mir.data.medleydb import MedleyDB
    from mir.inference import infer_track
    from mir.report import write_json

    env = os.environ.get("MIR_FIXTURES")
    root = Path(env) if env else REPO.parent / "shared" / "fixtures"
    if not root.is_dir():
        raise SystemExit(f"real-audio fixtures not found at {root} (set MIR_FIXTURES)")
    loaders = {"bach10": Bach10, "medleydb": MedleyDB}
    results: dict = {}
    for model_name, loader, track_ids, keys in CASES:
        module, _ = pretrained.load(f"deepsalience/{model_name}")
        (task_name,) = module.tasks
        task = module.tasks[task_name]
        rows: dict[str, dict[str, float]] = {}
        for way, kw in WAYS.items():
            scores: dict[str, list[float]] = {k: [] for k in keys}
            diffs = []
            for track_id in track_ids:
                track = loaders[loader](root / loader, sr=module.model.frontend.sr).load(track_id)
                args_ = (module.model, track.audio, {task_name: "frames"})
                raw = infer_track(*args_, module.chunk_seconds, module.margin_seconds, **kw)
                if way != "plain model":
                    plain = infer_track(
                        *args_, module.chunk_seconds, module.margin_seconds, fast=False
                    )
                    diffs.append(float(np.abs(raw[task_name] - plain[task_name]).max()))
                s = task.evaluate_track(track, task.decode(raw[task_name], track))
                for k in keys:
                    scores[k].append(s[k])
            rows[way] = {k: float(np.mean(v)) for k, v in scores.items()}
            if diffs:
                rows[way]["max_abs_logit_diff_vs_plain"] = max(diffs)
            print(
                f"{model_name} on {loader} ({len(track_ids)} tracks), {way}: "
                + ", ".join(
                    f"{k} {v:.1e}" if k.startswith("max_abs") else f"{k} {v:.4f}"
                    for k, v in rows[way].items()
                )
            )
        results[f"{model_name}/{loader}"] = rows
    write_json(args.out, results)
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
