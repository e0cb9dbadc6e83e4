"""A faster copy of a trained model for inference: batch norms folded, salience heads fused.

`inference_model(model)` returns a module with the same call signature and the same outputs (to
float rounding, about 1e-6 relative) as the eval-mode `MultiTaskModel` it is built from, faster on
a CPU:

* every ``Conv2d`` followed by a ``BatchNorm2d`` (``conv_bn_relu``) becomes one convolution whose
  weights and bias absorb the batch norm's running statistics (eval mode only);
* the first layers of all `SalienceHead`s (the same 3x3 convolution over the same trunk
  features) become one convolution with the heads' output channels stacked, so the trunk
  features are read once; each head's wide and 1x1 layers then run on its own channels;
* trunk and heads run channels-last (``torch.channels_last``), where oneDNN's CPU convolutions
  are 1.5-3x faster at these channel counts than in the default layout;
* the whole forward runs under the front end's thread policy (fewer intra-op threads when
  other processes keep the cores busy; see `mir.frontend.choose_threads`).

The copy is built from the model's current weights on each call (milliseconds); it shares the
model's front end (and its kernel cache) and copies nothing else that is large. Training-mode
models are returned unchanged. Heads that are not salience heads run as they are, on the trunk
features in the default layout.

Shapes: B batch, C channels, H harmonics, F frequency bins, T frames.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from mir.models.features import Features
from mir.models.heads import SalienceHead
from mir.models.layers import ConvTrunk

__all__ = ["FusedSalienceHeads", "InferenceModel", "fold_batch_norms", "inference_model"]


def _folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """One convolution equal to ``bn(conv(x))`` with `bn`'s running statistics."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(conv.weight.device, conv.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale[:, None, None, None])
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """Fold every ``Conv2d`` directly followed by a ``BatchNorm2d`` in an ``nn.Sequential``.

    Works in place on `module` (pass a copy); the batch norm becomes ``nn.Identity``. Only
    valid for inference: the running statistics are frozen into the weights.
    """
    for child in module.children():
        fold_batch_norms(child)
    if isinstance(module, nn.Sequential):
        layers = list(module)
        for i in range(len(layers) - 1):
            conv, bn = layers[i], layers[i + 1]
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(bn, nn.BatchNorm2d)
                and bn.track_running_stats
                and bn.running_mean is not None
                and bn.affine
            ):
                module[i] = _folded_conv(conv, bn)
                module[i + 1] = nn.Identity()
    return module


class FusedSalienceHeads(nn.Module):
    """Several `SalienceHead`s over the same trunk features as one first convolution.

    Args:
        heads: task name -> `SalienceHead`, all with a hidden 3x3 layer of the same input
            channels and kernel (eval mode; their batch norms are folded).
    """

    def __init__(self, heads: dict[str, SalienceHead]) -> None:
        super().__init__()
        self.names = list(heads)
        firsts, rests = [], []
        for head in heads.values():
            net = fold_batch_norms(copy.deepcopy(head.net))
            firsts.append(net[0][0])  # the folded 3x3 conv of conv_bn_relu
            rests.append(nn.Sequential(*list(net)[1:]))
        ref = firsts[0]
        self.widths = [c.out_channels for c in firsts]
        self.first = nn.Conv2d(
            ref.in_channels,
            sum(self.widths),
            ref.kernel_size,  # type: ignore[arg-type]
            padding=ref.padding,  # type: ignore[arg-type]
            bias=True,
        ).to(ref.weight.device, ref.weight.dtype)
        with torch.no_grad():
            self.first.weight.copy_(torch.cat([c.weight for c in firsts]))
            self.first.bias.copy_(torch.cat([c.bias for c in firsts]))
        self.rests = nn.ModuleList(rests)

    @staticmethod
    def fusable(heads: dict[str, nn.Module]) -> bool:
        """True if `heads` are at least two salience heads that share their first layer shape."""
        if len(heads) < 2 or not all(type(h) is SalienceHead for h in heads.values()):
            return False
        shapes = set()
        for head in heads.values():
            first = head.net[0]
            if not (isinstance(first, nn.Sequential) and isinstance(first[0], nn.Conv2d)):
                return False  # hidden = 0: the wide layer reads the trunk directly
            conv = first[0]
            shapes.add((conv.in_channels, conv.kernel_size, conv.padding, conv.stride))
        return len(shapes) == 1 and all(s[3] == (1, 1) for s in shapes)

    def forward(self, trunk: Tensor) -> dict[str, Tensor]:
        """(B, C, F, T) trunk features -> task -> (B, F, T) logits."""
        hidden = torch.relu_(self.first(trunk))  # (B, sum of widths, F, T)
        out = {}
        for name, part, rest in zip(
            self.names, hidden.split(self.widths, dim=1), self.rests, strict=True
        ):
            # a contiguous (channels-last) copy of the head's channels: convolutions on a
            # channel slice take a slow path
            part = part.contiguous(memory_format=torch.channels_last)
            out[name] = rest(part).squeeze(1)
        return out


class InferenceModel(nn.Module):
    """A `MultiTaskModel` for inference: same call, same outputs, faster (see module doc).

    Args:
        model: the eval-mode `MultiTaskModel` (its front end is shared, not copied).
        dtype: dtype of the trunk and salience heads (float32, or bfloat16: about 2x faster on
            CPUs with AVX512-BF16 or AMX, at about 1e-2 relative error of the logits); the
            front end and the outputs stay float32.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.dtype = dtype
        self.frontend = model.frontend
        self.uses_trunk = bool(model.uses_trunk)
        self.uses_stft = bool(model.uses_stft)
        self.trunk = fold_batch_norms(copy.deepcopy(model.trunk)).to(
            memory_format=torch.channels_last
        )
        salience = {n: h for n, h in model.heads.items() if type(h) is SalienceHead}
        self.fused = (
            FusedSalienceHeads(salience).to(memory_format=torch.channels_last)
            if FusedSalienceHeads.fusable(salience)
            else None
        )
        self.order = list(model.heads)
        self.others = nn.ModuleDict(
            {n: h for n, h in model.heads.items() if self.fused is None or n not in salience}
        )
        # Frames of context on each side that the trunk and heads read (time half-kernels of every
        # convolution, summed as if all were in one chain: an upper bound), when they are all
        # convolutional, so that `forward(..., keep=...)` may crop the HCQT before the trunk.
        local = type(model.trunk) is ConvTrunk and self.fused is not None and not self.others
        self.context = (
            sum(
                m.dilation[1] * (m.kernel_size[1] - 1) // 2 + 1
                for part in (self.trunk, self.fused)
                for m in part.modules()
                if isinstance(m, nn.Conv2d)
            )
            if local
            else None
        )
        if dtype != torch.float32:
            self.trunk.to(dtype)
            if self.fused is not None:
                self.fused.to(dtype)

    def forward(
        self, audio: Tensor, keep: tuple[int, int] | None = None
    ) -> tuple[dict[str, Tensor], Features]:
        """(B, N) audio -> ({task: output (B, ...)}, features), as `MultiTaskModel`.

        Args:
            audio: (B, N) waveforms.
            keep: frames [t0, t1) of the outputs that the caller will read. When the trunk and
                heads are all convolutional (`context` is not None), only those frames and
                `context` frames either side go through them; the other output frames are
                zeros. The kept frames equal the full computation's.

        Runs under the front end's thread policy (`HarmonicCQT.thread_policy`): on a machine
        whose cores are busy elsewhere, the whole model uses fewer intra-op threads.
        """
        policy = getattr(self.frontend, "thread_policy", None)
        with policy() if policy is not None else nullcontext():
            return self._forward(audio, keep)

    def _forward(
        self, audio: Tensor, keep: tuple[int, int] | None
    ) -> tuple[dict[str, Tensor], Features]:
        hcqt = self.frontend(audio) if self.uses_trunk else None
        if keep is not None and self.context is not None and hcqt is not None:
            n_frames = hcqt.shape[-1]
            lo = max(0, keep[0] - self.context)
            hi = min(n_frames, keep[1] + self.context)
            if lo > 0 or hi < n_frames:
                kept: dict[str, Tensor] = {}
                assert self.fused is not None
                trunk = self.trunk(
                    hcqt[..., lo:hi].to(self.dtype, memory_format=torch.channels_last)
                )
                cropped = self.fused(trunk)
                for name, value in cropped.items():
                    full = hcqt.new_zeros(*value.shape[:-1], n_frames)  # (B, F, T) float32
                    full[..., lo:hi] = value
                    kept[name] = full
                return {n: kept[n] for n in self.order}, Features(audio=audio, hcqt=hcqt)
        trunk = None
        if hcqt is not None:
            x = hcqt.to(self.dtype, memory_format=torch.channels_last)
            trunk = self.trunk(x)
        outputs: dict[str, Tensor] = {}
        if self.fused is not None and trunk is not None:
            outputs.update({k: v.float() for k, v in self.fused(trunk).items()})
        if trunk is not None:
            trunk = trunk.float()
        if self.others:
            feats = Features(
                audio=audio,
                hcqt=hcqt,
                trunk=trunk.contiguous() if trunk is not None else None,
                stft=self.frontend.stft(audio) if self.uses_stft else None,
            )
            outputs.update({name: head(feats) for name, head in self.others.items()})
        else:
            feats = Features(audio=audio, hcqt=hcqt, trunk=trunk, stft=None)
        return {name: outputs[name] for name in self.order}, feats


def inference_model(model: nn.Module, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A faster module with the same outputs as eval-mode `model`; `model` if it is training.

    Args:
        model: a `MultiTaskModel` (anything with ``frontend``, ``trunk``, ``heads``,
            ``uses_trunk`` and ``uses_stft``); other modules are returned unchanged.
        dtype: float32 (same outputs to float rounding) or bfloat16 (see `InferenceModel`).
    """
    needed = ("frontend", "trunk", "heads", "uses_trunk", "uses_stft")
    if model.training or not all(hasattr(model, a) for a in needed):
        return model
    return InferenceModel(model, dtype).eval()
