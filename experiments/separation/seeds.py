"""The guidance table of experiments/separation/README.md from the runs of `guidance.sh`:
per variant, vocals scores per seed and their mean, on the embedded test pieces (mean over
the pieces) and on the MUSDB18 7-s sample.

python experiments/separation/seeds.py [outputs/separation-guidance]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

LABELS = {"unet": "U-Net", "guided": "U-Net + HCQT guidance"}
METRICS = ["NSDR", "SDR", "SI-SDR", "SI-SDRi"]


def _runs(root: Path) -> dict[str, dict[int, Path]]:
    out: dict[str, dict[int, Path]] = {}
    for d in sorted(root.iterdir()):
        m = re.fullmatch(r"(unet|guided)-seed(\d+)", d.name)
        if m and (d / "scores.json").is_file():
            out.setdefault(m[1], {})[int(m[2])] = d
    return out


def _scores(run: Path) -> dict[str, dict[str, float]]:
    """data set -> metric -> vocals score (mean over tracks)."""
    scores = json.loads((run / "scores.json").read_text())["test"]["separation"]
    out = {"embedded test": {m: scores.get(f"vocals/{m}", np.nan) for m in METRICS}}
    f = run / "eval-musdb18" / "per_track.json"
    if f.is_file():
        (row,) = json.loads(f.read_text())["model"]["separation"]
        out["musdb18 sample"] = {m: row.get(f"vocals/{m}", np.nan) for m in METRICS}
    return out


def main(root: Path) -> None:
    runs = _runs(root)
    if not runs:
        sys.exit(f"error: no runs of guidance.sh under {root}")
    print("| system | data | seeds | " + " | ".join(f"vocals {m}" for m in METRICS) + " |")
    print("|" + "---|" * (3 + len(METRICS)))
    for variant, label in LABELS.items():
        seeds = runs.get(variant, {})
        per_seed = {s: _scores(d) for s, d in sorted(seeds.items())}
        for data in ("embedded test", "musdb18 sample"):
            vals = np.array(
                [[sc[data][m] for m in METRICS] for sc in per_seed.values() if data in sc]
            )
            if not len(vals):
                continue
            cells = [
                " / ".join(f"{v:.2f}" for v in col) + f" (mean {np.mean(col):.2f})"
                for col in vals.T
            ]
            print(f"| {label} | {data} | {len(vals)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("outputs/separation-guidance"))
