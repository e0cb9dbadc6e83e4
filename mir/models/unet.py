"""The singing-voice U-Net of Jansson et al. (ISMIR 2017), as published, with an optional
guidance input from the shared HCQT trunk.

Published setup, reproduced by `JanssonUNet`:
    * the mixture is resampled to 8192 Hz; STFT with a 1024-sample Hann window and a hop of
      768 samples; the top (4096 Hz) bin is dropped, leaving 512 bins;
    * magnitude patches of 512 bins x 128 frames (11.9 s), normalised to [0, 1];
    * encoder: six 5x5 stride-2 convolutions (16, 32, 64, 128, 256, 512 channels), batch
      norm, leaky ReLU (slope 0.2); decoder: 5x5 stride-2 transposed convolutions with batch
      norm, ReLU, 50 % dropout in the first three, skip connections by concatenation, and a
      sigmoid mask at the last layer;
    * loss: L1 between the masked mixture magnitude and the target magnitude;
    * one network per target (``per_source=True``), or one with S outputs;
    * reconstruction with the mixture phase; full tracks in overlapping patches.

Guidance (``guided=True``, not in the paper): the shared trunk's HCQT features are projected
to a few channels by a 1x1 convolution, smoothed and sampled at the U-Net's frames, and read
on the U-Net's linear frequency axis at ``f / h`` for each harmonic number h in
`guide_harmonics` (so a bin at frequency f sees "an f0 at f / h is present"); they are
extra input channels of the first convolution.

Output on the shared frame grid: the masks (B, S, 512, T8) are held (nearest neighbour) onto
the front end's frames (hop 256 at 22050 Hz), (B, S, 512, T), so that chunked full-track
inference stitches them like any other frame output; `paper_masks` recovers the T8 columns
exactly (frame j of the 8192-Hz grid is the value at the shared frame nearest its centre).

Shapes: B batch, S sources, C channels, H harmonics, F frequency bins, T frames of the front
end, T8 frames of the 8192-Hz STFT, P patches, N samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mir.frontend import HarmonicCQT
from mir.models.features import Features
from mir.models.model import Head


class FFTResampler(nn.Module):
    """Band-limited resampling of (B, N) audio by the FFT, with a raised-cosine roll-off.

    The signal is zero padded by `pad` samples on both sides (so the FFT's circular
    wrap-around does not reach the signal), transformed, cut or zero-filled to the new
    length's spectrum, tapered by a raised cosine from `rolloff` to 1 of the lower Nyquist
    frequency (short time-domain ringing), and inverted. The output has
    ``round(N * sr_out / sr_in)`` samples; sample m is at time m / sr_out.

    Args:
        sr_in: input rate in Hz.
        sr_out: output rate in Hz.
        rolloff: start of the taper as a fraction of min(sr_in, sr_out) / 2.
        pad_seconds: zero padding on each side, in s.
    """

    def __init__(
        self, sr_in: int, sr_out: int, rolloff: float = 0.9, pad_seconds: float = 0.1
    ) -> None:
        super().__init__()
        if not (0.0 < rolloff <= 1.0):
            raise ValueError(f"FFTResampler: rolloff={rolloff} must be in (0, 1]")
        self.sr_in = int(sr_in)
        self.sr_out = int(sr_out)
        self.rolloff = float(rolloff)
        g = math.gcd(self.sr_in, self.sr_out)
        # padding in whole periods of the rate ratio, so the padded lengths map exactly
        period = self.sr_in // g
        self.pad_in = period * max(1, math.ceil(pad_seconds * self.sr_in / period))
        self.pad_out = self.pad_in * self.sr_out // self.sr_in

    def out_length(self, n: int) -> int:
        return (n * self.sr_out + self.sr_in // 2) // self.sr_in  # rounded; traceable

    def forward(self, x: Tensor) -> Tensor:
        """(B, N) -> (B, round(N * sr_out / sr_in))."""
        if self.sr_in == self.sr_out:
            return x
        n = x.shape[-1]
        m = self.out_length(n)
        n_pad = n + 2 * self.pad_in
        m_pad = m + 2 * self.pad_out
        spec = torch.fft.rfft(F.pad(x, (self.pad_in, self.pad_in)), n=n_pad)  # (B, n_pad//2+1)
        k = min(spec.shape[-1], m_pad // 2 + 1)
        out = torch.zeros(*x.shape[:-1], m_pad // 2 + 1, dtype=spec.dtype, device=x.device)
        out[..., :k] = spec[..., :k]
        # raised-cosine taper over [rolloff, 1] of the lower Nyquist
        nyq_bins = min(n_pad, m_pad) / 2.0
        f = torch.arange(m_pad // 2 + 1, device=x.device, dtype=x.dtype) / nyq_bins
        t = ((f - self.rolloff) / max(1.0 - self.rolloff, 1e-9)).clamp(0.0, 1.0)
        out = out * (0.5 + 0.5 * torch.cos(math.pi * t))
        y = torch.fft.irfft(out, n=m_pad) * (m_pad / n_pad)
        return y[..., self.pad_out : self.pad_out + m]


class UNet(nn.Module):
    """The Jansson et al. (2017) U-Net over (B, C, F, T) patches -> (B, K, F, T) in (0, 1).

    Args:
        in_channels: input channels C (1: the magnitude only).
        out_channels: masks K.
        channels: encoder channels per level (published: 16, 32, 64, 128, 256, 512).
        dropout_levels: the first this many decoder levels use 50 % dropout (published: 3).
        leaky_slope: negative slope of the encoder's leaky ReLU (published: 0.2).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128, 256, 512),
        dropout_levels: int = 3,
        leaky_slope: float = 0.2,
    ) -> None:
        super().__init__()
        chans = [int(c) for c in channels]
        self.depth = len(chans)
        self.enc = nn.ModuleList()
        c_in = in_channels
        for c in chans:
            self.enc.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c, 5, stride=2, padding=2),
                    nn.BatchNorm2d(c),
                    nn.LeakyReLU(leaky_slope, inplace=True),
                )
            )
            c_in = c
        self.dec = nn.ModuleList()
        for i, level in enumerate(reversed(range(1, self.depth))):
            c_from = chans[level] if i == 0 else 2 * chans[level]  # after the skip concat
            layers: list[nn.Module] = [
                nn.ConvTranspose2d(c_from, chans[level - 1], 5, 2, padding=2, output_padding=1),
                nn.BatchNorm2d(chans[level - 1]),
                nn.ReLU(inplace=True),
            ]
            if i < dropout_levels:
                layers.append(nn.Dropout(0.5))
            self.dec.append(nn.Sequential(*layers))
        c_last = chans[0] if self.depth == 1 else 2 * chans[0]
        self.out = nn.ConvTranspose2d(c_last, out_channels, 5, 2, padding=2, output_padding=1)

    @property
    def multiple(self) -> int:
        """Patch sizes (F and T) must be multiples of this."""
        return 2**self.depth

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for enc in self.enc:
            x = enc(x)
            skips.append(x)
        for i, dec in enumerate(self.dec):
            if i > 0:
                x = torch.cat([x, skips[self.depth - 1 - i]], dim=1)
            x = dec(x)
        if self.depth > 1:
            x = torch.cat([x, skips[0]], dim=1)
        return torch.sigmoid(self.out(x))


class JanssonUNet(Head):
    """Separation head: the published U-Net on its own 8192-Hz STFT, masks held on the
    front end's frame grid (see the module docstring).

    Args:
        n_sources: masks S (sources, in the task's order).
        frontend: the shared front end (its rate and hop define the output frames).
        trunk_channels: channels C of the shared trunk (read only when `guided`).
        channels: encoder channels per level.
        dropout_levels: decoder levels with 50 % dropout.
        per_source: one U-Net per source (published) or one U-Net with S outputs.
        sr: rate of the U-Net's STFT, Hz (published 8192).
        n_fft: its window, samples (published 1024; the top bin is dropped: n_fft/2 bins).
        hop: its hop, samples (published 768).
        patch_frames: frames per patch (published 128).
        patch_hop: hop between overlapping patches at inference, frames.
        reconstruct: ``fullband`` (masks interpolated onto the front end's STFT, the top row
            extended above sr/2, mixture phase) or ``paper`` (masks on the 8192-Hz STFT,
            mixture phase, resampled back: band-limited to sr/2).
        guided: also read the trunk's HCQT features (the novelty; needs the trunk).
        guide_channels: 1x1 projection of the trunk features before mapping.
        guide_harmonics: harmonic numbers h: bin f reads the trunk at f0 = f / h.
    """

    uses_stft = False
    window: Tensor
    patch_weight: Tensor
    guide_map: Tensor
    nets: nn.ModuleList

    # Its patch count depends on the input length in Python, which a trace would freeze.
    traceable = False

    def __init__(
        self,
        n_sources: int,
        frontend: HarmonicCQT,
        trunk_channels: int = 0,
        channels: Sequence[int] = (16, 32, 64, 128, 256, 512),
        dropout_levels: int = 3,
        per_source: bool = True,
        sr: int = 8192,
        n_fft: int = 1024,
        hop: int = 768,
        patch_frames: int = 128,
        patch_hop: int = 64,
        reconstruct: Literal["fullband", "paper"] = "fullband",
        guided: bool = False,
        guide_channels: int = 4,
        guide_harmonics: Sequence[float] = (1, 2, 3, 4, 5),
    ) -> None:
        super().__init__()
        if reconstruct not in ("fullband", "paper"):
            raise ValueError(f"reconstruct={reconstruct!r}: expected 'fullband' or 'paper'")
        self.n_sources = int(n_sources)
        self.fe_sr, self.fe_hop, self.fe_n_fft = frontend.sr, frontend.hop, frontend.n_fft
        self.sr, self.n_fft, self.hop = int(sr), int(n_fft), int(hop)
        self.n_bins = self.n_fft // 2
        self.patch_frames, self.patch_hop = int(patch_frames), int(patch_hop)
        self.reconstruct = reconstruct
        self.guided = bool(guided)
        self.uses_trunk = self.guided
        self.down = FFTResampler(frontend.sr, self.sr)
        self.up = FFTResampler(self.sr, frontend.sr)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        in_ch = 1
        if self.guided:
            if trunk_channels < 1:
                raise ValueError("JanssonUNet(guided=True) needs the trunk's channel count")
            self.guide_proj = nn.Conv2d(trunk_channels, int(guide_channels), 1)
            self.register_buffer(
                "guide_map",
                _cqt_to_linear(frontend, self.sr, self.n_fft, guide_harmonics),
                persistent=False,
            )  # (H * n_bins, F)
            in_ch += int(guide_channels) * len(guide_harmonics)
        n_nets = self.n_sources if per_source else 1
        out_ch = 1 if per_source else self.n_sources
        self.nets = nn.ModuleList(
            UNet(in_ch, out_ch, channels, dropout_levels) for _ in range(n_nets)
        )
        m = 2 ** len(channels)  # each level halves F and T
        if self.n_bins % m or self.patch_frames % m:
            raise ValueError(
                f"JanssonUNet: {self.n_bins} bins x {self.patch_frames} frames must be "
                f"multiples of 2**depth = {m}"
            )
        if not (0 < self.patch_hop <= self.patch_frames):
            raise ValueError(f"patch_hop={patch_hop} must be in [1, patch_frames]")
        # cross-fade of overlapping patches: a Hann window, floored so edges still count
        w = torch.hann_window(self.patch_frames, periodic=False).clamp_min(1e-3)
        self.register_buffer("patch_weight", w, persistent=False)

    # -- grids ---------------------------------------------------------------------------
    @property
    def min_seconds(self) -> float:
        """Shortest input, in s, that fills one patch (the training crop should be longer)."""
        return (self.patch_frames - 1) * self.hop / self.sr

    def n_frames8(self, n_samples: int) -> int:
        """Frames T8 of the 8192-Hz STFT for `n_samples` at the front end's rate."""
        return 1 + self.down.out_length(n_samples) // self.hop

    def hold_index(self, n_frames: int, n_frames8: int) -> Tensor:
        """(T,) index of the 8192-Hz frame nearest each front-end frame's centre."""
        t = torch.arange(n_frames, dtype=torch.float64) * (self.fe_hop / self.fe_sr)
        return torch.round(t * self.sr / self.hop).long().clamp(0, n_frames8 - 1)

    def pick_index(self, n_frames: int, n_frames8: int) -> Tensor:
        """(T8,) index of the front-end frame nearest each 8192-Hz frame's centre."""
        t = torch.arange(n_frames8, dtype=torch.float64) * (self.hop / self.sr)
        return torch.round(t * self.fe_sr / self.fe_hop).long().clamp(0, n_frames - 1)

    # -- analysis ------------------------------------------------------------------------
    def stft8(self, audio: Tensor) -> Tensor:
        """(B, N) audio at the front end's rate -> (B, n_fft/2 + 1, T8) complex at `sr`."""
        x = self.down(audio)
        return torch.stft(
            x,
            self.n_fft,
            self.hop,
            window=self.window.to(x.dtype),
            center=True,
            pad_mode="constant",
            return_complex=True,
        )

    def magnitude(self, audio: Tensor) -> Tensor:
        """(B, N) audio -> (B, n_bins, T8) magnitudes (top bin dropped)."""
        return self.stft8(audio)[:, : self.n_bins].abs()

    # -- forward -------------------------------------------------------------------------
    def _patches(self, x: Tensor) -> tuple[Tensor, int]:
        """(B, C, F, T8) -> ((B * P, C, F, patch), P): patches at `patch_hop` (or one)."""
        t8 = x.shape[-1]
        n_p = 1 + max(0, math.ceil((t8 - self.patch_frames) / self.patch_hop))
        total = (n_p - 1) * self.patch_hop + self.patch_frames
        x = F.pad(x, (0, total - t8))
        p = x.unfold(-1, self.patch_frames, self.patch_hop)  # (B, C, F, P, patch)
        p = p.permute(0, 3, 1, 2, 4).flatten(0, 1)  # (B * P, C, F, patch)
        return p, n_p

    def _overlap_add(self, y: Tensor, b: int, n_p: int, t8: int) -> Tensor:
        """(B * P, S, F, patch) -> (B, S, F, T8), cross-faded with `patch_weight`."""
        if n_p == 1:
            return y[..., :t8]
        _, s, f, pf = y.shape
        w = self.patch_weight.to(y.dtype)
        y = (y * w).reshape(b, n_p, s * f, pf).permute(0, 2, 3, 1)  # (B, S*F, patch, P)
        total = (n_p - 1) * self.patch_hop + pf
        folded = F.fold(
            y.reshape(b, s * f * pf, n_p), (1, total), (1, pf), stride=(1, self.patch_hop)
        )  # (B, S*F, 1, total)
        norm = F.fold(
            w[None, :, None].expand(1, pf, n_p).contiguous(),
            (1, total),
            (1, pf),
            stride=(1, self.patch_hop),
        )  # (1, 1, 1, total)
        out = (folded / norm)[:, :, 0, :t8]
        return out.reshape(b, s, f, t8)

    def guide(self, trunk: Tensor, n_frames8: int) -> Tensor:
        """(B, C, F, T) trunk features -> (B, C' * H, n_bins, T8) on the U-Net's grid."""
        g = self.guide_proj(trunk)  # (B, C', F, T)
        b, c, f, t = g.shape
        # smooth over one 8192-Hz hop, then sample at the 8192-Hz frame centres
        k = max(1, round(self.hop / self.sr * self.fe_sr / self.fe_hop)) | 1
        g = F.avg_pool1d(
            g.reshape(b, c * f, t), k, 1, padding=k // 2, count_include_pad=False
        )  # (B, C'*F, T)
        g = g[..., self.pick_index(t, n_frames8).to(g.device)].reshape(b, c, f, n_frames8)
        g = torch.einsum("kf,bcft->bckt", self.guide_map.to(g.dtype), g)  # (B, C', H*F8, T8)
        return g.reshape(b, -1, self.n_bins, n_frames8)  # (B, C'*H, F8, T8)

    def paper_forward(self, feats: Features) -> Tensor:
        """-> (B, S, n_bins, T8) masks on the 8192-Hz STFT."""
        mag = self.magnitude(feats.audio)  # (B, F8, T8)
        b, _, t8 = mag.shape
        x, n_p = self._patches(mag[:, None])  # (B*P, 1, F8, patch)
        # each patch normalised to [0, 1] by its maximum
        x = x / x.flatten(1).amax(1).clamp_min(1e-8)[:, None, None, None]
        if self.guided:
            assert feats.trunk is not None, "guided JanssonUNet needs the trunk features"
            g, _ = self._patches(self.guide(feats.trunk, t8))
            x = torch.cat([x, g], dim=1)  # (B*P, 1 + C'H, F8, patch)
        y = torch.cat([net(x) for net in self.nets], dim=1)  # (B*P, S, F8, patch)
        return self._overlap_add(y, b, n_p, t8)

    def forward(self, feats: Features) -> Tensor:
        """-> (B, S, n_bins, T) masks in (0, 1), held on the front end's frames."""
        masks = self.paper_forward(feats)
        n_frames = 1 + feats.audio.shape[-1] // self.fe_hop
        return masks[..., self.hold_index(n_frames, masks.shape[-1]).to(masks.device)]

    # -- from held masks back to the 8192-Hz grid, and reconstruction --------------------
    def paper_masks(self, held: Tensor, n_samples: int) -> Tensor:
        """(..., n_bins, T) held masks -> (..., n_bins, T8) for `n_samples` of audio."""
        t8 = self.n_frames8(n_samples)
        return held[..., self.pick_index(held.shape[-1], t8).to(held.device)]

    def stft_masks(
        self, held: Tensor, n_samples: int, start: int = 0, stop: int | None = None
    ) -> Tensor:
        """(S, n_bins, T) held masks -> (S, fe_n_fft/2 + 1, stop - start) masks on the front
        end's STFT, for its frames [start, stop) (default: all).

        Linear interpolation in time (between 8192-Hz frame centres) and in frequency; bins
        above the top row take its value.
        """
        m8 = self.paper_masks(held, n_samples)  # (S, F8, T8)
        stop = held.shape[-1] if stop is None else stop
        pos_t = torch.arange(start, stop, dtype=torch.float64) * (self.fe_hop / self.fe_sr)
        pos_t = (pos_t * self.sr / self.hop).clamp(0, m8.shape[-1] - 1)
        n_fe = self.fe_n_fft // 2 + 1
        pos_f = torch.arange(n_fe, dtype=torch.float64) * (self.fe_sr / self.fe_n_fft)
        pos_f = (pos_f * self.n_fft / self.sr).clamp(0, self.n_bins - 1)
        m = _lerp(m8, pos_t.to(m8.device), -1)
        return _lerp(m, pos_f.to(m8.device), -2)

    @torch.no_grad()
    def separate(
        self, held: Tensor, audio: Tensor, frontend: HarmonicCQT, block_frames: int = 4096
    ) -> Tensor:
        """(S, n_bins, T) held masks and (N,) mixture -> (S, N) sources, mixture phase.

        ``fullband`` works through blocks of `block_frames` frames (bounded memory on long
        tracks; the same result as one pass, see `masked_istft_blocks`).
        """
        n = audio.shape[-1]
        if self.reconstruct == "paper":
            spec = self.stft8(audio[None])[0]  # (F8 + 1, T8)
            m8 = self.paper_masks(held, n)  # (S, F8, T8)
            m8 = torch.cat([m8, m8[:, -1:]], dim=1)  # the dropped top bin takes its neighbour
            n8 = self.down.out_length(n)
            est = torch.istft(
                m8 * spec, self.n_fft, self.hop, window=self.window, center=True, length=n8
            )  # (S, N8)
            return _fit(self.up(est), n)
        return masked_istft_blocks(
            frontend,
            audio,
            lambda a, b: self.stft_masks(held, n, a, b),
            held.shape[0],
            block_frames,
        )


@torch.no_grad()
def masked_istft_blocks(
    frontend: HarmonicCQT,
    audio: Tensor,
    masks: Callable[[int, int], Tensor],
    n_sources: int,
    block_frames: int = 4096,
) -> Tensor:
    """Mask the mixture's STFT and invert it, a block of frames at a time.

    Each block's STFT and inverse are computed on the block's audio plus a margin of
    ``n_fft // hop + 1`` frames on each side, so every kept sample sees exactly the frames
    it would in one pass over the track.

    Args:
        frontend: provides `stft` / `istft` (Hann window, centred).
        audio: (N,) mixture.
        masks: (start, stop) -> (S, F', stop - start) masks for frames [start, stop).
        n_sources: S.
        block_frames: frames per block.

    Returns:
        (S, N) estimates.
    """
    hop = frontend.hop
    n = audio.shape[-1]
    n_frames = frontend.n_frames(n)
    margin = frontend.n_fft // hop + 1
    out = torch.zeros(n_sources, n, dtype=audio.dtype, device=audio.device)
    for t0 in range(0, n_frames, block_frames):
        t1 = min(t0 + block_frames, n_frames)
        f0, f1 = max(0, t0 - margin), min(n_frames, t1 + margin)
        a = f0 * hop  # the block's first frame is centred on its first sample
        seg = audio[a : min(n, (f1 - 1) * hop + frontend.n_fft // 2 + 1)]
        spec = frontend.stft(seg[None])[..., : f1 - f0]  # (1, F', f1 - f0)
        m = torch.zeros(n_sources, spec.shape[1], f1 - f0, dtype=spec.real.dtype)
        m = m.to(spec.device)
        m[..., : f1 - f0] = masks(f0, f1)
        length = min(n, (f1 - 1) * hop + frontend.n_fft // 2) - a
        est = frontend.istft(m * spec, length=length)  # (S, samples)
        lo, hi = t0 * hop, min(n, t1 * hop)
        out[:, lo:hi] = est[:, lo - a : hi - a]
    return out


def _lerp(x: Tensor, pos: Tensor, dim: int) -> Tensor:
    """Linear interpolation of `x` along `dim` at fractional indices `pos`."""
    lo = pos.floor().long().clamp(0, x.shape[dim] - 1)
    hi = (lo + 1).clamp(max=x.shape[dim] - 1)
    w = (pos - lo).to(x.dtype)
    shape = [1] * x.dim()
    shape[dim] = -1
    w = w.reshape(shape)
    return x.index_select(dim, lo) * (1 - w) + x.index_select(dim, hi) * w


def _fit(x: Tensor, n: int) -> Tensor:
    if x.shape[-1] >= n:
        return x[..., :n]
    return F.pad(x, (0, n - x.shape[-1]))


def _cqt_to_linear(
    frontend: HarmonicCQT, sr: int, n_fft: int, harmonics: Sequence[float]
) -> Tensor:
    """(H * n_fft/2, F) weights reading the f0 axis at f / h for each linear bin f.

    Linear interpolation between the two nearest CQT bins; zero outside the CQT's range.
    """
    n_bins = n_fft // 2
    f = np.arange(n_bins) * sr / n_fft  # Hz
    n_cqt = frontend.n_bins
    out = np.zeros((len(harmonics), n_bins, n_cqt), dtype=np.float32)
    for i, h in enumerate(harmonics):
        with np.errstate(divide="ignore"):
            pos = frontend.bins_per_octave * np.log2(f / float(h) / frontend.fmin)
        ok = np.isfinite(pos) & (pos >= 0) & (pos <= n_cqt - 1)
        lo = np.floor(pos[ok]).astype(int)
        hi = np.minimum(lo + 1, n_cqt - 1)
        w = pos[ok] - lo
        rows = np.nonzero(ok)[0]
        out[i, rows, lo] += 1 - w
        out[i, rows, hi] += w
    return torch.from_numpy(out.reshape(len(harmonics) * n_bins, n_cqt))
