"""Tasks: each one file (`mir/tasks/<name>.py`) plus one YAML (`conf/task/<name>.yaml`).

A task is a subclass of `mir.tasks.base.Task` and owns everything specific to it: its head,
its targets and loss, decoding, `mir_eval` evaluation and summary over a set, the files and
JAMS annotation ``mir.predict`` writes, its W&B figure, its output's shape for
``mir.export``, its default ``mir.report`` columns, and what the tests expect of it. The
rest of the package (the training loop, predict, evaluate, export, report, callbacks) calls
those methods and holds no table keyed by task.

The registry is ``conf/task/*.yaml``: a task exists because its YAML exists and names its
class (``_target_``); `registered` reads them, and the contract, smoke and learning tests
iterate over them.

Adding a task:
    1. ``mir/tasks/<name>.py``: a `Task` subclass. Implement the abstract methods
       (`build_head` returning a `mir.models.model.Head`, `has_labels`, `targets`, `loss`,
       `decode`, `evaluate_track`, `baseline`, `write_outputs`, `figure`, `output_shape`)
       and override what differs from the defaults (`monitor`, `expectations`,
       `summarise` with `set_level_summary`, `export_labels`, `report_columns`,
       `media_audio`, `tune`, `min_crop_seconds`, `stems_needed`). Module docstring:
       a *Conventions* section (label encoding, tolerances, the paper it follows).
    2. ``conf/task/<name>.yaml``: ``# @package task.<name>``, ``_target_`` the class,
       ``name: <name>`` and its settings (read the grid from the front end, never retype it).
    3. Add ``<name>`` to ``conf/experiment/all_tasks.yaml`` (every head; its order is the
       registry's order; a contract test fails until it is there).
    4. If the task reads a kind of annotation no dataset provides yet, teach the loaders
       (and the embedded renderer) to yield it.
"""

from __future__ import annotations

from typing import Any


def registered() -> dict[str, type[Any]]:
    """The registered tasks: name -> `Task` class of each ``conf/task/<name>.yaml``, in the
    order of ``conf/experiment/all_tasks.yaml`` (tasks it does not list last, by name).

    Raises:
        ConfigError: a task YAML has no ``_target_`` or names a class that does not exist.
    """
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from mir.configs import CONF
    from mir.errors import ConfigError

    files = {p.stem: p for p in sorted((CONF / "task").glob("*.yaml"))}
    order = [n for n in all_tasks() if n in files] + sorted(set(files) - set(all_tasks()))
    out: dict[str, type[Any]] = {}
    for name in order:
        target = OmegaConf.load(files[name]).get("_target_")
        if not target:
            raise ConfigError(f"{files[name]}: no _target_ naming the task class")
        try:
            out[name] = get_class(str(target))
        except Exception as exc:
            raise ConfigError(f"{files[name]}: _target_ {target}: {exc}") from None
    return out


def all_tasks() -> list[str]:
    """The task names ``conf/experiment/all_tasks.yaml`` trains jointly, in its order."""
    from omegaconf import OmegaConf

    from mir.configs import CONF

    cfg = OmegaConf.load(CONF / "experiment" / "all_tasks.yaml")
    for entry in cfg.get("defaults", []):
        if not isinstance(entry, str) and "override /task" in entry:
            return [str(n) for n in entry["override /task"]]
    return []
