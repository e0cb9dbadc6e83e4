"""Rebuild a trained model from a checkpoint written by `mir.train`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mir.errors import ConfigError


def load_module(path: str | Path, map_location: str = "cpu") -> tuple[Any, DictConfig]:
    """Load a `MirModule` and its run config from a `mir.train` checkpoint.

    The checkpoint holds the resolved run config under ``mir_config``; the module is
    rebuilt from it and its weights loaded (``weights_only`` loading first).

    Raises:
        ConfigError: the file is missing, is not a checkpoint, or lacks a valid config.
    """
    from mir.train import instantiate

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
    if not isinstance(raw, dict) or "model" not in raw or "frontend" not in raw:
        raise ConfigError(
            f"{path}: checkpoint has no mir run config (was it written by mir.train?)"
        )
    cfg = OmegaConf.create(raw)
    module = instantiate(cfg.model)
    missing, unexpected = module.load_state_dict(ckpt["state_dict"], strict=False)
    if missing or unexpected:
        raise ConfigError(
            f"{path}: weights do not match the config (missing {list(missing)[:3]}, "
            f"unexpected {list(unexpected)[:3]})"
        )
    module.run_config = raw
    module.eval()
    return module, cfg
