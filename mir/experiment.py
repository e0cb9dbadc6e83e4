"""Run an experiment config in process and set its scores beside a paper's: the small API the
paper-reproduction notebooks (``notebooks/``) call.

Two scales:
    * ``smoke``: the experiment on the embedded data with `SMOKE` (tiny front end, a few short
      pieces, a few training batches): about a minute on a CPU. It shows the pipeline runs;
      its numbers are not comparable with any paper's.
    * ``full``: the experiment on the paper's dataset (``data=<name>``), read from the folder
      its data config names by environment variable (``MEDLEYDB_PATH``, ``MUSDB_PATH``, ...),
      with the experiment's own settings.
    ``auto`` is ``full`` when that variable is set and ``smoke`` otherwise.

Example:
    >>> import mir.experiment as ex
    >>> result = ex.run(ex.overrides("deep_salience", data="medleydb", scale="smoke"))
    >>> print(ex.compare({"multif0/Accuracy": 0.63}, result, scale="smoke"))
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from mir.configs import CONF
from mir.errors import ConfigError

SCALES = ("smoke", "full", "auto")

SMOKE: list[str] = ["debug=smoke"]
"""Overrides for a smoke-scale run (``conf/debug/smoke.yaml``, the one definition the tests
use too): about a minute on 2 CPU cores, on 6 embedded pieces of at most 8 s. An
experiment's own model settings (trunk size, head shapes) still apply."""

_ENV = re.compile(r"\$\{oc\.env:(\w+)")


def dataset_env(data: str) -> str | None:
    """The environment variable that ``conf/data/<data>.yaml`` reads its root from (None for
    a dataset that needs none, such as ``embedded``).

    Raises:
        ConfigError: there is no such data config.
    """
    path = CONF / "data" / f"{data}.yaml"
    if data.startswith("_") or not path.is_file():
        known = sorted(p.stem for p in (CONF / "data").glob("*.yaml") if p.stem[0] != "_")
        raise ConfigError(f"data={data}: no {path} (known: {', '.join(known)})")
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    # compose, so that a config that extends another (defaults: [mtg_jamendo]) is followed
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose("config", overrides=[f"data={data}"])
    found = _ENV.search(OmegaConf.to_yaml(cfg.data, resolve=False))
    return found.group(1) if found else None


def resolve_scale(scale: str, data: str) -> str:
    """``smoke`` or ``full``; ``auto`` is ``full`` when `data`'s environment variable is set.

    Raises:
        ConfigError: an unknown scale, or ``full`` without the dataset's variable.
    """
    if scale not in SCALES:
        raise ConfigError(f"scale={scale!r}: expected one of {', '.join(SCALES)}")
    env = dataset_env(data)
    present = env is None or bool(os.environ.get(env))
    if scale == "auto":
        return "full" if present and env is not None else "smoke"
    if scale == "full" and not present:
        raise ConfigError(f"scale=full needs the {data} dataset: set ${env} to its folder")
    return scale


def overrides(
    experiment: str,
    data: str,
    scale: str = "auto",
    extra: Sequence[str] = (),
    smoke: Sequence[str] = (),
) -> list[str]:
    """Hydra overrides for `experiment` at `scale`.

    Args:
        experiment: a ``conf/experiment/<name>.yaml``.
        data: the paper's dataset config, used at full scale.
        scale: ``smoke``, ``full`` or ``auto`` (`resolve_scale`).
        extra: overrides added at either scale, last.
        smoke: overrides added at smoke scale only, after `SMOKE`: e.g. a smaller network
            where the experiment's own does not train on a CPU in a minute.
    """
    if not (CONF / "experiment" / f"{experiment}.yaml").is_file():
        raise ConfigError(f"experiment={experiment}: no conf/experiment/{experiment}.yaml")
    if resolve_scale(scale, data) == "full":
        return [f"experiment={experiment}", f"data={data}", *extra]
    return [f"experiment={experiment}", *SMOKE, *smoke, *extra]


def compose(overrides: Sequence[str], output_dir: str | Path) -> DictConfig:
    """The project config (``conf/config.yaml``) with `overrides`, written to `output_dir`,
    resolved as ``python -m mir.train <overrides>`` would see it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose("config", overrides=list(overrides))
    with open_dict(cfg):
        cfg.output_dir = str(Path(output_dir).resolve())
    OmegaConf.resolve(cfg)
    return cfg


def run(overrides: Sequence[str], output_dir: str | Path | None = None) -> dict[str, Any]:
    """Train, validate and test as ``python -m mir.train <overrides>`` does, in process.

    Args:
        overrides: Hydra overrides, e.g. from `overrides`.
        output_dir: run folder (checkpoints, CSV logs, scores.json); default
            ``outputs/<date>/<time>-<experiment>`` under the working directory.

    Returns:
        `mir.train.run`'s result: ``val``, ``test``, ``test_baseline`` ({task: {metric:
        value}}), ``test_per_track`` and ``monitor``; also ``output_dir``.
    """
    from mir.train import run as train_run

    if output_dir is None:
        names = [o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")]
        stamp = datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
        output_dir = Path("outputs") / f"{stamp}-{'-'.join(names) or 'run'}"
    cfg = compose(overrides, output_dir)
    result = train_run(cfg)
    result["output_dir"] = cfg.output_dir
    return result


def _cell(v: Any, fmt: str = ".3f") -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, fmt)


def lookup(scores: Mapping[str, Mapping[str, float]] | None, key: str) -> float | None:
    """``scores[task][metric]`` for a key ``"<task>/<metric>"`` (the metric may hold '/',
    as in ``separation/vocals/SDR``); None when absent."""
    task, _, metric = key.partition("/")
    return ((scores or {}).get(task) or {}).get(metric)


def compare(
    paper: Mapping[str, float | str],
    result: Mapping[str, Any],
    scale: str,
    title: str = "",
) -> str:
    """A Markdown table of the paper's numbers beside ours (test split) and our trivial
    baseline's, one row per ``"<task>/<metric>"`` key of `paper`.

    A paper value may be a string (``"see paper, Table 2"``) where no number was verified.
    At smoke scale the caption says that the columns are not comparable. "-" marks a value
    we do not have, or one that is undefined on this test set (ROC-AUC over one track).
    """
    if scale not in ("smoke", "full"):
        raise ConfigError(f"compare: scale must be 'smoke' or 'full' (resolved), got {scale!r}")
    lines = [f"**{title}**", ""] if title else []
    lines += [
        f"| metric | paper | ours ({scale}) | trivial baseline |",
        "|---|---|---|---|",
    ]
    for key, value in paper.items():
        ours = lookup(result.get("test"), key)
        base = lookup(result.get("test_baseline"), key)
        # the paper's number as published, ours to 3 decimals
        lines.append(f"| {key} | {_cell(value, 'g')} | {_cell(ours)} | {_cell(base)} |")
    lines.append("")
    if scale == "smoke":
        lines.append(
            "Smoke scale: a minute of training on a few rendered embedded pieces; "
            "our numbers are NOT comparable with the paper's."
        )
    else:
        lines.append(
            "Full scale on the paper's dataset; training data, splits and budget may still "
            "differ from the paper's (see the notes above)."
        )
    return "\n".join(lines)
