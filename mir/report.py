"""Score tables and result files."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mir.audio import atomic_write
from mir.data.track import Track
from mir.tasks.base import Task


def baseline_scores(tasks: Mapping[str, Task], tracks: list[Track]) -> dict[str, dict[str, float]]:
    """Each task's trivial baseline, evaluated on `tracks` exactly as the model is."""
    out = {}
    for name, task in tasks.items():
        _, summary = task.evaluate(tracks, [task.baseline(t) for t in tracks])
        out[name] = summary
    return out


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.3f}"


def score_table(
    scores: Mapping[str, Mapping[str, float]],
    baseline: Mapping[str, Mapping[str, float]] | None = None,
    title: str = "",
    max_rows_per_task: int = 12,
) -> str:
    """A plain-text table: task, metric, model score (and baseline)."""
    rows = [("task", "metric", "model") + (("baseline",) if baseline else ())]
    for task, metrics in scores.items():
        for i, (k, v) in enumerate(metrics.items()):
            if i >= max_rows_per_task:
                break
            row = (task, k, _fmt(v))
            if baseline:
                row += (_fmt(baseline.get(task, {}).get(k)),)
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [title] if title else []
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: str | Path, data: Any) -> Path:
    """Write `data` as JSON atomically."""
    text = json.dumps(data, indent=2, sort_keys=False, default=float)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text), suffix=".json")
