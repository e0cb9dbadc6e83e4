"""Rebuild a trained model from a checkpoint written by `mir.train`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mir.errors import ConfigError, MirError


def load_module(path: str | Path, map_location: str = "cpu") -> tuple[Any, DictConfig]:
    """Load a `MirModule` and its run config from a `mir.train` checkpoint.

    The checkpoint holds the resolved run config under ``mir_config``; the module is
    rebuilt from it and its weights loaded (``weights_only`` loading first).

    Raises:
        ConfigError: the file is missing, is not a checkpoint, or lacks a valid config.
    """
    from mir.train import instantiate

    path = Path(path)
    ckpt = read_checkpoint(path, map_location)
    raw = ckpt["mir_config"]
    cfg = OmegaConf.create(raw)
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


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Read a `mir.train` checkpoint and check its stored run config.

    Loaded with ``weights_only=True`` (no code runs while unpickling); a checkpoint that
    needs full unpickling (written by older versions, or holding objects) is retried
    with ``weights_only=False``, so only open checkpoints you trust.

    Raises:
        ConfigError: the file is missing, is not a Lightning checkpoint, has no
            ``mir_config``, or its config lacks the model, front end or tasks, or names a
            task class that does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint file does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:
        try:
            ckpt = torch.load(path, map_location=map_location, weights_only=False)
        except Exception as exc:
            raise ConfigError(f"{path}: not a readable checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(f"{path}: not a Lightning checkpoint (no state_dict)")
    raw = ckpt.get("mir_config")
    if raw is None:
        raise ConfigError(
            f"{path}: checkpoint has no mir run config (mir_config); was it written by mir.train?"
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: mir_config is a {type(raw).__name__}, not a mapping")
    for key in ("model", "frontend", "task"):
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
    return ckpt


def _resolves(target: str) -> bool:
    import importlib

    module_name, _, attr = target.rpartition(".")
    try:
        return hasattr(importlib.import_module(module_name), attr)
    except ImportError:
        return False
