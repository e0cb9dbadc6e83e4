"""Open checkpoints as data, never as code, and rebuild a trained model from one.

Every tool that opens a checkpoint (`mir.predict`, `mir.evaluate`, `mir.export`, and
``mir.train ckpt_path=...`` resume) goes through `read_checkpoint`:

* The file is unpickled with ``torch.load(weights_only=True)``: only tensors, numbers,
  strings, lists, tuples and dicts come back; a pickled object (whose ``__reduce__`` could
  run code) is refused before it is built. There is no fallback to full unpickling.
* The stored run config (``mir_config``) rebuilds the model only through an allowlist:
  every ``_target_`` in its ``model``, ``frontend`` and ``task`` sections must be a torch
  module or task class defined in the ``mir`` package, a ``torch.optim`` optimiser or
  learning-rate scheduler, or ``functools.partial``; anything else is refused naming its
  key, before anything is imported or built. The other sections (trainer, callbacks,
  loggers, data) are never instantiated from a checkpoint and are dropped on load.
* ``pretrained:<name>`` names a checkpoint packaged with mir (``mir/pretrained/<name>.ckpt``,
  the same format as a ``mir.train`` checkpoint), checked the same way.
"""

from __future__ import annotations

import importlib
import importlib.resources
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mir.errors import ConfigError, MirError

PRETRAINED = "pretrained:"
# The sections of `mir_config` that rebuild the model (resolved copies of one another).
MODEL_SECTIONS = ("model", "frontend", "task")
ALLOWED = (
    "torch modules and tasks of the mir package, torch.optim optimisers and schedulers, "
    "functools.partial"
)
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")


def load_module(path: str | Path, map_location: str = "cpu") -> tuple[Any, DictConfig]:
    """Load a `MirModule` and its run config from a `mir.train` checkpoint.

    Args:
        path: a checkpoint file, or ``pretrained:<name>`` for a packaged one.
        map_location: where the tensors are loaded.

    Returns:
        The module in eval mode, and the checked part of its run config (``model``,
        ``frontend``, ``task`` and top-level plain values such as ``seed``).

    Raises:
        ConfigError: the file is missing, is not a mir checkpoint or holds pickled objects,
            or its config names a class outside the allowlist or does not build a model.
    """
    from mir.train import instantiate

    ckpt = read_checkpoint(path, map_location)
    raw = ckpt["mir_config"]
    cfg = OmegaConf.create(_without_init(raw))
    try:
        # never compile at load time: inference and export run the eager graph
        module = instantiate(cfg.model, compile=False)
    except MirError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"{path}: the stored config does not build a model ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    missing, unexpected = module.load_state_dict(ckpt["state_dict"], strict=False)
    if missing or unexpected:
        raise ConfigError(
            f"{path}: weights do not match the config (missing {list(missing)[:3]}, "
            f"unexpected {list(unexpected)[:3]})"
        )
    module.run_config = raw
    module.eval()
    return module, cfg


def _without_init(node: Any) -> Any:
    """A copy of a run config without its fine-tuning settings: every ``init`` (a pretrained
    name or a checkpoint path, beside its ``freeze``) set to None and ``freeze`` to False.
    The stored weights replace that initialisation, its file need not exist where the
    checkpoint is opened, and freezing only matters to training."""
    if isinstance(node, dict):
        if "init" in node and "freeze" in node:
            node = {**node, "init": None, "freeze": False}
        return {k: _without_init(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_without_init(v) for v in node]
    return node


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Read a `mir.train` checkpoint as data and check its stored run config.

    Args:
        path: a checkpoint file, or ``pretrained:<name>``.
        map_location: where the tensors are loaded.

    Returns:
        The checkpoint dict; its ``mir_config`` keeps only the checked sections.

    Raises:
        ConfigError: the file is missing; it is not a checkpoint, or holds objects that
            would run code when unpickled; it has no ``mir_config``; its config lacks the
            model, front end or tasks, or names a ``_target_`` outside the allowlist.
    """
    file = checkpoint_file(path)
    try:
        with open(file, "rb") as f:
            ckpt = torch.load(f, map_location=map_location, weights_only=True)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from None
    except Exception:  # UnpicklingError, RuntimeError (not a zip), EOFError, ...
        raise ConfigError(
            f"{path}: not a mir checkpoint, or it contains objects that would run code"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(f"{path}: not a Lightning checkpoint (no state_dict)")
    raw = ckpt.get("mir_config")
    if raw is None:
        raise ConfigError(
            f"{path}: checkpoint has no mir run config (mir_config); was it written by mir.train?"
        )
    ckpt["mir_config"] = check_config(raw, path)
    return ckpt


def check_config(raw: Any, path: str | Path = "checkpoint") -> dict[str, Any]:
    """The part of a stored run config that rebuilds a model, checked against the allowlist.

    Returns:
        ``model``, ``frontend``, ``task`` and the top-level plain values (``seed``...).

    Raises:
        ConfigError: a section is missing, a task class does not exist, or a
            ``_target_`` (or an interpolation) is not allowed; the message names its key.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: mir_config is a {type(raw).__name__}, not a mapping")
    for key in MODEL_SECTIONS:
        if not isinstance(raw.get(key), dict):
            raise ConfigError(f"{path}: mir_config has no {key!r} section")
    if not raw["task"]:
        raise ConfigError(f"{path}: mir_config selects no task")
    for name, node in raw["task"].items():
        target = node.get("_target_") if isinstance(node, dict) else None
        if not isinstance(target, str) or not _resolves(target):
            raise ConfigError(
                f"{path}: unknown task {name!r} (class {target!r} not found in this version of mir)"
            )
    kept = {k: v for k, v in raw.items() if isinstance(v, str | int | float | bool)}
    for section in MODEL_SECTIONS:
        for key, value in _walk(raw[section], section):
            if isinstance(value, str) and "${" in value:
                raise ConfigError(
                    f"{path}: mir_config {key} holds an interpolation ({value[:60]!r}); "
                    "a stored config is resolved, so this checkpoint was not written by mir"
                )
            if key.rsplit(".", 1)[-1] == "_target_" and _allowed(value) is None:
                raise ConfigError(
                    f"{path}: mir_config {key} = {str(value)[:80]!r} is not allowed "
                    f"(only {ALLOWED}); refusing to build it"
                )
        kept[section] = raw[section]
    return kept


def _walk(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf and node under `node`."""
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{prefix}.{k}"
            yield key, v
            yield from _walk(v, key)
    elif isinstance(node, list | tuple):
        for i, v in enumerate(node):
            key = f"{prefix}[{i}]"
            yield key, v
            yield from _walk(v, key)


def _allowed(target: Any) -> Any:
    """The object `target` names if it is on the allowlist, else None.

    Only names under ``mir.`` and ``torch.optim.`` are imported (importing an arbitrary
    module can run code); the object must then be the class the name spells, not an alias.
    """
    if not isinstance(target, str):
        return None
    if target == "functools.partial":
        import functools

        return functools.partial
    if not target.startswith(("mir.", "torch.optim.")):
        return None
    module_name, _, attr = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr, None)
    except ImportError:
        return None
    if not isinstance(obj, type):
        return None
    if target.startswith("mir."):
        from torch import nn

        from mir.tasks.base import Task

        canonical = f"{obj.__module__}.{obj.__qualname__}" == target
        return obj if canonical and issubclass(obj, nn.Module | Task) else None
    schedulers = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    if module_name == "torch.optim" and issubclass(obj, torch.optim.Optimizer):
        return obj
    if module_name == "torch.optim.lr_scheduler" and issubclass(obj, schedulers):
        return obj
    return None


def _resolves(target: str) -> bool:
    if not target.startswith("mir."):
        return True  # not a missing mir task: the allowlist names the problem
    module_name, _, attr = target.rpartition(".")
    try:
        return hasattr(importlib.import_module(module_name), attr)
    except ImportError:
        return False


# -- where a checkpoint is ------------------------------------------------------------------
def pretrained_root() -> Any:
    """The folder of packaged checkpoints (`mir/pretrained`), as an importlib resource."""
    return importlib.resources.files("mir") / "pretrained"


def pretrained_names() -> list[str]:
    """Names of the packaged checkpoints, ``<folder>/<name>`` without ``.ckpt``, sorted."""
    names: list[str] = []

    def visit(node: Any, prefix: str) -> None:
        if not node.is_dir():
            return
        for child in node.iterdir():
            if child.is_dir():
                visit(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".ckpt"):
                names.append(prefix + child.name[: -len(".ckpt")])

    visit(pretrained_root(), "")
    return sorted(names)


def checkpoint_file(spec: str | Path) -> Path:
    """The file a ``ckpt=`` argument names: a path, or ``pretrained:<name>``.

    Raises:
        ConfigError: the file does not exist, or no packaged checkpoint has that name (the
            message lists the available names).
    """
    text = str(spec)
    if not text.startswith(PRETRAINED):
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"{path}: checkpoint file does not exist")
        return path
    name = text[len(PRETRAINED) :]
    node = pretrained_root()
    parts = name.split("/")
    if _NAME.fullmatch(name) and ".." not in parts:
        for part in parts[:-1]:
            node = node / part
        node = node / f"{parts[-1]}.ckpt"
    if not (_NAME.fullmatch(name) and ".." not in parts and node.is_file()):
        known = pretrained_names()
        listing = ", ".join(known) if known else "none are installed"
        raise ConfigError(f"{text}: no such pretrained model; available: {listing}")
    return Path(str(node))


def checkpoint_name(spec: str | Path) -> str:
    """How outputs record the checkpoint: ``pretrained:<name>`` as given, a file's full path."""
    text = str(spec)
    return text if text.startswith(PRETRAINED) else str(Path(text).resolve())
