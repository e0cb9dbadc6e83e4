"""Convert the deep-salience Keras 2 HDF5 weight files into mir checkpoints.

    python -m mir.pretrained convert <folder with multif0.h5 ...> [--out mir/pretrained]

Needs ``h5py`` (conversion time only: ``pip install h5py``). Each file becomes
``<out>/deepsalience/<model>.ckpt``: ``{"state_dict", "mir_config"}`` for
``experiment=deep_salience`` with that model's task, threshold 0.3 and no tuning.

Keras layout (channels last, (batch, 360 freq, time, 6)): BN on the input, five convolutions
with ReLU each followed by BN, and a 1x1 convolution with a sigmoid; kernels are stored as
(kh, kw, in, out) with kh along frequency. Ours is (B, H, F, T) with (out, in, kF, kT) kernels,
so a kernel is transposed (3, 2, 0, 1); our head returns the logits, and the task applies the
sigmoid.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mir.configs import CONF
from mir.errors import ConfigError
from mir.pretrained import MODELS, ROOT, Pretrained, check_shapes


def build_config(model: Pretrained) -> dict[str, Any]:
    """The resolved config (model, frontend, task, seed) that rebuilds `model`.

    `experiment=deep_salience` with the model's task: the published layout, the authors'
    decoding threshold 0.3, not tuned.
    """
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    head = {"head_channels": 0, "wide_channels": 8, "time_kernel": 3, "layout": "keras"}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config", overrides=["experiment=deep_salience", f"task={model.task}", "logger=[csv]"]
        )
    with open_dict(cfg):
        node = cfg.task[model.task]
        node.update(head)
        node.name = model.head
        node.threshold = 0.3
        node.tune_threshold = False
        cfg.task = {model.head: node}  # drops the experiment's multif0 settings if unused
    out = {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "frontend": OmegaConf.to_container(cfg.frontend, resolve=True),
        "task": OmegaConf.to_container(cfg.task, resolve=True),
        "seed": int(cfg.seed),
        "pretrained": {"name": model.name, "source": model.source, "licence": model.licence},
    }
    return out  # type: ignore[return-value]


def _keras_layers(path: Path) -> list[tuple[str, dict[str, np.ndarray]]]:
    """(layer name, {weight kind: array}) of the file's layers that hold weights, in order."""
    try:
        import h5py
    except ImportError:
        raise ConfigError("converting Keras weights needs h5py: pip install h5py") from None
    if not path.is_file():
        raise ConfigError(f"{path}: Keras weight file does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ConfigError(f"{path}: not an HDF5 file ({exc})") from None
    with f:
        g = f.get("model_weights", f)
        if "layer_names" not in g.attrs:
            raise ConfigError(f"{path}: not a Keras weight file (no layer_names)")
        layers = []
        for raw in g.attrs["layer_names"]:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            names = [
                (n.decode() if isinstance(n, bytes) else str(n))
                for n in g[name].attrs.get("weight_names", [])
            ]
            if not names:
                continue
            weights = {n.split("/")[-1].split(":")[0]: np.asarray(g[name][n]) for n in names}
            layers.append((name, weights))
    return layers


def keras_to_state(path: Path, module: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of `module` (a `MirModule` in the published layout) filled from the
    Keras file at `path`.

    The file's layers (BN, conv, BN, conv, ..., conv) are matched in order with the model's
    BatchNorm2d and Conv2d layers (trunk, then the one head).

    Raises:
        ConfigError: the file's layers differ in number, kind or shape from the model's.
    """
    ours = [
        (name, m)
        for name, m in module.named_modules()
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))
    ]
    theirs = _keras_layers(path)
    if len(theirs) != len(ours):
        raise ConfigError(
            f"{path}: {len(theirs)} weight layers in the file, {len(ours)} in the published model"
        )
    state: dict[str, torch.Tensor] = {}
    for (kname, w), (name, m) in zip(theirs, ours, strict=True):
        if isinstance(m, nn.BatchNorm2d):
            if set(w) != {"gamma", "beta", "moving_mean", "moving_variance"}:
                raise ConfigError(f"{path}: layer {kname} is not a BatchNorm where {name} is")
            state[f"{name}.weight"] = torch.from_numpy(w["gamma"])
            state[f"{name}.bias"] = torch.from_numpy(w["beta"])
            state[f"{name}.running_mean"] = torch.from_numpy(w["moving_mean"])
            state[f"{name}.running_var"] = torch.from_numpy(w["moving_variance"])
            state[f"{name}.num_batches_tracked"] = torch.tensor(0)
        else:
            if set(w) != {"kernel", "bias"} or w["kernel"].ndim != 4:
                raise ConfigError(f"{path}: layer {kname} is not a 2-D convolution where {name} is")
            state[f"{name}.weight"] = torch.from_numpy(np.transpose(w["kernel"], (3, 2, 0, 1)))
            state[f"{name}.bias"] = torch.from_numpy(w["bias"])
    expected = module.state_dict()
    for k, v in expected.items():  # buffers the file does not hold (the decoding threshold)
        if k not in state and k.endswith("threshold"):
            state[k] = v.clone()
    check_shapes(path, "deep-salience", expected, state)
    return {k: v.to(expected[k].dtype).contiguous() for k, v in state.items()}


def convert(src: Path, out: Path = ROOT, names: list[str] | None = None) -> list[Path]:
    """Convert ``<src>/<model>.h5`` for each deep-salience model into ``<out>/<name>.ckpt``.

    Every file is converted and checked before any is written; each is written atomically.
    """
    from omegaconf import OmegaConf

    from mir.train import instantiate

    todo = [MODELS[n] for n in (names or [n for n in MODELS if n.startswith("deepsalience/")])]
    results = []
    for model in todo:
        cfg = build_config(model)
        module = instantiate(OmegaConf.create(cfg).model, compile=False)
        h5 = Path(src) / f"{model.name.split('/', 1)[1]}.h5"
        results.append((model, {"state_dict": keras_to_state(h5, module), "mir_config": cfg}))
    written = []
    for model, ckpt in results:
        dest = Path(out) / f"{model.name}.ckpt"
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".tmp")
        os.close(fd)
        try:
            torch.save(ckpt, tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        written.append(dest)
    return written
