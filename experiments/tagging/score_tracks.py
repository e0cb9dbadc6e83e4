"""Per-track tagging scores of the checkpoints of tagging multiruns, for `mir.report compare`.

    python experiments/tagging/score_tracks.py --out DIR SWEEP_DIR [SWEEP_DIR ...]

`TaggingTask` scores ROC-AUC and PR-AUC at the set level (per tag, over the test pieces:
macro means), so `scores.json` holds only P@1 per track, and `mir.report compare`, which
resamples tracks, can only read that 0/1 value. This script adds two ranking scores that
exist per track (the "sample-wise" view of tagging evaluation): for one piece, how well its
scores put its present tags above its absent ones over the task's tag vocabulary,

    track ROC-AUC  `sklearn.metrics.roc_auc_score(y, s)` over the K tags of the piece,
    track PR-AUC   `sklearn.metrics.average_precision_score(y, s)`,
    P@1            `TaggingTask.evaluate_track` (is the top-scored tag present),

(NaN for a piece with every tag present or none), and the trivial baseline's (every tag 0.5:
track ROC-AUC 0.5, track PR-AUC the piece's fraction of present tags, P@1 whether the first
tag of the vocabulary is present), and the tag-prior baseline's (every piece scored with
each tag's frequency over the run's training pieces: the best a model that ignores the audio
can do; it ranks common tags first, which is most of what the sample-wise scores reward).

For each job folder `<sweep>/<n>` of each sweep it loads the checkpoint that `mir.train`
tested (`<n>/checkpoints/last.ckpt` for one-epoch runs: best and last are the same), runs
the test split of the run's own data config through `MirModule.analyse` (full-track
inference, as `mir.evaluate`), and writes `DIR/<sweep name>/<n>/per_track.json`
(``{"model": {"tagging": [{"track", ...}]}}``) and `summary.json` (the run's seed, and the
set-level macro ROC-AUC, PR-AUC recomputed from the same estimates with
`TaggingTask.summarise`, which must equal the run's `scores.json`: printed side by side).
The baselines go to `DIR/baseline/per_track.json` and `DIR/prior/per_track.json` once.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np


def track_scores(task, track, estimate: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = task.multi_hot(track)
    s = np.asarray(estimate, dtype=np.float64)
    row = {"track ROC-AUC": math.nan, "track PR-AUC": math.nan}
    if 0 < y.sum() < len(y):
        row["track ROC-AUC"] = float(roc_auc_score(y, s))
        row["track PR-AUC"] = float(average_precision_score(y, s))
    row.update(task.evaluate_track(track, s))
    return row


def score_job(job: Path, out: Path, baseline_out: Path | None) -> None:
    """Score `job`'s checkpoint into `out`; the baselines into `baseline_out` (if given)."""
    from omegaconf import OmegaConf

    from mir.checkpoint import load_module
    from mir.data.datamodule import select_tracks
    from mir.report import write_json
    from mir.train import instantiate

    ckpt = job / "checkpoints" / "last.ckpt"
    module, _ = load_module(str(ckpt), map_location="cpu")
    module.eval()
    run_cfg = OmegaConf.load(job / ".hydra" / "config.yaml")  # the run's data, resolved
    task = module.tasks["tagging"]
    datasets = {n: instantiate(node) for n, node in run_cfg.data.datasets.items()}
    prior = None
    if baseline_out is not None:
        train = [datasets[d].load(t) for d, t in select_tracks(datasets, "train")]
        prior = np.mean([task.multi_hot(t) for t in train], axis=0)
    rows, base_rows, prior_rows, tracks, estimates = [], [], [], [], []
    for dname, tid in select_tracks(datasets, "test"):
        track = datasets[dname].load(tid)
        track.name = f"{dname}/{track.name}"
        est = module.analyse(track)[1]["tagging"]
        rows.append({"track": track.name, **track_scores(task, track, est)})
        base_rows.append({"track": track.name, **track_scores(task, track, task.baseline(track))})
        if prior is not None:
            prior_rows.append({"track": track.name, **track_scores(task, track, prior)})
        tracks.append(track)
        estimates.append(est)
    summary = task.summarise(tracks, estimates, [{"P@1": r["P@1"]} for r in rows])
    recorded = json.loads((job / "scores.json").read_text()).get("test", {})
    seed = int(run_cfg.seed)
    write_json(out / "per_track.json", {"model": {"tagging": rows}})
    write_json(out / "summary.json", {"seed": seed, "ckpt": str(ckpt), "tagging": summary})
    if baseline_out is not None:
        write_json(baseline_out / "baseline" / "per_track.json", {"model": {"tagging": base_rows}})
        write_json(baseline_out / "prior" / "per_track.json", {"model": {"tagging": prior_rows}})
        print("tag prior over the training pieces:", [round(float(p), 2) for p in prior])
    keys = ("ROC-AUC", "PR-AUC", "P@1")
    print(
        f"{job}: seed {seed}; recomputed "
        + ", ".join(f"{k} {summary.get(k, math.nan):.3f}" for k in keys)
        + "; scores.json "
        + ", ".join(f"{k} {_recorded(recorded, k):.3f}" for k in keys)
    )


def _recorded(test: dict, key: str) -> float:
    for k in (f"tagging/{key}", key):
        if k in test:
            return float(test[k])
    return float(test.get("tagging", {}).get(key, math.nan)) if isinstance(test, dict) else math.nan


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweeps", nargs="+", help="mir.train multirun folders of tagging runs")
    ap.add_argument("--out", required=True, help="folder for the per-track score folders")
    args = ap.parse_args(argv)
    out = Path(args.out)
    baseline = out
    for sweep in map(Path, args.sweeps):
        jobs = sorted((p for p in sweep.iterdir() if (p / "scores.json").is_file()), key=str)
        if not jobs:
            print(f"error: {sweep}: no job folder with a scores.json", file=sys.stderr)
            return 2
        for job in jobs:
            score_job(job, out / sweep.name / job.name, baseline)
            baseline = None
    return 0


if __name__ == "__main__":
    sys.exit(main())
