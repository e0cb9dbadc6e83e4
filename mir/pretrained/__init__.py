"""Pretrained models that ship with mir (no download): names, files, loading, fine-tuning.

A pretrained model is a mir checkpoint inside this package, ``mir/pretrained/<name>.ckpt``:
a plain dict ``{"state_dict": ..., "mir_config": ...}`` (readable with
``torch.load(weights_only=True)``) whose ``mir_config`` rebuilds the model through
`mir.checkpoint.load_module`. It is named ``pretrained:<name>`` wherever a checkpoint is
expected, e.g. ``pretrained:deepsalience/melody2``.

    python -m mir.pretrained list          # names, tasks, sources, licences

The deep-salience models (Bittner, McFee, Salamon, Li & Bello, ISMIR 2017) are the authors'
released Keras weights (MIT licence, notice in ``deepsalience/LICENSE``), converted by
``python -m mir.pretrained convert <folder of .h5 files>`` into ``experiment=deep_salience``
with the published layer layout (`mir.models.layers.Layout`). Their decoding follows the
authors' defaults: threshold 0.3, not tuned (multi-f0: local maxima along frequency >= 0.3;
single f0: argmax per frame, unvoiced below 0.3); `load` swaps in another threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mir.errors import ConfigError

PREFIX = "pretrained:"
ROOT = Path(__file__).resolve().parent

DEEPSALIENCE_SOURCE = (
    "Bittner et al., ISMIR 2017; github.com/rabitt/ismir2017-deepsalience "
    "@4b2ff4449ee9d4b27b9a116d80a9393f246879a7 predict/weights/{file}.h5"
)


@dataclass(frozen=True)
class Pretrained:
    """One shipped model.

    Attributes:
        name: ``<family>/<model>``; the file is ``mir/pretrained/<name>.ckpt``.
        task: the mir task config its head is built from (``conf/task/<task>.yaml``).
        head: the head's name (key of the task in the model).
        trained_on: what the authors trained it to output.
        source: where the weights come from.
        licence: the weights' licence and where its notice is.
    """

    name: str
    task: str
    head: str
    trained_on: str
    source: str
    licence: str

    @property
    def path(self) -> Path:
        return ROOT / f"{self.name}.ckpt"


def _deepsalience(model: str, task: str, head: str, trained_on: str) -> Pretrained:
    return Pretrained(
        name=f"deepsalience/{model}",
        task=task,
        head=head,
        trained_on=trained_on,
        source=DEEPSALIENCE_SOURCE.format(file=model),
        licence="MIT, (c) 2017 Rachel Bittner (mir/pretrained/deepsalience/LICENSE)",
    )


MODELS: dict[str, Pretrained] = {
    m.name: m
    for m in (
        _deepsalience("multif0", "multif0", "multif0", "every f0 (MedleyDB multi-f0 mixes)"),
        _deepsalience("melody1", "melody", "melody", "melody, MedleyDB MELODY1 definition"),
        _deepsalience("melody2", "melody", "melody", "melody, MedleyDB MELODY2 definition"),
        _deepsalience("melody3", "melody", "melody", "melody, MedleyDB MELODY3 definition"),
        _deepsalience("bass", "bass", "bass", "bass line f0"),
        _deepsalience("vocal", "vocal", "vocal", "singing-voice f0"),
        _deepsalience("pitch", "melody", "pitch", "f0 of monophonic recordings"),
    )
}


def get(name: str) -> Pretrained:
    """The shipped model called `name` (``deepsalience/melody2``, with or without the
    ``pretrained:`` prefix).

    Raises:
        ConfigError: no such model (the message lists the known names).
    """
    key = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    if key not in MODELS:
        raise ConfigError(
            f"unknown pretrained model {name!r}; known: {', '.join(PREFIX + n for n in MODELS)}"
        )
    return MODELS[key]


def resolve(spec: str | Path) -> Path:
    """The checkpoint file for ``pretrained:<name>`` or a path (returned unchanged)."""
    if isinstance(spec, str) and spec.startswith(PREFIX):
        return get(spec).path
    return Path(spec)


def read_state(spec: str | Path) -> tuple[Path, dict[str, torch.Tensor], dict[str, Any]]:
    """(path, state_dict, mir_config) of a pretrained model or mir checkpoint, read through
    `mir.checkpoint.read_checkpoint` (data only, config checked) like every checkpoint.

    Raises:
        ConfigError: the file is missing, unreadable, or not a mir checkpoint.
    """
    from mir.checkpoint import read_checkpoint

    path = resolve(spec)
    ckpt = read_checkpoint(path)
    return path, ckpt["state_dict"], ckpt["mir_config"]


def load(name: str, threshold: float | None = None, map_location: str = "cpu") -> tuple[Any, Any]:
    """A shipped model, rebuilt: (`mir.module.MirModule` in eval mode, its config).

    Args:
        name: e.g. ``deepsalience/multif0`` (``pretrained:`` prefix optional).
        threshold: decoding threshold for every salience head (default: the stored one,
            the authors' 0.3); e.g. a threshold tuned on your validation set.
    """
    from mir.checkpoint import load_module

    module, cfg = load_module(get(name).path, map_location=map_location)
    if threshold is not None:
        for head in module.model.heads.values():
            if isinstance(getattr(head, "threshold", None), torch.Tensor):
                head.threshold.fill_(float(threshold))
    return module, cfg


def init_from(module: nn.Module, spec: str, part: str, freeze: bool = False) -> None:
    """Initialise `module` (a trunk or a salience head) from a checkpoint's weights.

    Args:
        module: the freshly built trunk or head; it must have the checkpoint's architecture.
        spec: ``pretrained:<name>`` or a mir checkpoint path; for heads, ``#<head>`` picks
            one head of a checkpoint with several salience heads.
        part: ``trunk`` or ``head``.
        freeze: stop gradients and keep BN statistics (the module sets ``frozen``).

    Raises:
        ConfigError: unreadable file, no such part, or any tensor missing, extra or of
            another shape (one line naming the file and the first difference); nothing is
            loaded then.
    """
    spec, _, head_name = str(spec).partition("#")
    path, state, _ = read_state(spec)
    if part == "trunk":
        prefix = "model.trunk."
    else:
        heads = sorted({k.split(".")[2] for k in state if k.startswith("model.heads.")})
        salience = [h for h in heads if f"model.heads.{h}.threshold" in state]
        if head_name:
            if head_name not in heads:
                raise ConfigError(f"{path}: no head {head_name!r}; it has {heads}")
        elif len(salience) == 1:
            head_name = salience[0]
        else:
            raise ConfigError(
                f"{path}: {len(salience)} salience heads {salience}; name one as '#<head>'"
            )
        prefix = f"model.heads.{head_name}."
    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not sub:
        raise ConfigError(f"{path}: has no {part} weights (no '{prefix}*' tensors)")
    check_shapes(path, part, module.state_dict(), sub)
    module.load_state_dict(sub, strict=True)
    if freeze:
        for p in module.parameters():
            p.requires_grad_(False)
        module.frozen = True  # type: ignore[assignment]
        module.eval()


def check_shapes(
    path: Path, what: str, expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]
) -> None:
    """Raise one `ConfigError` line at the first tensor missing, extra or of another shape."""
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    if missing or extra:
        raise ConfigError(
            f"{path}: {what} architecture differs: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for k, v in expected.items():
        if tuple(found[k].shape) != tuple(v.shape):
            raise ConfigError(
                f"{path}: {what} architecture differs at {k}: "
                f"{tuple(found[k].shape)} in the file, {tuple(v.shape)} in the model"
            )


__all__ = ["MODELS", "Pretrained", "get", "init_from", "load", "read_state", "resolve"]
