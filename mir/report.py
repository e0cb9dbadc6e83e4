"""Score tables and result files, and the collector of a multirun's scores.

Usage:
    python -m mir.report collect <multirun dir> [<multirun dir> ...] [--out table.md]
        [--stage test] [--metric <task>/<mir_eval key> ...] [--no-baseline]
    python -m mir.report compare <run or multirun dir> [[<label>=]<dir> ...] [--by KEY]
        [--against SYSTEM ...] [--metric <task>/<mir_eval key> ...] [--out PREFIX] [--wandb]

``compare`` (`mir.compare`) compares systems over seeds and tracks: means with bootstrap
confidence intervals, paired differences with Wilcoxon tests, Holm-corrected; it writes
Markdown, CSV and JSON (``--out PREFIX``) and a W&B table (``--wandb``, offline by default).

``collect`` reads every job folder of one or more Hydra multiruns
(``<dir>/<job>/scores.json``, written by ``mir.train``, and
``<dir>/<job>/.hydra/overrides.yaml``) and prints one Markdown table: a row per job (its
heads, and the overrides not shared by every job; with several folders a job is named
``<folder>/<job>``), a column per ``<task>/<metric>`` (default: multi-f0 accuracy and each
single-f0 task's overall and raw pitch accuracy), and a last row with the trivial
baselines. ``-`` marks a task that the job did not train. Overrides shared by every job
are listed on a line above the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mir.audio import atomic_write
from mir.data.track import Track
from mir.errors import ConfigError
from mir.tasks.base import Task, score_stats


def default_columns() -> list[tuple[str, str]]:
    """(task, mir_eval key) of every registered task's `Task.report_columns`, in the
    registry's order: multi-f0 accuracy, and OA and RPA of each single-f0 task."""
    from mir.tasks import registered

    return [(name, key) for name, cls in registered().items() for key in cls.report_columns]


_SHORT = {
    "Accuracy": "Acc",
    "Overall Accuracy": "OA",
    "Raw Pitch Accuracy": "RPA",
    "Raw Chroma Accuracy": "RCA",
    "Voicing Recall": "VR",
    "Voicing False Alarm": "VFA",
}


def baseline_scores(tasks: Mapping[str, Task], tracks: list[Track]) -> dict[str, dict[str, float]]:
    """Each task's trivial baseline, evaluated on `tracks` exactly as the model is."""
    out = {}
    for name, task in tasks.items():
        _, summary = task.evaluate(tracks, [task.baseline(t) for t in tracks])
        out[name] = summary
    return out


def coverage(tasks: Mapping[str, Task], tracks: Sequence[Track]) -> dict[str, dict[str, Any]]:
    """Per task, how many of `tracks` it scores and which it skips, with the reason.

    Returns:
        task -> {"scored": n, "skipped": [{"track": name, "reason": text}]}.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, task in tasks.items():
        skipped = []
        for t in tracks:
            reason = task.skip_reason(t)
            if reason is not None:
                skipped.append({"track": t.name, "reason": reason})
        out[name] = {"scored": len(tracks) - len(skipped), "skipped": skipped}
    return out


def coverage_lines(cov: Mapping[str, Mapping[str, Any]], n_tracks: int) -> list[str]:
    """One line per task: tracks scored out of `n_tracks`, and the skipped ones with why."""
    lines = []
    for task, c in cov.items():
        line = f"{task}: {c['scored']} of {n_tracks} tracks scored"
        if c["skipped"]:
            line += "; skipped: " + ", ".join(f"{s['track']} ({s['reason']})" for s in c["skipped"])
        lines.append(line)
    return lines


def fmt_score(v: Any) -> str:
    """A score to 3 decimals; "-" for a missing or NaN one."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.3f}"


def score_table(
    scores: Mapping[str, Mapping[str, float]],
    baseline: Mapping[str, Mapping[str, float]] | None = None,
    title: str = "",
    max_rows_per_task: int = 24,
    coverage: Mapping[str, Mapping[str, Any]] | None = None,
    n_tracks: int = 0,
) -> str:
    """A plain-text table: task, metric, model score (and baseline); with `coverage`
    (`coverage`'s output for the `n_tracks` tracks), a line per task below it saying how
    many tracks it scored and which it skipped, and why."""
    rows: list[tuple[str, ...]] = [
        ("task", "metric", "model") + (("baseline",) if baseline else ())
    ]
    for task, metrics in scores.items():
        for i, (k, v) in enumerate(metrics.items()):
            if i >= max_rows_per_task:
                break
            row: tuple[str, ...] = (task, k, fmt_score(v))
            if baseline:
                row += (fmt_score(baseline.get(task, {}).get(k)),)
            rows.append(row)
    table = text_table(rows, title)
    if coverage:
        table += "\n" + "\n".join(coverage_lines(coverage, n_tracks))
    return table


def median_scores(per_track: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict:
    """Per task, the median over tracks of each score (`score_stats`: NaN ignored), as the
    MUSDB18 literature reports separation; tracks are rows ``{"track": name, metric: value}``."""
    return {
        task: {k: s["median"] for k, s in score_stats(rows).items() if s["n"]}
        for task, rows in per_track.items()
    }


def text_table(rows: Sequence[Sequence[str]], title: str = "") -> str:
    """Left-aligned plain-text columns; the first row is the header, underlined."""
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


# -- run identity ------------------------------------------------------------------------------
IDENTITY_IGNORED = ("seed", "output_dir", "ckpt_path")
"""Top-level config keys left out of `config_hash`: the seed (so every seed of one
configuration shares a hash), where the run writes, and which checkpoint it resumes."""


def config_hash(config: Mapping[str, Any]) -> str:
    """A short hash of a run's config, without `IDENTITY_IGNORED` keys.

    Args:
        config: the config as a plain dict, interpolations unresolved (so ``${seed}``
            stays a reference to the seed, and paths derived from the run dir do not count).
    """
    kept = {k: v for k, v in config.items() if k not in IDENTITY_IGNORED}
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def git_commit(path: str | Path | None = None) -> str | None:
    """The commit checked out where `path` (default: this package) lies; None outside a git
    checkout or without git. A ``-dirty`` suffix marks uncommitted changes to tracked files."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip() or None
    if commit and dirty.returncode == 0 and dirty.stdout.strip():
        commit += "-dirty"
    return commit


def run_identity(cfg: Any) -> dict[str, Any]:
    """What `scores.json` records about a run: its seed, config hash and git commit, and the
    torch thread count (CPU results are bit-identical only for the same count)."""
    import torch
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(config, dict)
    return {
        "seed": int(cfg.seed),
        "config_hash": config_hash({str(k): v for k, v in config.items()}),
        "git_commit": git_commit(),
        "torch_threads": torch.get_num_threads(),
    }


# -- multirun collector -----------------------------------------------------------------------
def _job_sort_key(path: Path) -> tuple[int, str]:
    head = path.name.split("-", 1)[0]
    return (int(head), path.name) if head.isdigit() else (sys.maxsize, path.name)


def _read_overrides(path: Path) -> list[str]:
    import yaml

    if not path.is_file():
        return []
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a list of overrides, got {type(data).__name__}")
    return [str(o) for o in data]


def collect_multirun(root: str | Path) -> list[dict[str, Any]]:
    """Every job of a multirun folder, in job-number order.

    A job is a sub-folder holding ``.hydra/overrides.yaml`` or ``scores.json``.

    Returns:
        One dict per job: ``job`` (folder name), ``overrides`` (list of ``key=value``),
        ``tasks`` (the heads it trained, from its scores; empty if it has no scores),
        and ``scores``, the job's ``scores.json`` (None if the job wrote none).

    Raises:
        ConfigError: `root` is not a folder, holds no job, or a file does not parse.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"multirun folder {root} does not exist")
    jobs = sorted(
        (
            p
            for p in root.iterdir()
            if p.is_dir()
            and ((p / ".hydra" / "overrides.yaml").is_file() or (p / "scores.json").is_file())
        ),
        key=_job_sort_key,
    )
    if not jobs:
        raise ConfigError(f"{root}: no job folders (with .hydra/overrides.yaml or scores.json)")
    rows = []
    for job in jobs:
        scores = None
        path = job / "scores.json"
        if path.is_file():
            try:
                scores = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}: not valid JSON ({exc})") from None
            if not isinstance(scores, dict):
                raise ConfigError(f"{path}: expected a JSON object of scores")
        stage_tasks = (scores or {}).get("test") or (scores or {}).get("val") or {}
        rows.append(
            {
                "job": job.name,
                "overrides": _read_overrides(job / ".hydra" / "overrides.yaml"),
                "tasks": list(stage_tasks),
                "scores": scores,
            }
        )
    return rows


def parse_column(text: str) -> tuple[str, str]:
    """``<task>/<mir_eval key>`` -> (task, key); the key may itself hold slashes."""
    task, sep, key = text.partition("/")
    if not sep or not task or not key:
        raise ConfigError(f"column {text!r} is not <task>/<metric>, e.g. melody/Overall Accuracy")
    return task, key


def _task_label(row: Mapping[str, Any]) -> str:
    if row["tasks"]:
        return " + ".join(row["tasks"])
    task_override = next((o for o in row["overrides"] if o.startswith("task=")), None)
    return task_override.split("=", 1)[1] if task_override else "?"


def subset_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]] | None = None,
    stage: str = "test",
    baseline: bool = True,
    digits: int = 3,
) -> str:
    """A Markdown table of `stage` scores: one row per job, one column per (task, metric).

    Args:
        rows: `collect_multirun`'s jobs.
        columns: (task, mir_eval key) pairs; default those of `default_columns`
            that at least one job trained (all of them if none did).
        stage: ``test`` or ``val`` (the keys of ``scores.json``).
        baseline: add a last row with each task's trivial baseline (``test_baseline``,
            taken from the first job that has one for the task; test stage only).
        digits: decimals shown.

    The best value of each column is in bold; ``-`` is a task the job did not train or a
    metric it did not report, ``(no scores)`` a job that wrote no ``scores.json``. The
    ``overrides`` column shows the overrides other than ``task=`` that not every job shares;
    those that all share are listed on a line above the table.
    """
    trained = {t for r in rows for t in r["tasks"]}
    if columns is None:
        default = default_columns()
        columns = [c for c in default if c[0] in trained] or default
    others = [
        [o for o in r["overrides"] if o.split("=", 1)[0].lstrip("+~") != "task"] for r in rows
    ]
    common = [o for o in others[0] if all(o in ex for ex in others)] if others else []
    extra = [[o for o in ex if o not in common] for ex in others]
    show_overrides = any(extra)

    def value(scores: Mapping[str, Any] | None, key: str, task: str, metric: str) -> float | None:
        v = ((scores or {}).get(key) or {}).get(task, {}).get(metric)
        return None if v is None else float(v)

    values = [[value(r["scores"], stage, t, m) for t, m in columns] for r in rows]
    best: list[float | None] = []
    for j in range(len(columns)):
        finite = [x for x in (v[j] for v in values) if x is not None and math.isfinite(x)]
        best.append(max(finite) if finite else None)

    def cell(v: float | None, j: int | None = None) -> str:
        if v is None or not math.isfinite(v):
            return "-"
        text = f"{v:.{digits}f}"
        if j is not None and best[j] is not None and f"{best[j]:.{digits}f}" == text:
            return f"**{text}**"
        return text

    head = ["job", "heads"] + (["overrides"] if show_overrides else [])
    head += [f"{t} {_SHORT.get(m, m)}" for t, m in columns]
    lines = [f"All jobs: `{' '.join(common)}`", ""] if common else []
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r, ex, vals in zip(rows, extra, values, strict=True):
        cells = [r["job"], _task_label(r)] + ([" ".join(ex) or "-"] if show_overrides else [])
        if r["scores"] is None:
            cells += ["(no scores)"] + [""] * (len(columns) - 1)
        else:
            cells += [cell(v, j) for j, v in enumerate(vals)]
        lines.append("| " + " | ".join(cells) + " |")
    if baseline and stage == "test":
        base = []
        for t, m in columns:
            found = (value(r["scores"], "test_baseline", t, m) for r in rows)
            base.append(next((v for v in found if v is not None), None))
        if any(v is not None for v in base):
            cells = ["", "trivial baseline"] + ([""] if show_overrides else [])
            lines.append("| " + " | ".join(cells + [cell(v) for v in base]) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mir.report",
        description="Collect a multirun's scores.json files into one Markdown table.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    col = sub.add_parser("collect", help="table of a multirun folder's job scores")
    col.add_argument("roots", nargs="+", help="multirun folder(s) (multirun/<date>/<time>)")
    col.add_argument("--out", help="also write the table to this Markdown file")
    col.add_argument("--stage", default="test", choices=("test", "val"))
    col.add_argument(
        "--metric",
        action="append",
        metavar="TASK/KEY",
        help="a column, e.g. 'melody/Voicing Recall' (repeatable; default the f0 metrics)",
    )
    col.add_argument("--no-baseline", action="store_true", help="leave out the baseline row")
    cmp = sub.add_parser("compare", help="systems over seeds: intervals and paired tests")
    cmp.add_argument(
        "roots", nargs="+", metavar="[LABEL=]DIR", help="run, multirun or mir.evaluate folder(s)"
    )
    cmp.add_argument("--by", help="config key whose value names a run's system, e.g. task")
    cmp.add_argument(
        "--metric",
        action="append",
        metavar="TASK/KEY",
        help="a row, e.g. 'melody/Raw Pitch Accuracy' (repeatable; default each task's monitor)",
    )
    cmp.add_argument(
        "--against",
        action="append",
        metavar="SYSTEM",
        help="test only the pairs with this system (repeatable; default every pair but "
        "those of two baselines)",
    )
    cmp.add_argument("--out", help="write PREFIX.md, PREFIX.csv and PREFIX.json")
    cmp.add_argument("--wandb", action="store_true", help="also log a W&B table (offline)")
    args = parser.parse_args(argv)
    if args.command == "compare":
        return _compare_cli(args)
    try:
        rows = []
        for root in args.roots:
            jobs = collect_multirun(root)
            if len(args.roots) > 1:
                for job in jobs:
                    job["job"] = f"{Path(root).name}/{job['job']}"
            rows += jobs
        columns = [parse_column(c) for c in args.metric] if args.metric else None
        table = subset_table(rows, columns, stage=args.stage, baseline=not args.no_baseline)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table)
    if args.out:
        text = table + "\n"
        atomic_write(args.out, lambda tmp: Path(tmp).write_text(text), suffix=".md")
        print(f"mir.report: table written to {args.out}", file=sys.stderr)
    missing = [r["job"] for r in rows if r["scores"] is None]
    if missing:
        print(f"mir.report: no scores.json in {', '.join(missing)}", file=sys.stderr)
    return 0


def _compare_cli(args: argparse.Namespace) -> int:
    from mir import compare as cmp

    try:
        runs = [r for root in args.roots for r in cmp.read_runs(root, args.by)]
        cmp.name_systems(runs)
        metrics = [parse_column(c) for c in args.metric] if args.metric else None
        result = cmp.compare(runs, metrics, args.against)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(cmp.markdown(result))
    if args.out:
        for path in cmp.write(result, args.out):
            print(f"mir.report: written {path}", file=sys.stderr)
    if args.wandb:
        where = cmp.log_wandb(result, Path(args.out).parent if args.out else Path("."))
        print(f"mir.report: W&B table in {where}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
