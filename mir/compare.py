"""Comparisons that carry evidence: means over seeds and tracks with bootstrap confidence
intervals, paired differences with Wilcoxon signed-rank tests, Holm-corrected.

Usage (through ``mir.report``):
    python -m mir.report compare <run or multirun dir> [[<label>=]<dir> ...] [--by KEY]
        [--against SYSTEM ...] [--metric <task>/<mir_eval key> ...] [--out PREFIX] [--wandb]

Inputs: per-track test scores, as `mir.train` writes them (``scores.json``,
``test_per_track``) and as `mir.evaluate` and the peer scripts write them
(``per_track.json``: ``{system: {task: [{"track": name, <metric>: value}]}}``). A folder
holding neither is read as a multirun: each sub-folder that holds one is a run.

Systems and seeds:
    * A `mir.train` run belongs to the system named by its ``<label>=`` prefix, else by the
      value of ``--by`` in its config (e.g. ``--by task``), else by its overrides other than
      the seed and those every run shares; its seed is the one its ``scores.json`` records.
    * Each entry of a ``per_track.json`` is a system: ``model`` is named after the folder
      (or its label), any other entry ``<folder or label>/<entry>`` (``.../baseline``); the
      seed is ``seed`` in the ``summary.json`` beside it, if any.
    * Runs of one system are its seeds; every run must score the same tracks.

Statistics, per ``<task>/<metric>``, over the tracks scored by every run that has the task
(a track with a NaN score in any of them is left out, and counted):
    * per system: the mean over seeds of the per-track mean, and a 95 % bootstrap interval
      (`scipy.stats.bootstrap`, BCa) that resamples tracks and seeds independently;
    * per pair of systems: the mean of the per-track differences of the seed means, its
      bootstrap interval (tracks resampled jointly; seeds jointly when both systems ran the
      same seeds, else each system's independently),
      and the Wilcoxon signed-rank p-value over tracks (`scipy.stats.wilcoxon`; p = 1 when
      every difference is 0), Holm-corrected over every tested pair of every metric of the
      table (`statsmodels.stats.multitest.multipletests`).

Which pairs are tested: with ``--against NAME`` (repeatable) only the pairs that involve one
of those systems, written as NAME - other; else every pair except those of two trivial
baselines (entries named ``baseline``), whose difference is no question anyone asks. Fewer
tests make Holm's correction less severe, so name the systems the table is about.
"""

from __future__ import annotations

import csv
import inspect
import io
import itertools
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mir.configs import CONF
from mir.errors import ConfigError

CONFIDENCE = 0.95
N_RESAMPLES = 9999
FEW_TRACKS = 10
"""Below this many tracks the Markdown warns that the intervals and tests are rough."""


@dataclass
class Run:
    """One run's per-track test scores.

    Attributes:
        system: the system it belongs to.
        seed: its seed (None if unknown: a single-seed system).
        source: the file it was read from (named in errors).
        scores: task -> track -> metric -> value.
        overrides: its Hydra overrides (`mir.train` runs).
        root: the name of the command-line folder it was found in.
    """

    system: str
    seed: int | None
    source: str
    scores: dict[str, dict[str, dict[str, float]]]
    overrides: list[str] = field(default_factory=list)
    root: str = ""


# -- reading ----------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not readable JSON ({exc})") from None


def _rows_by_track(rows: Any, source: Path, task: str) -> dict[str, dict[str, float]]:
    if not isinstance(rows, list):
        raise ConfigError(f"{source}: task {task}: expected a list of per-track rows")
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        if not isinstance(row, dict) or "track" not in row:
            raise ConfigError(f"{source}: task {task}: a row without a 'track' name")
        name = str(row["track"])
        if name in out:
            raise ConfigError(f"{source}: task {task}: track {name} appears twice")
        vals = {}
        for k, v in row.items():
            if k == "track":
                continue
            try:
                vals[k] = float(v)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"{source}: task {task}, track {name}: {k} is not a number ({v!r})"
                ) from None
        out[name] = vals
    return out


def _config_value(job: Path, key: str) -> Any:
    """`key` (dotted) in the job's ``.hydra/config.yaml``; a KeyError if absent."""
    import yaml

    path = job / ".hydra" / "config.yaml"
    if not path.is_file():
        raise KeyError(key)
    node: Any = yaml.safe_load(path.read_text())
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def _train_run(job: Path, label: str | None, by: str | None) -> Run:
    from mir.report import _read_overrides

    path = job / "scores.json"
    scores = _read_json(path)
    per_track = scores.get("test_per_track") if isinstance(scores, dict) else None
    if not isinstance(per_track, dict):
        raise ConfigError(f"{path}: no per-track test scores (test_per_track)")
    overrides = _read_overrides(job / ".hydra" / "overrides.yaml")
    seed = scores.get("seed")
    if seed is None:  # scores.json of an older run: the seed of its config
        try:
            seed = _config_value(job, "seed")
        except KeyError:
            seed = None
    system = label or ""
    if not system and by:
        try:
            system = f"{by}={_config_value(job, by)}"
        except KeyError:
            match = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") == by]
            if not match:
                raise ConfigError(f"{job}: --by {by}: no such key in its config") from None
            system = match[0].lstrip("+~")
    tasks = {t: _rows_by_track(rows, path, t) for t, rows in per_track.items()}
    return Run(system, None if seed is None else int(seed), str(path), tasks, overrides)


def _per_track_runs(folder: Path, label: str | None) -> list[Run]:
    path = folder / "per_track.json"
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected {{system: {{task: [rows]}}}}")
    seed = None
    summary = folder / "summary.json"
    if summary.is_file():
        s = _read_json(summary)
        if isinstance(s, dict) and s.get("seed") is not None:
            seed = int(s["seed"])
    name = label or folder.name
    runs = []
    for system, tasks in data.items():
        if not isinstance(tasks, dict):
            raise ConfigError(f"{path}: system {system}: expected {{task: [rows]}}")
        scores = {t: _rows_by_track(rows, path, t) for t, rows in tasks.items()}
        runs.append(Run(name if system == "model" else f"{name}/{system}", seed, str(path), scores))
    return runs


def _job_sort(p: Path) -> tuple[int, str]:
    from mir.report import _job_sort_key

    return _job_sort_key(p)


def read_runs(spec: str, by: str | None = None) -> list[Run]:
    """The runs of one command-line argument: ``[<label>=]<folder>``.

    Raises:
        ConfigError: the folder does not exist or holds no scores.
    """
    label = None
    folder = Path(spec)
    if "=" in spec and not folder.exists():
        label, _, rest = spec.partition("=")
        folder = Path(rest)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such run folder")

    def runs_of(d: Path) -> list[Run] | None:
        if (d / "scores.json").is_file():
            return [_train_run(d, label, by)]
        if (d / "per_track.json").is_file():
            return _per_track_runs(d, label)
        return None

    runs = runs_of(folder)
    if runs is None:
        runs = []
        for job in sorted((p for p in folder.iterdir() if p.is_dir()), key=_job_sort):
            runs += runs_of(job) or []
    if not runs:
        raise ConfigError(f"{folder}: no scores.json or per_track.json in it or in its sub-folders")
    for r in runs:
        r.root = folder.resolve().name
    return runs


def name_systems(runs: list[Run]) -> None:
    """Give unlabelled `mir.train` runs a system name: their overrides other than the seed
    and those every such run shares (the name of the folder given on the command line if
    none is left, so the seeds of one multirun are one system)."""
    unnamed = [r for r in runs if not r.system]
    if not unnamed:
        return

    def key(o: str) -> str:
        return o.split("=", 1)[0].lstrip("+~")

    kept = [[o for o in r.overrides if key(o) != "seed"] for r in unnamed]
    common = set.intersection(*(set(k) for k in kept)) if len(kept) > 1 else set()
    for r, k in zip(unnamed, kept, strict=True):
        own = [o for o in k if o not in common]
        r.system = " ".join(own) or r.root


# -- statistics -------------------------------------------------------------------------------
def _bootstrap(
    statistic: Callable[..., np.ndarray], sizes: Sequence[int], seed: int
) -> tuple[float, float]:
    """A BCa bootstrap interval of `statistic` over independent resamples of index sets of
    the given sizes (sets of size 1 are held fixed); NaN when every set has size 1 (one
    track and one seed: nothing to resample)."""
    from scipy.stats import bootstrap

    free = [i for i, n in enumerate(sizes) if n > 1]
    if not free:
        return math.nan, math.nan

    def stat(*idx: np.ndarray, axis: int = -1) -> np.ndarray:
        lead = idx[0].shape[:-1]
        it = iter(idx)
        free_idx = [next(it) if n > 1 else None for n in sizes]
        flat = [None if a is None else a.reshape(-1, a.shape[-1]) for a in free_idx]
        batch = next(a for a in flat if a is not None).shape[0]
        full = [np.zeros((batch, 1), dtype=int) if a is None else a for a in flat]
        return statistic(*full).reshape(lead)

    gen = np.random.default_rng(seed)
    kw = {"rng": gen} if "rng" in inspect.signature(bootstrap).parameters else {}
    if not kw:
        kw = {"random_state": gen}
    # BCa; the percentile interval where BCa is undefined (too few distinct resamples)
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = bootstrap(
                tuple(np.arange(sizes[i]) for i in free),
                stat,
                vectorized=True,
                paired=False,
                n_resamples=N_RESAMPLES,
                confidence_level=CONFIDENCE,
                method=method,
                **kw,
            )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return lo, hi
    v = float(statistic(*[np.arange(n)[None] for n in sizes])[0])  # every resample equal
    return v, v


def _grid_mean(x: np.ndarray, seeds: np.ndarray, tracks: np.ndarray) -> np.ndarray:
    """Mean of `x` (seeds, tracks) over resampled rows and columns; (B, ks), (B, kt) -> (B,)."""
    return x[seeds[:, :, None], tracks[:, None, :]].mean(axis=(1, 2))


def system_interval(x: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a (seeds, tracks) score array and its bootstrap interval over both axes."""
    lo, hi = _bootstrap(lambda t, s: _grid_mean(x, s, t), (x.shape[1], x.shape[0]), seed)
    return float(x.mean()), lo, hi


def difference_interval(
    xa: np.ndarray, xb: np.ndarray, paired_seeds: bool = False, seed: int = 0
) -> tuple[float, float, float]:
    """Mean paired difference of two (seeds, tracks) arrays on the same tracks, and its
    bootstrap interval: tracks resampled jointly; seeds jointly too when `paired_seeds`
    (both systems ran the same seeds), else each side's independently."""
    if paired_seeds:
        return system_interval(xa - xb, seed)

    def stat(t: np.ndarray, sa: np.ndarray, sb: np.ndarray) -> np.ndarray:
        return _grid_mean(xa, sa, t) - _grid_mean(xb, sb, t)

    lo, hi = _bootstrap(stat, (xa.shape[1], xa.shape[0], xb.shape[0]), seed)
    return float(xa.mean() - xb.mean()), lo, hi


def wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of per-track differences; 1 if all are 0."""
    from scipy.stats import wilcoxon

    if len(d) == 0:
        return math.nan
    if np.all(d == 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(wilcoxon(d).pvalue)


# -- the comparison ---------------------------------------------------------------------------
def default_metric(task: str) -> list[str]:
    """The metric `conf/task/<task>.yaml`'s class monitors ([] for an unknown task)."""
    import yaml
    from hydra.utils import get_class

    path = CONF / "task" / f"{task}.yaml"
    if not path.is_file():
        return []
    try:
        target = yaml.safe_load(path.read_text())["_target_"]
        return [str(getattr(get_class(target), "monitor"))]  # noqa: B009
    except Exception:  # noqa: BLE001 - a config we cannot read gives no default
        return []


def is_baseline(system: str) -> bool:
    """A trivial baseline's entry (``baseline`` or ``<folder>/baseline``)."""
    return system == "baseline" or system.endswith("/baseline")


def tested_pairs(names: Sequence[str], against: Sequence[str] | None) -> list[tuple[str, str]]:
    """The (A, B) pairs a table tests, A - B: with `against`, each pair that involves one
    of those systems (that one as A); else every pair but those of two baselines."""
    pairs = []
    for a, b in itertools.combinations(names, 2):
        if against:
            if b in against and a not in against:
                a, b = b, a
            if a not in against:
                continue
        elif is_baseline(a) and is_baseline(b):
            continue
        pairs.append((a, b))
    return pairs


def compare(
    runs: Sequence[Run],
    metrics: Sequence[tuple[str, str]] | None = None,
    against: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Every statistic of the module docstring, as a JSON-ready dict.

    Args:
        runs: the runs, with their systems named.
        metrics: (task, mir_eval key) rows; default each task's monitored metric.
        against: test only the pairs that involve one of these systems (default: every
            pair but those of two baselines).

    Raises:
        ConfigError: a system has one seed twice, a run lacks a track or metric that the
            others of the row have, a requested metric is nowhere, or `against` names no
            system.
    """
    systems: dict[str, list[Run]] = {}
    for r in runs:
        systems.setdefault(r.system, []).append(r)
    for name in against or ():
        if name not in systems:
            raise ConfigError(f"--against {name}: no such system (systems: {', '.join(systems)})")
    for name, rs in systems.items():
        seeds = [r.seed for r in rs]
        for s in set(seeds):
            if seeds.count(s) > 1:
                dup = [r.source for r in rs if r.seed == s]
                raise ConfigError(f"system {name}: seed {s} appears twice ({', '.join(dup)})")
        rs.sort(key=lambda r: -1 if r.seed is None else r.seed)
    if metrics is None:
        tasks = list(dict.fromkeys(t for r in runs for t in r.scores))
        metrics = [(t, m) for t in tasks for m in default_metric(t)]
        if not metrics:
            raise ConfigError("no default metric for these tasks; give --metric <task>/<key>")
    rows = []
    for task, metric in metrics:
        rows.append(_compare_row(systems, task, metric, against))
    pvals = [(i, j) for i, row in enumerate(rows) for j, p in enumerate(row["pairs"])]
    raw = [rows[i]["pairs"][j]["p"] for i, j in pvals]
    finite = [k for k, p in enumerate(raw) if math.isfinite(p)]
    if finite:
        from statsmodels.stats.multitest import multipletests

        adjusted = multipletests([raw[k] for k in finite], method="holm")[1]
        for k, a in zip(finite, adjusted, strict=True):
            i, j = pvals[k]
            rows[i]["pairs"][j]["p_holm"] = float(a)
    return {
        "confidence": CONFIDENCE,
        "n_resamples": N_RESAMPLES,
        "against": list(against or []),
        "n_tests": len(finite),
        "systems": {
            n: {"seeds": [r.seed for r in rs], "sources": [r.source for r in rs]}
            for n, rs in systems.items()
        },
        "rows": rows,
    }


def _compare_row(
    systems: Mapping[str, list[Run]],
    task: str,
    metric: str,
    against: Sequence[str] | None = None,
) -> dict[str, Any]:
    present = {n: rs for n, rs in systems.items() if any(task in r.scores for r in rs)}
    if not present:
        raise ConfigError(f"metric {task}/{metric}: no run scored task {task}")
    tracks = list(
        dict.fromkeys(t for rs in present.values() for r in rs for t in r.scores.get(task, {}))
    )
    arrays: dict[str, np.ndarray] = {}
    for name, rs in present.items():
        x = np.empty((len(rs), len(tracks)))
        for i, r in enumerate(rs):
            if task not in r.scores:
                raise ConfigError(f"{r.source}: no {task} scores, which other seeds of {name} have")
            by_track = r.scores[task]
            for j, t in enumerate(tracks):
                if t not in by_track:
                    raise ConfigError(f"{r.source}: task {task}: track {t} is missing")
                if metric not in by_track[t]:
                    raise ConfigError(f"{r.source}: task {task}, track {t}: no metric {metric}")
                x[i, j] = by_track[t][metric]
        arrays[name] = x
    ok = np.all([np.isfinite(x).all(axis=0) for x in arrays.values()], axis=0)
    excluded = [t for t, k in zip(tracks, ok, strict=True) if not k]
    kept = [t for t, k in zip(tracks, ok, strict=True) if k]
    out: dict[str, Any] = {
        "task": task,
        "metric": metric,
        "n_tracks": len(kept),
        "n_excluded": len(excluded),
        "excluded_tracks": excluded,
        "systems": {},
        "pairs": [],
    }
    if not kept:
        return out
    arrays = {n: x[:, ok] for n, x in arrays.items()}
    # a baseline scored beside each of several models (the mixture, all-unvoiced) once
    seeds = {n: [r.seed for r in rs] for n, rs in present.items()}
    kept_baselines: list[str] = []
    for name in [n for n in arrays if is_baseline(n)]:
        same = (k for k in kept_baselines if seeds[k] == seeds[name])
        twin = next((k for k in same if np.array_equal(arrays[k], arrays[name])), None)
        if twin is None:
            kept_baselines.append(name)
        else:
            out.setdefault("merged", {}).setdefault(twin, []).append(name)
            del arrays[name]
    for name, x in arrays.items():
        mean, lo, hi = system_interval(x)
        out["systems"][name] = {
            "mean": mean,
            "ci_low": lo,
            "ci_high": hi,
            "n_tracks": x.shape[1],
            "n_seeds": x.shape[0],
        }
    for a, b in tested_pairs(list(arrays), against):
        xa, xb = arrays[a], arrays[b]
        diff, lo, hi = difference_interval(xa, xb, paired_seeds=seeds[a] == seeds[b])
        p = wilcoxon_p(xa.mean(0) - xb.mean(0))
        out["pairs"].append(
            {
                "a": a,
                "b": b,
                "diff": diff,
                "ci_low": lo,
                "ci_high": hi,
                "significant": bool(math.isfinite(lo) and not lo <= 0.0 <= hi),
                "p": p,
                "p_holm": math.nan,
            }
        )
    return out


# -- output -----------------------------------------------------------------------------------
def _f(v: float, digits: int = 3) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _p(v: float) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:.3f}" if v >= 0.001 else f"{v:.1e}"


def markdown(result: Mapping[str, Any]) -> str:
    """Two Markdown tables: systems (mean and interval per metric) and paired differences;
    a difference whose interval contains 0 is marked *n.s.* (not significant), one with no
    interval (one track, one seed) *n/a*."""
    pct = f"{result['confidence'] * 100:g} %"
    rows = result["rows"]
    merged: dict[str, list[str]] = {}  # kept baseline -> those it stands for, in any row
    for r in rows:
        for kept, dropped in r.get("merged", {}).items():
            merged.setdefault(kept, [])
            merged[kept] += [d for d in dropped if d not in merged[kept]]
    gone = {n for n in result["systems"] if all(n not in r["systems"] for r in rows)}
    names = [n for n in result["systems"] if not (n in gone and n in sum(merged.values(), []))]
    head = ["system", "seeds"] + [
        f"{r['task']} {r['metric']} ({r['n_tracks']} tracks)" for r in rows
    ]
    lines = [
        f"Mean over seeds of the per-track mean [{pct} bootstrap interval over tracks and seeds]:",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for n in names:
        seeds = result["systems"][n]["seeds"]
        cells = [n, ",".join("-" if s is None else str(s) for s in seeds)]
        for r in rows:
            s = r["systems"].get(n)
            cells.append(f"{_f(s['mean'])} [{_f(s['ci_low'])}, {_f(s['ci_high'])}]" if s else "-")
        lines.append("| " + " | ".join(cells) + " |")
    few = sorted({r["n_tracks"] for r in rows if 0 < r["n_tracks"] < FEW_TRACKS})
    notes = (
        [
            f"* {', '.join(map(str, few))} track(s): a bootstrap over so few values gives "
            f"intervals that are too narrow, and the two-sided Wilcoxon p cannot fall below "
            f"{2 / 2 ** max(few):.3g}; read these as descriptive"
        ]
        if few
        else []
    )
    for kept, dropped in merged.items():
        notes.append(f"* {kept}: also stands for {', '.join(dropped)} (the same scores)")
    if any(None in result["systems"][n]["seeds"] for n in names):
        notes.append("* seeds `-`: a run that records no seed (a baseline, a peer tool)")
    notes += [
        f"* {r['task']} {r['metric']}: {r['n_excluded']} track(s) left out for a NaN score "
        f"({', '.join(r['excluded_tracks'])})"
        for r in rows
        if r["n_excluded"]
    ]
    if notes:
        lines += ["", *notes]
    pairs = [(r, p) for r in rows for p in r["pairs"]]
    against = result.get("against") or []
    tested = (
        f" (pairs with {', '.join(against)})" if against else " (pairs of two baselines untested)"
    )
    if pairs:
        lines += [
            "",
            f"Paired differences over the same tracks (A - B) [{pct} interval]; Wilcoxon "
            f"signed-rank p over tracks, Holm-corrected over the {result['n_tests']} tests of "
            f"the table{tested}; *n.s.*: the interval contains 0:",
            "",
            "| metric | A | B | A - B | Wilcoxon p | Holm p | |",
            "|---|---|---|---|---|---|---|",
        ]
        for r, p in pairs:
            diff = f"{p['diff']:+.3f} [{p['ci_low']:+.3f}, {p['ci_high']:+.3f}]"
            mark = "" if p["significant"] else "*n.s.*"
            if not math.isfinite(p["ci_low"]):
                diff, mark = f"{p['diff']:+.3f}", "*n/a*"
            lines.append(
                f"| {r['task']} {r['metric']} | {p['a']} | {p['b']} | {diff} | {_p(p['p'])} "
                f"| {_p(p['p_holm'])} | {mark} |"
            )
    return "\n".join(lines)


CSV_COLUMNS = (
    "kind",
    "task",
    "metric",
    "system",
    "other",
    "value",
    "ci_low",
    "ci_high",
    "n_tracks",
    "n_seeds",
    "n_excluded",
    "p",
    "p_holm",
    "significant",
)


def table_rows(result: Mapping[str, Any]) -> list[list[Any]]:
    """The comparison as flat rows of `CSV_COLUMNS`: a ``system`` row per system and
    metric, a ``difference`` row per pair and metric (None where a column does not apply)."""
    out: list[list[Any]] = []
    na = None
    for r in result["rows"]:
        for n, s in r["systems"].items():
            out.append(
                ["system", r["task"], r["metric"], n, "", s["mean"], s["ci_low"], s["ci_high"],
                 s["n_tracks"], s["n_seeds"], r["n_excluded"], na, na, na]
            )  # fmt: skip
        for p in r["pairs"]:
            out.append(
                ["difference", r["task"], r["metric"], p["a"], p["b"], p["diff"], p["ci_low"],
                 p["ci_high"], r["n_tracks"], na, r["n_excluded"], p["p"], p["p_holm"],
                 p["significant"]]
            )  # fmt: skip
    return out


def to_csv(result: Mapping[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    w.writerows(table_rows(result))
    return buf.getvalue()


def write(result: Mapping[str, Any], prefix: str | Path) -> list[Path]:
    """``<prefix>.md``, ``<prefix>.csv`` and ``<prefix>.json``, each written atomically."""
    from mir.audio import atomic_write
    from mir.report import write_json

    prefix = Path(prefix)
    md, text = markdown(result) + "\n", to_csv(result)
    paths = [
        atomic_write(f"{prefix}.md", lambda tmp: Path(tmp).write_text(md), suffix=".md"),
        atomic_write(f"{prefix}.csv", lambda tmp: Path(tmp).write_text(text), suffix=".csv"),
        write_json(f"{prefix}.json", result),
    ]
    return [Path(p) for p in paths]


def log_wandb(result: Mapping[str, Any], directory: str | Path, project: str = "mir") -> str:
    """Log the comparison as a W&B table (offline unless WANDB_MODE says otherwise);
    returns the run's folder."""
    import os

    import wandb

    mode: Any = os.environ.get("WANDB_MODE", "offline")
    Path(directory).mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=project, job_type="compare", dir=str(directory), mode=mode)
    table = wandb.Table(columns=list(CSV_COLUMNS), data=table_rows(result))
    run.log({"compare": table})
    where = str(run.dir)
    run.finish()
    return where
