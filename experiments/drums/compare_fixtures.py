"""Score a drums+beats checkpoint and madmom on the MDB Drums fixtures with one scorer.

    python experiments/drums/compare_fixtures.py --ckpt <run>/checkpoints/last.ckpt \
        [--root ../shared/fixtures/mdb_drums] [--madmom-json est.json] [--out scores.json] \
        [--per-track-dir DIR]

Every track of the root (all folds: the model never saw MDB Drums) is read with
`mir.data.mdb_drums.MDBDrums` (``drum_only`` audio, 6-class labels) and scored with the
tasks' own `evaluate_track` (`mir_eval.onset` at 50 and 20 ms for kick/snare/hi-hat,
`mir_eval.beat` for beats, first 5 s not scored). madmom's estimates come from
`benchmarks/madmom_peer.py` run in its own venv (``--madmom-json``; skipped if absent).

"Generic onsets" (madmom's onset detector against every annotated drum hit): the
reference is the union of all six classes' onsets, with hits closer than 30 ms merged
into one (simultaneous kick and hi-hat are one onset; madmom's OnsetDetector combines
within 30 ms too), scored by `mir_eval.onset.evaluate` at 50 ms. Our model's generic
onsets are the union of its kick/snare/hi-hat estimates merged the same way (it has no
tom or cymbal output, so this understates it).

``--per-track-dir DIR`` writes ``DIR/per_track.json`` in `mir.evaluate`'s format
(``{"model": {task: [{"track": "mdb_drums/<id>", <metric>: value}]}}``, tasks ``drums``,
``beats`` and ``onsets``) and ``DIR/summary.json`` with the checkpoint's seed, and madmom's
scores the same way in ``DIR/madmom/`` (no seed), so that ``python -m mir.report compare
ours=D0 ours=D1 ours=D2 madmom=D0/madmom`` reads the checkpoints as the seeds of one system
beside madmom.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import mir_eval
import numpy as np

from mir.checkpoint import load_module
from mir.data.mdb_drums import MDBDrums
from mir.tasks.beats import BeatEstimate

REPO = Path(__file__).resolve().parents[2]


def merge(times: np.ndarray, gap: float = 0.03) -> np.ndarray:
    """Sorted times with any time within `gap` s of the previous kept one dropped."""
    keep: list[float] = []
    for t in np.sort(np.asarray(times, dtype=np.float64)):
        if not keep or t - keep[-1] >= gap:
            keep.append(float(t))
    return np.asarray(keep)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--root", default=str(REPO.parent / "shared" / "fixtures" / "mdb_drums"))
    ap.add_argument("--madmom-json", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--per-track-dir", default=None, help="write per_track.json here")
    args = ap.parse_args()

    module, cfg = load_module(args.ckpt)
    module.eval()
    drums, beats = module.tasks["drums"], module.tasks["beats"]
    ds = MDBDrums(args.root, sr=int(cfg.frontend.sr), audio_source="drum_only")
    ids = sorted({t for s in ("train", "validation", "test") for t in ds.track_ids(s)})
    peer = None
    if args.madmom_json and Path(args.madmom_json).is_file():
        raw = json.loads(Path(args.madmom_json).read_text())["files"]
        peer = {Path(p).name: v for p, v in raw.items()}

    rows: dict[str, dict[str, dict[str, float]]] = {"ours": {}, "madmom": {}}
    warnings.simplefilter("ignore")
    for tid in ids:
        track = ds.load(tid)
        assert track.has("onsets")
        ref_all = merge(np.concatenate(list(track.get("onsets").values())))
        est = module.predict_track(track)
        s = drums.evaluate_track(track, est["drums"])
        s.update({f"beats/{k}": v for k, v in beats.evaluate_track(track, est["beats"]).items()})
        ours_onsets = merge(np.concatenate([np.asarray(e) for e in est["drums"]]))
        s["onsets/F-measure"] = mir_eval.onset.f_measure(ref_all, ours_onsets, window=0.05)[0]
        rows["ours"][tid] = s
        if peer is not None:
            p = peer[Path(ds.audio_path(tid)).name]
            b = beats.evaluate_track(track, BeatEstimate(np.asarray(p["beats"]), np.zeros(0)))
            rows["madmom"][tid] = {
                "beats/F-measure": b["F-measure"],
                "beats/Cemgil": b["Cemgil"],
                "beats/Any Metric Level Total": b["Any Metric Level Total"],
                "onsets/F-measure": mir_eval.onset.f_measure(
                    ref_all, np.asarray(p["onsets"]), window=0.05
                )[0],
            }
    summary = {
        system: {
            k: float(np.nanmean([s[k] for s in per.values()])) for k in next(iter(per.values()))
        }
        for system, per in rows.items()
        if per
    }
    keys = [
        "kick/F-measure",
        "snare/F-measure",
        "hihat/F-measure",
        "mean/F-measure",
        "mean/F-measure@20ms",
        "onsets/F-measure",
        "beats/F-measure",
        "beats/downbeat/F-measure",
    ]
    print(f"{len(ids)} tracks: {', '.join(ids)}")
    print("| system | " + " | ".join(keys) + " |")
    for system, s in summary.items():
        cells = [f"{s[k]:.3f}" if k in s else "-" for k in keys]
        print(f"| {system} | " + " | ".join(cells) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps({"per_track": rows, "mean": summary}, indent=1))
    if args.per_track_dir:
        write_per_track(rows, Path(args.per_track_dir), cfg.get("seed"))


def write_per_track(
    rows: dict[str, dict[str, dict[str, float]]], out: Path, seed: int | None
) -> None:
    """`rows` (system -> track -> ``<task>/<metric>`` or drum keys) in `mir.evaluate`'s
    per-track format: our drum keys under ``drums``, ``beats/...`` under ``beats``,
    ``onsets/...`` under ``onsets``. Ours goes to ``out/`` with the checkpoint's seed, a
    peer to ``out/<peer>/`` with no seed (each as ``model``), so that the seeds of ours
    are one system and madmom, which has no seed, is another."""
    from mir.report import write_json

    for system, tracks in rows.items():
        if not tracks:
            continue
        per: dict[str, dict[str, list[dict[str, float | str]]]] = {}
        name = "model"
        for tid, scores in tracks.items():
            by_task: dict[str, dict[str, float]] = {}
            for key, v in scores.items():
                task, _, metric = key.partition("/")
                if task not in ("beats", "onsets"):
                    task, metric = "drums", key
                by_task.setdefault(task, {})[metric] = float(v)
            for task, vals in by_task.items():
                row = {"track": f"mdb_drums/{tid}", **vals}
                per.setdefault(name, {}).setdefault(task, []).append(row)
        folder = out if system == "ours" else out / system
        write_json(folder / "per_track.json", per)
        write_json(folder / "summary.json", {"seed": seed if system == "ours" else None})
        print(f"per-track scores written to {folder}/per_track.json")


if __name__ == "__main__":
    main()
