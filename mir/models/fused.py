"""A faster copy of a trained model for inference: batch norms folded, salience heads fused.

`inference_model(model)` returns a module with the same call signature and the same outputs (to
float rounding, about 1e-6 relative) as the eval-mode `MultiTaskModel` it is built from, faster on
a CPU:

* every ``Conv2d`` followed by a ``BatchNorm2d`` (``conv_bn_relu``) becomes one convolution whose
  weights and bias absorb the batch norm's running statistics (eval mode only);
* batch norms that no convolution absorbs (the published layout's, after each ReLU, and the
  input's) become one fused multiply-add per channel (`ChannelAffine`), in place where safe:
  torch's batch norm on channels-last tensors takes a slow path; `SameConv2d`s whose
  TensorFlow "same" padding is symmetric pad inside the convolution instead of copying their
  input (`pad_in_conv`);
* the first layers of all `SalienceHead`s (the same 3x3 convolution over the same trunk
  features) become one convolution with the heads' output channels stacked, so the trunk
  features are read once; each head's wide and 1x1 layers then run on its own channels;
* trunk and heads run channels-last (``torch.channels_last``), where oneDNN's CPU convolutions
  are 1.5-3x faster at these channel counts than in the default layout;
* each salience head's layers after the first (the long frequency kernel, 71 bins with 8 input
  and 4 output channels at the defaults, and the 1x1 output layer) run on `FREQ_FOLD`
  neighbouring bins stacked as channels (`FrequencyFolded`): the same sums as one convolution
  with 4x the channels and a quarter of the taps, which keeps the vector units busy (about 3x
  faster for that layer);
* the whole forward runs under the front end's thread policy (fewer intra-op threads when
  other processes keep the cores busy; see `mir.frontend.choose_threads`).

Opt-in lower precision for the trunk and salience heads (the front end and the outputs stay
float32): ``dtype=torch.bfloat16``, or ``dtype=torch.qint8``: int8 convolutions through torch's
eager-mode quantization on the x86 (fbgemm/oneDNN) engine (`Int8Chain`): weights per output
channel, activations per tensor with ranges calibrated on synthetic tones
(`calibration_audio`) or given audio; the published layout's batch-norm scales are first moved
into the convolutions (`relu_scales_into_convs`), each head's logits layer stays float32, and
tensors stay int8 from the trunk to the heads' wide layers, and each salience head's logits are
shifted by the mean int8 error measured on the calibration audio where the salience can be
decoded (`logit_offset`: bias correction, without which int8 lowered the released multi-f0
model's recall). About 4x faster than float32 for trunk and heads on an AVX512-VNNI CPU; logits
within about 1 % of their range of float32's (benchmarks/README.md has the fixture scores,
experiments/int8/ the scores on 40 more pieces). torch 2.13 warns that its quantized tensor
types will be removed in a future release; `int8_engine` raises `ConfigError` where they are
missing.

The copy is built from the model's current weights on each call (milliseconds); it shares the
model's front end (and its kernel cache) and copies nothing else that is large. Training-mode
models are returned unchanged. Heads that are not salience heads run as they are, on the trunk
features in the default layout.

Shapes: B batch, C channels, H harmonics, F frequency bins, T frames.
"""

from __future__ import annotations

import copy
import warnings
import weakref
from collections.abc import Iterable, Sequence
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from mir.errors import ConfigError
from mir.models.features import Features
from mir.models.heads import SalienceHead
from mir.models.layers import ConvTrunk, SameConv2d

__all__ = [
    "FREQ_FOLD",
    "ChannelAffine",
    "FrequencyFolded",
    "FusedSalienceHeads",
    "InferenceModel",
    "Int8Chain",
    "batch_norms_as_affine",
    "calibration_audio",
    "fold_batch_norms",
    "inference_model",
    "int8_engine",
    "pad_in_conv",
    "relu_scales_into_convs",
]

# Neighbouring frequency bins stacked as channels by `FrequencyFolded`.
FREQ_FOLD = 4
# Fold a salience head's layers after the first only when its wide kernel spans at least this
# many bins: for short kernels the extra arithmetic of the folded taps (rounded up) does not pay.
_FOLD_MIN_BINS = 2 * FREQ_FOLD


def _folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """One convolution equal to ``bn(conv(x))`` with `bn`'s running statistics."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused = copy.deepcopy(conv)  # keeps the padding, SameConv2d's included
    if fused.bias is None:
        fused.bias = nn.Parameter(torch.zeros_like(bn.running_mean))
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale[:, None, None, None])
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def pad_in_conv(module: nn.Module) -> nn.Module:
    """Replace every `SameConv2d` whose padding is symmetric by an ``nn.Conv2d`` that pads.

    Works in place on `module` (pass a copy). TensorFlow's "same" padding of an odd kernel is
    symmetric, so the convolution can pad by itself instead of `SameConv2d`'s copy of its input
    (for the published layout, a copy of every layer's input: about 20 % of its trunk's time).
    """
    for name, child in module.named_children():
        if type(child) is SameConv2d:
            t_lo, t_hi, f_lo, f_hi = child.same_pad
            if t_lo == t_hi and f_lo == f_hi:
                conv = nn.Conv2d(
                    child.in_channels,
                    child.out_channels,
                    child.kernel_size,  # type: ignore[arg-type]
                    padding=(f_lo, t_lo),
                    bias=child.bias is not None,
                ).to(child.weight.device, child.weight.dtype)
                conv.load_state_dict(child.state_dict())
                setattr(module, name, conv)
        else:
            pad_in_conv(child)
    return module


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


class _FoldedConv(nn.Module):
    """A stride-1 convolution on folded bins, with its zero padding made explicit."""

    def __init__(self, conv: nn.Conv2d, fold: int) -> None:
        super().__init__()
        o, c, kf, kt = conv.weight.shape
        if isinstance(conv, SameConv2d):
            t_lo, t_hi, f_lo, _ = conv.same_pad
        else:
            f_lo, t_lo = conv.padding  # type: ignore[misc,assignment]  # ints: checked by foldable
            t_hi = t_lo
        # output bin s*f' + q reads input bin s*f' + q + k - f_lo = s*(f' + d) + r
        taps = {
            (q, k): divmod(q + k - f_lo, fold) for q in range(fold) for k in range(kf)
        }  # (q, k) -> (d, r)
        d_lo = min(d for d, _ in taps.values())
        d_hi = max(d for d, _ in taps.values())
        w = conv.weight.new_zeros(fold, o, fold, c, d_hi - d_lo + 1, kt)  # (q, O, r, C, D, Kt)
        for (q, k), (d, r) in taps.items():
            w[q, :, r, :, d - d_lo] = conv.weight[:, :, k]
        self.weight = nn.Parameter(w.reshape(fold * o, fold * c, -1, kt), requires_grad=False)
        bias = conv.bias if conv.bias is not None else conv.weight.new_zeros(o)
        self.bias = nn.Parameter(bias.repeat(fold), requires_grad=False)  # channel q*O + o
        self.pad = (t_lo, t_hi, -d_lo, d_hi)  # F.pad order: T, then folded F

    def forward(self, x: Tensor) -> Tensor:
        """(B, s*C, F/s, T) -> (B, s*O, F/s, T)."""
        t_lo, t_hi, f_lo, f_hi = self.pad
        if t_lo == t_hi and f_lo == f_hi:
            return nn.functional.conv2d(x, self.weight, self.bias, padding=(f_lo, t_lo))
        return nn.functional.conv2d(nn.functional.pad(x, self.pad), self.weight, self.bias)


class FrequencyFolded(nn.Module):
    """A chain of same-size convolutions and pointwise layers, run on folded frequency bins.

    Folding stacks `fold` neighbouring bins as channels: (B, C, F, T) -> (B, fold*C, F/fold, T),
    channel ``r*C + c`` holding bin ``fold*f + r`` of channel c. A convolution with a long
    frequency kernel of Kf bins becomes one with `fold` times the input and output channels and
    about Kf / fold taps: the same products in another order (equal to float rounding), but
    shaped so that oneDNN fills its vector registers (at the salience heads' 8 -> 4 channels,
    71 bins, about 3x faster). Time kernels are unchanged.

    Args:
        layers: eval-mode layers, in order: ``nn.Conv2d`` or ``SameConv2d`` with stride 1,
            dilation 1, one group, zero padding that keeps the size (see `foldable`);
            ``nn.BatchNorm2d``; or pointwise activations (``nn.ReLU``, ``nn.Identity``).
        fold: bins per folded row.

    When F is not a multiple of `fold`, the layers run unfolded (same result).
    """

    def __init__(self, layers: Sequence[nn.Module], fold: int = FREQ_FOLD) -> None:
        super().__init__()
        if not self.foldable(layers):
            raise ValueError("FrequencyFolded: these layers cannot be folded")
        self.fold = fold
        self.plain = nn.Sequential(*layers)
        folded: list[nn.Module] = []
        for layer in layers:
            if isinstance(layer, nn.Conv2d):
                folded.append(_FoldedConv(layer, fold))
            elif isinstance(layer, nn.BatchNorm2d):
                folded.append(ChannelAffine.from_batch_norm(layer, fold, inplace=bool(folded)))
            else:
                folded.append(layer)
        self.folded = nn.Sequential(*folded)
        self.out_channels = [m for m in layers if isinstance(m, nn.Conv2d)][-1].out_channels

    @staticmethod
    def foldable(layers: Sequence[nn.Module]) -> bool:
        """True if every layer is one `FrequencyFolded` can fold, with at least one conv."""
        convs = 0
        for m in layers:
            if type(m) in (nn.Conv2d, SameConv2d):
                assert isinstance(m, nn.Conv2d)
                kf, kt = m.kernel_size
                pad = m.padding
                ok = isinstance(m, SameConv2d) or (  # SameConv2d keeps the size by design
                    not isinstance(pad, str)
                    and 2 * pad[0] == kf - 1
                    and 2 * pad[1] == kt - 1
                    and m.padding_mode == "zeros"
                )
                if not (ok and m.stride == (1, 1) and m.dilation == (1, 1) and m.groups == 1):
                    return False
                convs += 1
            elif isinstance(m, nn.BatchNorm2d):
                if not (m.track_running_stats and m.running_mean is not None and m.affine):
                    return False
            elif type(m) not in (nn.ReLU, nn.Identity):
                return False
        return convs > 0

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, F, T) -> (B, C_out, F, T), channels-last."""
        b, c, f, t = x.shape
        s = self.fold
        if f % s:
            return self.plain(x)
        # (B, F/s, s, T, C) -> (B, F/s, T, s, C): one copy; a view from channels-last memory
        rows = x.permute(0, 2, 3, 1).reshape(b, f // s, s, t, c).transpose(2, 3)
        folded = rows.reshape(b, f // s, t, s * c).permute(0, 3, 1, 2)  # (B, s*C, F/s, T)
        y = self.folded(folded)  # (B, s*O, F/s, T), channel q*O + o
        o = self.out_channels
        y = y.permute(0, 2, 3, 1).reshape(b, f // s, t, s, o)  # (B, F/s, T, s, O)
        y = y.permute(0, 4, 1, 3, 2).reshape(b, o, f, t)  # (B, O, F, T)
        return y.contiguous(memory_format=torch.channels_last)


class ChannelAffine(nn.Module):
    """``x * scale + shift`` per channel: an eval-mode batch norm that no convolution absorbs.

    torch's batch norm on a channels-last tensor takes a slow path (about 7x the time of this
    one fused multiply-add at 128 channels). With `inplace`, x is overwritten: only for a layer
    whose input nothing else reads (one that follows another layer in its chain).
    """

    def __init__(self, scale: Tensor, shift: Tensor, inplace: bool = False) -> None:
        super().__init__()
        self.scale = nn.Parameter(scale.detach()[:, None, None].clone(), requires_grad=False)
        self.shift = nn.Parameter(shift.detach()[:, None, None].clone(), requires_grad=False)
        self.inplace = inplace

    @classmethod
    def from_batch_norm(cls, bn: nn.BatchNorm2d, repeat: int = 1, inplace: bool = False):
        """The eval-mode `bn`, its parameters repeated `repeat` times (folded channels)."""
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C,)
        shift = bn.bias - bn.running_mean * scale
        return cls(scale.repeat(repeat), shift.repeat(repeat), inplace)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, F, T) -> (B, C, F, T)."""
        if self.inplace and _no_grad(x) and x.dtype == self.scale.dtype:
            return torch.addcmul(self.shift, x, self.scale, out=x)
        return torch.addcmul(self.shift, x, self.scale)


def _no_grad(x: Tensor) -> bool:
    return not (torch.is_grad_enabled() and x.requires_grad)


def _affine_bn(bn: nn.Module) -> bool:
    return (
        isinstance(bn, nn.BatchNorm2d)
        and bn.track_running_stats
        and bn.running_mean is not None
        and bn.affine
    )


def batch_norms_as_affine(module: nn.Module) -> nn.Module:
    """Replace every eval-mode ``BatchNorm2d`` by a `ChannelAffine` (in place on `module`).

    Run after `fold_batch_norms`, for the batch norms that follow a ReLU (the published layout)
    or read the input; those that follow another layer of their ``nn.Sequential`` work in place.
    """
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and _affine_bn(child):
            inplace = isinstance(module, nn.Sequential) and int(name) > 0
            setattr(module, name, ChannelAffine.from_batch_norm(child, inplace=inplace))
        else:
            batch_norms_as_affine(child)
    return module


def _flat(module: nn.Module) -> list[nn.Module]:
    """The leaf layers of nested ``nn.Sequential``s, in order."""
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _flat(child)]
    return [module]


class FusedSalienceHeads(nn.Module):
    """Salience heads over the same trunk features, with their first convolutions as one.

    Each head's layers after its first convolution (its batch norm and ReLU, the wide layer,
    the 1x1 output layer) run on that head's channels, folded in frequency (`FrequencyFolded`)
    when its kernels are long enough for that to pay; so is the first convolution when it is
    the wide one (heads without a hidden layer, as published). One head alone gets the same.

    Args:
        heads: task name -> `SalienceHead`, all with a first convolution of the same type,
            input channels, kernel and padding (eval mode; batch norms right after a
            convolution are folded into it).
    """

    def __init__(self, heads: dict[str, SalienceHead]) -> None:
        super().__init__()
        self.names = list(heads)
        firsts: list[nn.Conv2d] = []
        rests: list[nn.Module] = []
        for head in heads.values():
            net = fold_batch_norms(pad_in_conv(copy.deepcopy(head.net)))
            layers = _flat(net)
            assert isinstance(layers[0], nn.Conv2d)  # checked by fusable
            firsts.append(layers[0])
            rests.append(self._rest(layers[1:]))
        ref = firsts[0]
        self.widths = [int(c.out_channels) for c in firsts]
        first: nn.Conv2d
        if isinstance(ref, SameConv2d):
            kf, kt = ref.kernel_size
            first = SameConv2d(ref.in_channels, sum(self.widths), (kf, kt), bias=True)
        else:
            first = nn.Conv2d(
                ref.in_channels,
                sum(self.widths),
                ref.kernel_size,  # type: ignore[arg-type]
                padding=ref.padding,  # type: ignore[arg-type]
                bias=True,
            )
        self.first: nn.Module = first.to(ref.weight.device, ref.weight.dtype)
        with torch.no_grad():
            first.weight.copy_(torch.cat([c.weight for c in firsts]))
            first.bias.copy_(  # type: ignore[union-attr]  # built with bias=True
                torch.cat(
                    [
                        c.bias if c.bias is not None else c.weight.new_zeros(w)
                        for c, w in zip(firsts, self.widths, strict=True)
                    ]
                )
            )
        if first.kernel_size[0] >= _FOLD_MIN_BINS:  # no hidden layer: the wide one is first
            self.first = FrequencyFolded([first], FREQ_FOLD)
        self.rests = nn.ModuleList(rests)

    @staticmethod
    def _rest(layers: list[nn.Module]) -> nn.Module:
        """A head's layers after its first convolution, folded in frequency where it pays."""
        long = any(isinstance(m, nn.Conv2d) and m.kernel_size[0] >= _FOLD_MIN_BINS for m in layers)
        if long and FrequencyFolded.foldable(layers):
            return FrequencyFolded(layers, FREQ_FOLD)
        return batch_norms_as_affine(nn.Sequential(*layers))

    @staticmethod
    def fusable(heads: dict[str, nn.Module]) -> bool:
        """True if `heads` are salience heads whose first convolutions have the same shape."""
        if not heads or not all(type(h) is SalienceHead for h in heads.values()):
            return False
        shapes = set()
        for head in heads.values():
            first = _flat(head.net)[0]
            if type(first) not in (nn.Conv2d, SameConv2d):
                return False
            assert isinstance(first, nn.Conv2d)
            shapes.add(
                (
                    type(first),
                    first.in_channels,
                    first.kernel_size,
                    first.padding,
                    first.stride,
                    first.dilation,
                    first.groups,
                    first.padding_mode,
                )
            )
        if len(shapes) != 1:
            return False
        _, _, _, _, stride, dilation, groups, mode = shapes.pop()
        return stride == (1, 1) and dilation == (1, 1) and groups == 1 and mode == "zeros"

    def forward(self, trunk: Tensor) -> dict[str, Tensor]:
        """(B, C, F, T) trunk features -> task -> (B, F, T) logits."""
        hidden = self.first(trunk)  # (B, sum of widths, F, T)
        out = {}
        for name, part, rest in zip(
            self.names, hidden.split(self.widths, dim=1), self.rests, strict=True
        ):
            if not isinstance(rest, FrequencyFolded):
                # a contiguous (channels-last) copy of the head's channels: convolutions on a
                # channel slice take a slow path (folding makes its own copy)
                part = part.contiguous(memory_format=torch.channels_last)
            out[name] = rest(part).squeeze(1)
        return out


# --- int8 ---------------------------------------------------------------------------------------

# torch's int8 dtype, the one that selects the int8 path (None if a future torch drops it)
_QINT8 = getattr(torch, "qint8", None)
# Engines whose int8 convolutions use the CPU's vector integer units (AVX2, AVX512-VNNI), best
# first; qnnpack (ARM-oriented) runs these shapes slower than float32 and is not used.
INT8_ENGINES = ("x86", "fbgemm", "onednn")


def _supported_engines() -> list[str]:
    return list(torch.backends.quantized.supported_engines)


def int8_engine() -> str:
    """The quantized engine the int8 path uses; `ConfigError` if this torch has none of them."""
    engines = _supported_engines()
    for engine in INT8_ENGINES:
        if engine in engines:
            return engine
    raise ConfigError(
        f"int8 inference needs one of torch's quantized engines {', '.join(INT8_ENGINES)}; "
        f"this torch {torch.__version__} has {', '.join(engines) or 'none'} (use float32 or "
        "bfloat16)"
    )


def calibration_audio(sr: int, seconds: float = 12.0, seed: int = 0) -> Tensor:
    """Synthetic music-like audio that sets the int8 path's activation ranges by default.

    Deterministic (`seed`): half-second segments of 1-4 harmonic tones (f0 log-uniform over
    55-1760 Hz, 12 harmonics with random amplitudes falling as 1/h, 1 % vibrato) over noise
    20-60 dB below them, at levels from -30 to 0 dBFS; one segment in eight is noise alone. No
    recorded audio is involved, so the calibration is independent of any evaluation data.

    Returns:
        (N,) float32 samples at `sr`.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    seg = int(0.5 * sr)
    n_seg = max(1, int(round(seconds * sr / seg)))
    t = np.arange(seg) / sr
    table_n = 4096
    grid = 2 * np.pi * np.arange(table_n + 1) / table_n
    fade = np.clip(np.minimum(t, t[::-1]) / 0.01, 0, 1)  # 10 ms fades
    parts = []
    for k in range(n_seg):
        y = np.zeros(seg)
        voices = 0 if k % 8 == 7 else int(rng.integers(1, 5))
        for _ in range(voices):
            f0 = 55.0 * 2.0 ** rng.uniform(0, 5)
            n_h = max(1, min(12, int(sr / 2 / f0)))  # harmonics below Nyquist
            amps = rng.uniform(0.2, 1.0, n_h) / np.arange(1, n_h + 1)
            table = np.sin(np.outer(np.arange(1, n_h + 1), grid)).T @ amps  # one period
            vib = 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(4, 7) * t)
            phase = np.mod(2 * np.pi * f0 * np.cumsum(vib) / sr, 2 * np.pi)
            y += np.interp(phase, grid, table)
        level = 10 ** (rng.uniform(-30, 0) / 20)
        if voices:
            y *= level / max(float(np.abs(y).max()), 1e-9)
        y += level * 10 ** (-rng.uniform(20, 60) / 20) * rng.standard_normal(seg)
        parts.append(y * fade)
    y = np.concatenate(parts)
    return torch.from_numpy(0.9 * y / max(float(np.abs(y).max()), 1e-9)).float()


def _qconfig(engine: str):  # noqa: ANN202  (torch.ao's QConfig)
    """Per-channel symmetric int8 weights (torch's default); uint8 activations over their whole
    calibrated range (min-max: no clipping of the salience peaks; torch's default histogram
    observer clipped them, calibrated 2x slower and scored no better on the fixtures), with all
    8 bits where the engine's convolutions do not saturate (`_full_range`), else 7."""
    from functools import partial

    from torch.ao import quantization as tq

    default = tq.get_default_qconfig(engine)
    act = partial(_flat_min_max_observer(), reduce_range=not _full_range(engine))
    return tq.QConfig(activation=act, weight=default.weight)


def _flat_min_max_observer() -> type:
    """torch's ``MinMaxObserver``, reading channels-last tensors as the flat arrays they are
    (torch's ``aminmax`` over a channels-last tensor took 30x as long: 0.7 of the 1.7 s that
    calibrating ``experiment=multitask_f0`` took). Same ranges."""
    global _FLAT_OBSERVER
    if _FLAT_OBSERVER is None:
        from torch.ao.quantization.observer import MinMaxObserver

        class FlatMinMaxObserver(MinMaxObserver):
            def forward(self, x_orig: Tensor) -> Tensor:
                if x_orig.numel() == 0:
                    return x_orig
                x = x_orig.detach()
                if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
                    x = x.permute(0, 2, 3, 1)  # contiguous: a flat view below, no copy
                lo, hi = torch.aminmax(x.reshape(-1).to(self.min_val.dtype))
                self.min_val.copy_(torch.min(lo, self.min_val))
                self.max_val.copy_(torch.max(hi, self.max_val))
                return x_orig

        _FLAT_OBSERVER = FlatMinMaxObserver
    return _FLAT_OBSERVER


_FLAT_OBSERVER: type | None = None


_FULL_RANGE: dict[str, bool] = {}
# torch 2.13 warns, once, that its quantized tensor types will be removed in a future release
# (pytorch/pytorch#184982); the int8 path needs them, so they are pinned by `int8_engine` working
_DEPRECATED = "torch.quantize_per_tensor, torch.quantize_per_channel"


def _full_range(engine: str) -> bool:
    """True if `engine`'s int8 convolution sums 8-bit activations times 8-bit weights without
    saturating (AVX512-VNNI and AVX-VNNI accumulate in 32 bits; plain AVX2 adds pairs of
    products in 16 bits, which is why torch's default reserves a bit of the activations). Found
    by one small convolution of the worst case (all 255 times all 127), once per engine."""
    if engine not in _FULL_RANGE:
        import torch.ao.nn.quantized as nnq

        previous = torch.backends.quantized.engine
        torch.backends.quantized.engine = engine
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", _DEPRECATED)
                conv = nnq.Conv2d(16, 1, 1)
                scales, zeros = torch.ones(1) / 127, torch.zeros(1, dtype=torch.long)
                w = torch.ones(1, 16, 1, 1)
                conv.set_weight_bias(
                    torch.quantize_per_channel(w, scales, zeros, 0, torch.qint8), torch.zeros(1)
                )
                conv.scale, conv.zero_point = 32.0, 0
                x = torch.full((1, 16, 2, 2), 255.0)
                y = conv(torch.quantize_per_tensor(x, 1.0, 0, torch.quint8)).dequantize()
            # exact: 16 * 255 * 127 / 127 = 4080; 8 pairs saturated at 32767 would give 2064
            _FULL_RANGE[engine] = abs(float(y[0, 0, 0, 0]) - 4080) <= 32
        finally:
            torch.backends.quantized.engine = previous
    return _FULL_RANGE[engine]


def _plain_convs(m: nn.Module) -> list[nn.Module]:
    """A convolution as exact-type ``nn.Conv2d`` (which torch's int8 conversion swaps), with a
    ``nn.ZeroPad2d`` before it where its padding is asymmetric."""
    if type(m) is nn.Conv2d:
        conv = copy.deepcopy(m)
        if conv.bias is None:
            conv.bias = nn.Parameter(conv.weight.new_zeros(conv.out_channels))
        return [conv]
    weight, bias = m.weight, m.bias
    if isinstance(m, SameConv2d):
        t_lo, t_hi, f_lo, f_hi = m.same_pad
    else:
        assert isinstance(m, _FoldedConv)
        t_lo, t_hi, f_lo, f_hi = m.pad
    o, c, kf, kt = weight.shape
    symmetric = t_lo == t_hi and f_lo == f_hi
    conv = nn.Conv2d(c, o, (kf, kt), padding=(f_lo, t_lo) if symmetric else 0).to(weight.device)
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias if bias is not None else weight.new_zeros(o))  # type: ignore[union-attr]
    return [conv] if symmetric else [nn.ZeroPad2d((t_lo, t_hi, f_lo, f_hi)), conv]


def relu_scales_into_convs(module: nn.Module) -> nn.Module:
    """Move the scales of every conv -> ReLU -> batch norm (the published layout) into the
    convolution, in place on `module` (pass a copy): ``relu(z) * a = relu(a * z)`` for a > 0,
    so the batch norm keeps only its shift (its scale becomes 1; channels with a <= 0 are left
    as they are). Equal outputs to float rounding. For the int8 path: the convolution's output
    channels then share one range, as 8-bit activations with one scale per tensor need (in the
    published models some channels spanned 100x the range of others).
    """
    for seq in module.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        layers = list(seq)
        for conv, relu, bn in zip(layers, layers[1:], layers[2:], strict=False):
            if not (isinstance(conv, nn.Conv2d) and type(relu) is nn.ReLU and _affine_bn(bn)):
                continue
            assert isinstance(bn, nn.BatchNorm2d)
            std = torch.sqrt(bn.running_var + bn.eps)  # type: ignore[operator]
            a = bn.weight / std
            a = torch.where(a > 0, a, torch.ones_like(a)).detach()
            moved = bn.weight / std > 0
            with torch.no_grad():
                shift = bn.bias - bn.running_mean * (bn.weight / std)  # type: ignore[operator]
                conv.weight.mul_(a[:, None, None, None])
                if conv.bias is not None:
                    conv.bias.mul_(a)
                # where moved: scale 1 (weight = std), the same shift
                bn.weight.copy_(torch.where(moved, std, bn.weight))
                bn.bias.copy_(torch.where(moved, shift + bn.running_mean, bn.bias))  # type: ignore[operator]
    return module


def _as_batch_norm(m: ChannelAffine) -> nn.BatchNorm2d:
    """An eval-mode ``BatchNorm2d`` equal to `m` (torch's int8 conversion has a kernel for it)."""
    c = m.scale.shape[0]
    bn = nn.BatchNorm2d(c, eps=0.0).eval()
    with torch.no_grad():
        bn.weight.copy_(m.scale.flatten())
        bn.bias.copy_(m.shift.flatten())
        bn.running_mean.zero_()  # type: ignore[union-attr]
        bn.running_var.fill_(1.0)  # type: ignore[union-attr]
    return bn


class Int8Chain(nn.Module):
    """A chain of eval-mode layers run with int8 convolutions (torch's eager-mode quantization).

    Layers before the first convolution stay float32; from there the input is quantized to
    unsigned 8 bits (one scale per tensor), each convolution runs with signed 8-bit weights (one
    scale per output channel, symmetric) and 32-bit accumulation, fused with the ReLU that
    follows it, its output requantized to 8 bits; batch norms (and `ChannelAffine`s) that no
    convolution absorbs run as int8 batch norms. With `float_last`, the last convolution and
    what follows it stay float32 (the logits layer: a few channels, where 8 bits over the
    logits' range would cost accuracy for little time). The output is float32.

    Built in two steps: the constructor inserts observers (the chain then runs in float32 and
    records the ranges of its activations), `convert` freezes those ranges into int8 layers.

    Args:
        layers: ``nn.Conv2d``, `SameConv2d`, `_FoldedConv`, ``nn.BatchNorm2d``, `ChannelAffine`,
            ``nn.ReLU`` or ``nn.Identity``, in order.
        float_last: keep the last convolution and the layers after it in float32.
        engine: the quantized engine (`int8_engine`).
        quant_in: quantize the input; False: it comes quantized from the chain before (its
            range and scale), which saves a dequantization and a quantization between them.
        dequant_out: return float32; False: return the int8 tensor (for a chain that reads
            it with ``quant_in=False``); only without `float_last`.
    """

    def __init__(
        self,
        layers: Sequence[nn.Module],
        float_last: bool,
        engine: str,
        quant_in: bool = True,
        dequant_out: bool = True,
    ) -> None:
        super().__init__()
        from torch.ao import quantization as tq

        layers = [m for m in layers if type(m) is not nn.Identity]
        convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d | _FoldedConv)]
        if len(convs) < 1 + float_last:
            raise ValueError("Int8Chain: no convolution to quantize")
        start = convs[0]
        stop = convs[-1] if float_last else len(layers)
        self.prefix = nn.Sequential(*layers[:start])
        body: list[nn.Module] = []
        for m in layers[start:stop]:
            if isinstance(m, nn.Conv2d | _FoldedConv):
                body += _plain_convs(m)
            elif isinstance(m, nn.BatchNorm2d):
                body.append(ChannelAffine.from_batch_norm(m))
            else:
                body.append(m)
        body = [_as_batch_norm(m) if isinstance(m, ChannelAffine) else m for m in body]
        first = int(quant_in)  # index of body[0] after the QuantStub
        fuse = [
            [str(i + first), str(i + first + 1)]
            for i in range(len(body) - 1)
            if type(body[i]) is nn.Conv2d and type(body[i + 1]) is nn.ReLU
        ]
        stubs_in = [tq.QuantStub()] if quant_in else []
        stubs_out = [tq.DeQuantStub()] if dequant_out else []
        self.body = nn.Sequential(*stubs_in, *body, *stubs_out).eval()
        if fuse:
            tq.fuse_modules(self.body, fuse, inplace=True)
        tail = layers[stop:]
        self.tail = nn.Sequential(*tail)
        self.engine = engine
        self.body.qconfig = _qconfig(engine)
        tq.prepare(self.body, inplace=True)

    def convert(self) -> None:
        """Freeze the observed activation ranges: the body becomes int8 (call once)."""
        from torch.ao import quantization as tq

        previous = torch.backends.quantized.engine
        torch.backends.quantized.engine = self.engine  # weights are packed for this engine
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", _DEPRECATED)
                tq.convert(self.body, inplace=True)
        finally:
            torch.backends.quantized.engine = previous

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, F, T) float32 -> (B, C', F, T) float32."""
        return self.tail(self.body(self.prefix(x)))


def _without_leading_relu(rest: nn.Module) -> nn.Module:
    """`rest` (a `FrequencyFolded` or a chain) without the ReLU that starts it."""

    def strip(layers: Iterable[nn.Module]) -> nn.Sequential:
        kept = [m for m in layers if type(m) is not nn.Identity]
        assert type(kept[0]) is nn.ReLU
        return nn.Sequential(*kept[1:])

    if isinstance(rest, FrequencyFolded):
        ff = copy.copy(rest)  # a new module sharing the layers
        ff._modules = dict(rest._modules)
        ff.plain, ff.folded = strip(rest.plain), strip(rest.folded)
        return ff
    return strip(_flat(rest))


def _starts_with_relu(rest: nn.Module) -> bool:
    layers = rest.plain if isinstance(rest, FrequencyFolded) else _flat(rest)
    layers = [m for m in layers if type(m) is not nn.Identity]
    return bool(layers) and type(layers[0]) is nn.ReLU


def _n_convs(layers: Iterable[nn.Module]) -> int:
    return sum(isinstance(m, nn.Conv2d | _FoldedConv) for m in layers)


def _int8_folded(ff: FrequencyFolded, n_bins: int, float_last: bool, engine: str, **kw) -> bool:
    """Quantize the branch of `ff` that runs on `n_bins` bins (in place), if it has a
    convolution to quantize (`kw`: `Int8Chain`'s); True if it did."""
    if _n_convs(ff.plain) < 1 + float_last:
        return False
    if n_bins % ff.fold:
        ff.plain = Int8Chain(list(ff.plain), float_last, engine, **kw)  # type: ignore[assignment]
    else:
        ff.folded = Int8Chain(list(ff.folded), float_last, engine, **kw)  # type: ignore[assignment]
    return True


class InferenceModel(nn.Module):
    """A `MultiTaskModel` for inference: same call, same outputs, faster (see module doc).

    Args:
        model: the eval-mode `MultiTaskModel` (its front end is shared, not copied).
        dtype: dtype of the trunk and salience heads (float32, or bfloat16: about 2x faster on
            CPUs with AVX512-BF16 or AMX, at about 1e-2 relative error of the logits), or
            ``torch.qint8``: their convolutions in int8 (`Int8Chain`; each salience head's last
            convolution stays float32), calibrated on `calibration`, each fused salience
            head's logits shifted by its `logit_offset` on that audio; the front end and the
            outputs stay float32.
        calibration: with ``torch.qint8``, (N,) or (B, N) audio at the front end's rate whose
            HCQT sets the activation ranges (default: `calibration_audio`, 12 s of synthetic
            tones and noise).

    Raises:
        ConfigError: ``torch.qint8`` where torch has no x86, fbgemm or onednn engine.
    """

    def __init__(
        self,
        model: nn.Module,
        dtype: torch.dtype = torch.float32,
        calibration: Tensor | None = None,
    ) -> None:
        super().__init__()
        int8 = dtype is not None and dtype == _QINT8
        engine = int8_engine() if int8 else ""
        if not (int8 or dtype.is_floating_point):
            raise ConfigError(f"inference dtype {dtype}: use float32, bfloat16 or torch.qint8")
        self.dtype = torch.float32 if int8 else dtype  # of the tensors between layers
        self.int8 = int8
        # head -> logit offset that removes the int8 path's mean error where it matters (set by
        # `_quantize`; empty otherwise)
        self.logit_offset: dict[str, float] = {}
        self.frontend = model.frontend
        self.uses_trunk = bool(model.uses_trunk)
        self.uses_stft = bool(model.uses_stft)
        trunk = fold_batch_norms(pad_in_conv(copy.deepcopy(model.trunk)))
        if int8:
            relu_scales_into_convs(trunk)
        self.trunk = batch_norms_as_affine(trunk).to(memory_format=torch.channels_last)
        salience = {n: h for n, h in model.heads.items() if type(h) is SalienceHead}
        # decoding thresholds of the salience heads (for the int8 path's `logit_offset`)
        thresholds = {n: float(h.threshold) for n, h in salience.items() if hasattr(h, "threshold")}
        if int8:
            salience = {n: relu_scales_into_convs(copy.deepcopy(h)) for n, h in salience.items()}
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
        if not int8 and dtype != torch.float32:
            self.trunk.to(dtype)
            if self.fused is not None:
                self.fused.to(dtype)
        if int8:
            self._quantize(engine, calibration, thresholds)

    def _quantize(
        self, engine: str, calibration: Tensor | None, thresholds: dict[str, float]
    ) -> None:
        """Swap the trunk's and the fused salience heads' layers for `Int8Chain`s, run the
        calibration audio through them to record their activation ranges, then freeze those and
        set each fused head's `logit_offset` (its floor from the head's decoding threshold in
        `thresholds`)."""
        n_bins = int(self.frontend.n_bins)
        fused = self.fused
        net = getattr(self.trunk, "net", None)  # a ConvTrunk's layers
        # Between int8 chains the tensors stay int8 where only other int8 chains read them:
        # trunk -> heads' first layer -> each head's folded wide layer (the int8 tensors are
        # split and folded as they are, a quarter of the bytes of float32).
        handoff = fused is not None and not self.others
        if isinstance(net, nn.Sequential) and any(isinstance(m, nn.Conv2d) for m in _flat(net)):
            self.trunk.net = Int8Chain(_flat(net), False, engine, dequant_out=not handoff)
        else:
            handoff = False
        if fused is not None:
            relu = all(_starts_with_relu(r) for r in fused.rests)
            rests_int8 = all(
                _n_convs(r.plain if isinstance(r, FrequencyFolded) else _flat(r)) >= 2
                for r in fused.rests
            )
            kw = {"quant_in": not handoff, "dequant_out": not (relu and rests_int8)}
            # the ReLU that starts every head's rest is applied to the first layer's output
            # (and not again): its int8 output then spends no codes on negative values
            if isinstance(fused.first, FrequencyFolded):
                layers = [*fused.first.plain, *[nn.ReLU()] * relu]
                fused.first = FrequencyFolded(layers, fused.first.fold)
                _int8_folded(fused.first, n_bins, False, engine, **kw)
            else:
                fused.first = Int8Chain([fused.first, *[nn.ReLU()] * relu], False, engine, **kw)
            kw = {"quant_in": kw["dequant_out"]}
            for i, rest in enumerate(fused.rests):
                if relu:
                    rest = _without_leading_relu(rest)
                    fused.rests[i] = rest
                if isinstance(rest, FrequencyFolded):
                    _int8_folded(rest, n_bins, True, engine, **kw)
                elif _n_convs(_flat(rest)) >= 2:
                    fused.rests[i] = Int8Chain(_flat(rest), True, engine, **kw)
        chains = [m for m in self.modules() if isinstance(m, Int8Chain)]
        audio = calibration if calibration is not None else calibration_audio(self.frontend.sr)
        audio = torch.as_tensor(audio, dtype=torch.float32)
        audio = audio[None] if audio.ndim == 1 else audio
        with torch.no_grad():
            reference, _ = self._forward(audio, None)  # float32 (the observers only record)
        for chain in chains:
            chain.convert()
        if fused is not None:
            with torch.no_grad():
                quantized, _ = self._forward(audio, None)
            self.logit_offset = {
                name: logit_offset(
                    reference[name],
                    quantized[name],
                    min(OFFSET_FLOOR, 0.5 * thresholds.get(name, 1.0)),
                )
                for name in fused.names
            }

    def _salience(self, trunk: Tensor) -> dict[str, Tensor]:
        """The fused salience heads' float32 logits (with the int8 path's `logit_offset`)."""
        assert self.fused is not None
        out = {k: v.float() for k, v in self.fused(trunk).items()}
        for name, offset in self.logit_offset.items():
            out[name] = out[name] + offset
        return out

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
                cropped = self._salience(trunk)
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
            outputs.update(self._salience(trunk))
        if trunk is not None:
            trunk = trunk.dequantize() if trunk.is_quantized else trunk.float()
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


# Salience at or above this (in the float32 model), or half the head's decoding threshold if
# that is lower, is where an int8 logit error can change a decoded f0: mir's decoders read
# peaks against the threshold (0.3 by default, tuned on validation otherwise, down to 0.1);
# far below it, errors change nothing.
OFFSET_FLOOR = 0.1


def logit_offset(reference: Tensor, quantized: Tensor, floor: float = OFFSET_FLOOR) -> float:
    """The mean of ``reference - quantized`` logits where ``sigmoid(reference) >= floor``
    (0.0 where no such value exists): added to the int8 path's logits it removes their mean
    error where the decoders look (bias correction, as Nagel et al. 2019 do layer by layer,
    here once at the output). Measured on the released ``multif0`` model, int8's logits there
    were 0.03-0.05 lower than float32's on the calibration tones and on real chorales alike,
    which lowered recall and so multi-f0 accuracy by 0.2 points on 40 pieces."""
    near = torch.sigmoid(reference) >= floor
    if not bool(near.any()):
        return 0.0
    return float((reference - quantized)[near].mean())


def inference_model(
    model: nn.Module, dtype: torch.dtype = torch.float32, calibration: Tensor | None = None
) -> nn.Module:
    """A faster module with the same outputs as eval-mode `model`; `model` if it is training.

    Args:
        model: a `MultiTaskModel` (anything with ``frontend``, ``trunk``, ``heads``,
            ``uses_trunk`` and ``uses_stft``); other modules are returned unchanged.
        dtype: float32 (same outputs to float rounding), bfloat16 or ``torch.qint8`` (see
            `InferenceModel`).
        calibration: with ``torch.qint8``, the calibration audio (see `InferenceModel`).

    The int8 copy costs a calibration run (12 s of audio through the front end and the float
    layers with observers: about 2 s for ``experiment=multitask_f0`` on a 2-core CPU), so it
    is kept with `model` (weakly) and reused while `model`'s weights (their storage and
    in-place version counters) and `calibration` stay the same.
    """
    needed = ("frontend", "trunk", "heads", "uses_trunk", "uses_stft")
    if model.training or not all(hasattr(model, a) for a in needed):
        return model
    if _QINT8 is None or dtype != _QINT8:
        return InferenceModel(model, dtype).eval()
    if calibration is not None:
        calibration = torch.as_tensor(calibration)
    key = (
        tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers())),
        None if calibration is None else (calibration.data_ptr(), calibration._version),
    )
    cached = _INT8_CACHE.get(model)
    if cached is None or cached[0] != key:
        cached = (key, InferenceModel(model, dtype, calibration).eval())
        _INT8_CACHE[model] = cached
    return cached[1]


# model -> (weights' and calibration's identity, its int8 copy)
_INT8_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
