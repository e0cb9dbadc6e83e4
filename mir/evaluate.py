"""Evaluate a trained model on a dataset split, with full-track inference.

Usage:
    python -m mir.evaluate ckpt=<path> data=<name> [split=test] [output=<folder>]
        [device=cpu] [precision=float32] [baselines=true] [strict=false] [threads=N]
        [data.<key>=<value> ...]

Arguments (``key=value``: a Hydra app like ``mir.train``, configured by ``conf/evaluate.yaml``;
``-m ckpt=a.ckpt,b.ckpt data=bach10,medleydb`` sweeps; ``data.*`` arguments override the
dataset config and apply to every job of a sweep):
    ckpt: checkpoint written by ``mir.train``.
    data: a dataset config, ``conf/data/<name>.yaml`` (composed with Hydra; its grid
        settings are taken from the checkpoint's front end, so they match the model).
    split: ``train``, ``validation`` or ``test``.
    output: folder for the score files (default ``eval/<data>-<split>``).
    device: torch device for inference.
    precision: ``float32``, ``bf16`` or ``int8`` (CPU only): the dtype of the trunk and the
        salience heads, as in ``mir.predict``; recorded in ``summary.json``.
    baselines: also score each task's trivial baseline on the same tracks.
    strict: audio shorter than its header declares is an error (default: a warning).
    data.*: any override of the dataset config (Hydra syntax), e.g.
        ``data.datasets.medleydb.root=/data/MedleyDB``; ``data.max_eval_tracks=5``
        evaluates the first 5 tracks (by id) of each dataset's split.

Each track is loaded, run through the model in chunks (`MirModule.analyse`, the one
inference path: the estimates without holding the whole track's raw outputs)
and scored by each task's `evaluate` (mir_eval), one track at a time, so memory does not
grow with the split. A track itself (audio, stems, estimates) is held whole: the dataset
API and mir_eval's metrics take whole arrays.

Files written to `output`:
    per_track.csv   one row per (model|baseline, task, track, metric): ``system, task,
                    track, metric, value``
    per_track.json  {system: {task: [{"track": name, <metric>: value, ...}]}}
    summary.json    {system: {task: {metric: {"mean", "median", "n"}}}} for per-track
                    metrics (NaNs ignored); set-level metrics that have no per-track
                    value (tagging's ROC-AUC, PR-AUC) are {"value": v}. The metric keys
                    are the task's own summary keys (mir_eval's names).
and the summary table is printed.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mir.errors import ConfigError

log = logging.getLogger("mir.evaluate")

SYSTEMS = ("model", "baseline")


def compose_data(name: str, overrides: Sequence[str], run_cfg: Any) -> Any:
    """The ``data`` config `name` from ``conf/``, on the checkpoint's front-end grid.

    Raises:
        ConfigError: no such data config, or an override does not apply.
    """
    return on_grid(compose_config(name, overrides), run_cfg)


def on_grid(cfg: Any, run_cfg: Any) -> Any:
    """The ``data`` node of a composed config, on the checkpoint's front end and seed."""
    from omegaconf import OmegaConf, open_dict

    with open_dict(cfg):
        cfg.frontend = OmegaConf.create(OmegaConf.to_container(run_cfg.frontend, resolve=True))
        if "seed" in run_cfg:
            cfg.seed = run_cfg.seed
    return cfg.data


def compose_config(name: str, overrides: Sequence[str]) -> Any:
    """The project config with ``data=<name>`` and the overrides (checked, not resolved).

    Raises:
        ConfigError: no such data config, or an override does not apply.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    from mir.configs import CONF as conf

    check_data_name(name)
    try:
        if GlobalHydra.instance().is_initialized():  # inside the mir.evaluate app: same folder
            return compose("config", overrides=[f"data={name}", *overrides])
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            return compose("config", overrides=[f"data={name}", *overrides])
    except HydraException as exc:
        raise ConfigError(f"data overrides: {str(exc).splitlines()[0]}") from None


def check_data_name(name: str) -> None:
    """Raise a `ConfigError` naming the known dataset configs unless ``conf/data/<name>``
    exists."""
    from mir.configs import CONF as conf

    if not (conf / "data" / f"{name}.yaml").is_file():
        known = ", ".join(
            sorted(p.stem for p in (conf / "data").glob("*.yaml") if not p.stem.startswith("_"))
        )
        raise ConfigError(f"data={name}: no such dataset config; expected one of {known}")


def _light(track: Any) -> Any:
    """The track without its audio and stems (kept for set-level metrics)."""
    return track.without_audio()


def summarise(
    per_track: Sequence[Mapping[str, Any]], task_summary: Mapping[str, float]
) -> dict[str, dict[str, float]]:
    """Mean and median over tracks of every per-track metric (NaNs ignored).

    Metrics of `task_summary` with no per-track value are set-level: kept as ``value``.
    The keys, in order, are those of `task_summary`, then any per-track-only metric.
    """
    from mir.tasks.base import score_stats

    stats = score_stats(per_track)
    keys = dict.fromkeys([*task_summary, *stats])
    return {k: stats[k] if k in stats else {"value": float(task_summary[k])} for k in keys}


def evaluate(
    module: Any,
    datasets: Mapping[str, Any],
    split: str,
    baselines: bool = True,
    max_tracks: int | None = None,
    ids: Sequence[str] | None = None,
) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], dict[str, dict[str, Any]], int, dict]:
    """Score `module` (and each task's baseline) on every track of `split` (or of every
    split: ``all``), or only on the tracks in `ids` (``<id>`` or ``<dataset>/<id>``).

    Returns:
        per_track: system -> task -> [{"track": name, metric: value}].
        summary: system -> task -> metric -> {"mean", "median", "n"} or {"value"}.
        n_tracks: tracks evaluated (at most `max_tracks` per dataset, the first by id).
        coverage: task -> {"scored": n, "skipped": [{"track", "reason"}]}.
    """
    from tqdm import tqdm

    from mir.data.base import check_split
    from mir.data.datamodule import select_tracks

    check_split(split, allow_all=True)
    tasks = module.tasks
    keep = {s for t in tasks.values() for s in t.stems_needed()}
    systems = SYSTEMS if baselines else SYSTEMS[:1]
    per_track: dict[str, dict[str, list[dict[str, Any]]]] = {
        s: {name: [] for name in tasks} for s in systems
    }
    # Tasks whose summary is not a mean over tracks (tagging's AUCs) need every estimate.
    kept: dict[str, dict[str, tuple[list[Any], list[Any]]]] = {
        s: {n: ([], []) for n, t in tasks.items() if t.set_level_summary} for s in systems
    }
    wanted = None if ids is None else {str(i) for i in ids}
    chosen = select_tracks(datasets, split, wanted, max_tracks)
    if wanted is not None:
        found = {t for _, t in chosen} | {f"{d}/{t}" for d, t in chosen}
        if missing := sorted(wanted - found):
            raise ConfigError(
                f"data.ids: {', '.join(missing)} not in the {split} split of {', '.join(datasets)}"
            )
    if not chosen:
        raise ConfigError(f"the {split} split of {', '.join(datasets)} is empty")
    coverage: dict[str, dict[str, Any]] = {n: {"scored": 0, "skipped": []} for n in tasks}
    for dname, tid in tqdm(chosen, desc=f"mir.evaluate {split}", unit="track", file=sys.stderr):
        track = datasets[dname].load(tid)
        track.name = f"{dname}/{track.name}"
        track.set("stems", {k: v for k, v in track.get("stems", {}).items() if k in keep} or None)
        estimates = {"model": module.analyse(track)[1]}  # no whole raw outputs
        if baselines:
            estimates["baseline"] = {n: t.baseline(track) for n, t in tasks.items()}
        for name, task in tasks.items():
            reason = task.skip_reason(track)
            coverage[name]["scored"] += reason is None
            coverage[name]["skipped"] += [{"track": track.name, "reason": reason}] if reason else []
        for system, est in estimates.items():
            for name, task in tasks.items():
                scores, _ = task.evaluate([track], [est[name]])
                per_track[system][name] += [{"track": track.name, **s} for s in scores]
                if name in kept[system]:
                    kept[system][name][0].append(_light(track))
                    kept[system][name][1].append(est[name])
    summary: dict[str, dict[str, Any]] = {s: {} for s in systems}
    for system in systems:
        for name, task in tasks.items():
            rows = per_track[system][name]
            if name in kept[system]:
                _, task_summary = task.evaluate(*kept[system][name])
            else:
                task_summary = {k: math.nan for r in rows for k in r if k != "track"}
            summary[system][name] = summarise(rows, task_summary)
    return per_track, summary, len(chosen), coverage


def per_track_csv(per_track: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["system", "task", "track", "metric", "value"])
    for system, tasks in per_track.items():
        for task, rows in tasks.items():
            for row in rows:
                for k, v in row.items():
                    if k != "track":
                        w.writerow([system, task, row["track"], k, repr(float(v))])
    return buf.getvalue()


def summary_table(summary: Mapping[str, Mapping[str, Any]], title: str = "") -> str:
    """Plain-text table: task, metric, model mean/median (and baseline mean/median)."""
    from mir.report import fmt_score as fmt
    from mir.report import text_table

    systems = list(summary)
    head = ["task", "metric"]
    for s in systems:
        head += [f"{s} mean", f"{s} median"]
    rows = [head]
    for task, metrics in summary[systems[0]].items():
        for key in metrics:
            row = [task, key]
            for s in systems:
                st = summary[s].get(task, {}).get(key, {})
                if "value" in st:
                    row += [fmt(st["value"]), "(set)"]
                else:
                    row += [fmt(st.get("mean")), fmt(st.get("median"))]
            rows.append(row)
    return text_table(rows, title)


def run(
    ckpt: str,
    data: str,
    split: str = "test",
    output: str | None = None,
    device: str = "cpu",
    baselines: bool = True,
    data_overrides: Sequence[str] = (),
    precision: str = "float32",
) -> dict[str, Any]:
    """Evaluate `ckpt` on `data`/`split` and write the score files; returns the summary.

    `precision` (float32, bf16 or int8; int8 on the CPU only) is the dtype of the trunk and
    salience heads in inference, as in `mir.predict`; it is recorded in ``summary.json``, so
    each score folder says which precision made it (`mir.report compare` then sets two such
    folders against each other by their labels)."""
    from mir.audio import atomic_write
    from mir.checkpoint import checkpoint_file, checkpoint_name, load_module
    from mir.data.base import check_split
    from mir.predict import (
        as_bool,
        as_int,
        check_writable_dir,
        parse_device,
        parse_precision,
        to_device,
    )
    from mir.report import coverage_lines, write_json
    from mir.train import instantiate

    if not ckpt:
        raise ConfigError("no checkpoint given: use ckpt=<path to .ckpt>")
    if not data:
        raise ConfigError("no dataset given: use data=<name of a conf/data config>")
    # every argument and the destination are checked before the model is loaded
    check_split(str(split), allow_all=True)
    baselines = as_bool(baselines, "baselines")
    dtype = parse_precision(precision, parse_device(device))
    out = Path(output) if output else Path("eval") / f"{data}-{split}"
    check_writable_dir(out, "output")
    composed = compose_config(str(data), data_overrides)
    cap = composed.data.get("max_eval_tracks")
    if cap is not None:
        cap = as_int(cap, "data.max_eval_tracks", 1)
    checkpoint_file(ckpt)
    module, run_cfg = load_module(ckpt, map_location="cpu")
    module = to_device(module, device)
    module.inference_dtype = dtype
    data_cfg = on_grid(composed, run_cfg)
    datasets = {name: instantiate(node) for name, node in data_cfg.datasets.items()}
    if not datasets:
        raise ConfigError(f"data={data}: no datasets configured")
    ids = data_cfg.get("ids")
    ids = None if ids is None else [str(i) for i in ids]
    per_track, summary, n, coverage = evaluate(module, datasets, str(split), baselines, cap, ids)

    text = per_track_csv(per_track)
    atomic_write(out / "per_track.csv", lambda tmp: Path(tmp).write_text(text))
    write_json(out / "per_track.json", per_track)
    result = {
        "ckpt": checkpoint_name(ckpt),
        "data": data,
        "split": split,
        "tracks": n,
        "seed": run_cfg.get("seed"),
        "precision": precision,
        "coverage": coverage,
        **summary,
    }
    write_json(out / "summary.json", result)
    print(summary_table(summary, title=f"{data} {split}: {n} tracks (full-track inference)"))
    print("\n".join(coverage_lines(coverage, n)))
    print(f"\nmir.evaluate: scores written to {out}/", file=sys.stderr)
    return result


DATA_OVERRIDE = ("data.", "+data.", "~data.")


def main(argv: Sequence[str] | None = None) -> int:
    """The Hydra app ``conf/evaluate.yaml`` (``data=<name>`` chooses its config group); the
    ``data.*`` arguments are taken out first and applied where the dataset config is composed
    on the checkpoint's grid (`compose_config`), which checks them."""
    from mir.errors import MirError
    from mir.predict import as_bool, as_int, hydra_app

    argv = list(sys.argv[1:] if argv is None else argv)
    data_overrides = [a for a in argv if a.startswith(DATA_OVERRIDE)]
    rest = [a for a in argv if not a.startswith(DATA_OVERRIDE)]
    try:  # the one-line message for an unknown dataset, before Hydra's own
        for arg in rest:
            if arg.startswith("data="):
                for name in arg[len("data=") :].split(","):  # a -m sweep's list too
                    check_data_name(name.strip())
    except MirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def body(cfg: Any) -> int:
        from hydra.core.hydra_config import HydraConfig

        from mir.audio import set_strict

        set_strict(as_bool(cfg.strict, "strict"))
        if cfg.get("threads") is not None:  # CPU sums are bit-identical for one thread count
            import torch

            torch.set_num_threads(as_int(cfg.threads, "threads", 1))
        args = {k: cfg[k] for k in ("ckpt", "split", "output", "device", "precision")}
        args["data"] = HydraConfig.get().runtime.choices.get("data")  # the group's choice
        run(**args, baselines=as_bool(cfg.baselines, "baselines"), data_overrides=data_overrides)
        return 0

    return hydra_app(rest, "evaluate", body)


if __name__ == "__main__":
    sys.exit(main())
