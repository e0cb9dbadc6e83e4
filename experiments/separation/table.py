"""Print the README's result table from the runs of `run.sh` (mean / median per metric).

python experiments/separation/table.py [outputs/separation]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

RUNS = {"jansson_unet": "U-Net", "jansson_unet_hcqt": "U-Net + HCQT guidance"}
METRICS = ["NSDR", "SDR", "SIR", "SAR"]


def _cells(rows: list[dict], source: str) -> list[str]:
    out = []
    for m in METRICS:
        v = np.array([r[f"{source}/{m}"] for r in rows], dtype=float)
        v = v[np.isfinite(v)]
        out.append(f"{v.mean():.2f} / {np.median(v):.2f}" if len(v) else "-")
    return out


def main(root: Path) -> None:
    head = "| system | data (tracks) | source | " + " | ".join(METRICS) + " |"
    print(head)
    print("|" + "---|" * (3 + len(METRICS)))
    for run, label in RUNS.items():
        d = root / run
        if not (d / "scores.json").is_file():
            continue
        sets = {}
        scores = json.loads((d / "scores.json").read_text())
        sets["embedded test"] = scores["test_per_track"]["separation"]
        for name in ("musdb18", "medleydb"):
            f = d / f"eval-{name}" / "per_track.json"
            if f.is_file():
                sets[f"{name} fixture"] = json.loads(f.read_text())["model"]["separation"]
        for data, rows in sets.items():
            for source in ("vocals", "accompaniment"):
                cells = _cells(rows, source)
                print(f"| {label} | {data} ({len(rows)}) | {source} | " + " | ".join(cells) + " |")
    # the mixture as the estimate, for reference (NSDR is 0 by definition)
    d = root / "jansson_unet"
    if (d / "scores.json").is_file():
        base = json.loads((d / "scores.json").read_text())["test_baseline"]["separation"]
        for source in ("vocals", "accompaniment"):
            cells = [f"{base[f'{source}/{m}']:.2f} / -" for m in METRICS]
            print(f"| mixture | embedded test | {source} | " + " | ".join(cells) + " |")
        for name in ("musdb18", "medleydb"):
            f = d / f"eval-{name}" / "per_track.json"
            if f.is_file():
                rows = json.loads(f.read_text())["baseline"]["separation"]
                for source in ("vocals", "accompaniment"):
                    cells = _cells(rows, source)
                    print(f"| mixture | {name} fixture | {source} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("outputs/separation"))
