"""The shared front end: a Harmonic CQT (HCQT) and the STFT on the same hop.

Conventions:
    * Harmonic channel ``h`` is a constant-Q transform with lowest frequency ``fmin * h`` on the
      same bins-per-octave grid, so channel ``h`` at bin ``k`` measures energy at
      ``h * freqs[k]``: a tone with partials at ``n * f0`` peaks at the bin where
      ``freqs[k] == f0`` in every integer-harmonic channel (Bittner et al., "Deep Salience
      Representations for F0 Estimation in Polyphonic Music", ISMIR 2017).
    * Each channel matches ``librosa.cqt(y, sr=sr, hop_length=hop, fmin=fmin * h, n_bins=n_bins,
      bins_per_octave=bins_per_octave)`` in magnitude, with librosa's defaults (Hann window,
      ``filter_scale=1``, L1-normalised kernels, ``scale=True``, zero padding), so values compare
      directly. Our ``fft`` backend computes that definition up to a truncation of each kernel's
      spectrum (per bin, relative error about 0.3 % rms, under 1 % of the bin's peak); librosa
      itself is 0.5-1.4 % from it (it resamples its lower octaves).
    * Frames are centred (librosa ``center=True``): frame ``t`` is centred at ``t * hop / sr``
      seconds and a clip of ``N`` samples has ``1 + N // hop`` frames. Audio shorter than one hop
      gives one frame; empty audio raises ``ValueError``. The signal is zero outside the clip.
    * Log scaling follows deep salience: ``1 + amplitude_to_db(mag, ref=max) / top_db`` clipped to
      [0, 1], with the max taken per example over all harmonics, bins and frames; a silent example
      gives zeros.

The default ``fft`` backend is a rasterised CQT: one real FFT of the zero-padded clip; for every
CQT bin, the few spectrum samples where its kernel lives are multiplied by the kernel's
closed-form spectrum (the DTFT of a Hann-windowed complex exponential); sampling every ``hop``
samples in time is a fold of that band modulo the number of frames ``M``; one batched inverse FFT
of length ``M`` gives all frames. Kernel spectra depend on the block length, so they are built on
first use for each length (on the module's device, in its dtype) and cached; long audio is cut
into overlapping blocks of one fixed length, computed as a batch, so a few cache entries serve any
input. Harmonics that differ by whole octaves (0.5, 1, 2, 4) share one log-frequency grid, so
only the union of distinct bins is computed (1260 instead of 2160 at the defaults) and channels
are gathered from it.

Speed under load: the per-bin bands are computed in a handful of large ops (bins are grouped by
how many times their band folds, R; each class is one gather, one multiply and one reduction), not
a few ops per group of bins. Every parallel op waits for its slowest thread, so on an
oversubscribed machine a multi-threaded front end stalls on descheduled threads; with
``threads="auto"`` (the default) the front end runs with ``min(torch.get_num_threads(), free
cores)`` intra-op threads, where the free cores are the usable cores (``os.sched_getaffinity``)
minus the cores other processes keep busy: the fewest runnable tasks of other processes over a few
readings some milliseconds apart (``/proc/loadavg`` less this process's own runnable threads; the
1-minute load average where that file is absent). A single reading is not enough: right after a
multi-threaded op, torch's OpenMP workers spin for a few milliseconds and may stop between the
system count and the count of our own threads, and short-lived tasks come and go; either made a
quiet machine look half busy. The count is chosen on the first call and re-read at most every
`THREAD_POLICY_SECONDS`; see `choose_threads` and `busy_from_samples`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from mir.errors import ConfigError
from mir.grid import Grid

__all__ = [
    "BlockLayout",
    "FrontEndConfigError",
    "HarmonicCQT",
    "RunQueueSample",
    "busy_from_samples",
    "choose_threads",
]

# scipy.signal.windows bandwidth of the Hann window, as librosa.filters.window_bandwidth("hann").
_HANN_BANDWIDTH = 1.50018310546875
# Half width of the kept kernel band, in units of the kernel's own DFT resolution (sr / L Hz).
# The Hann main lobe is +-2; its sidelobes fall as u**-3, so +-4 keeps all but ~1e-5 of the
# kernel's energy (about 0.3 % rms error per bin; groups round bands up, so most bins keep more).
# Measured in the tests against the direct definition.
_BAND_HALF_WIDTH = 4.0
# Neighbouring bins of one geometric run that share one strided gather and one band width; small
# enough that a group's working set stays in cache and its bands stay nearly evenly spaced.
_GROUP_SIZE = 20
# Longest block, in frames, computed with one FFT; longer audio is cut into overlapping blocks
# (exact: each block carries the longest kernel's half length of real context on both sides).
_MAX_BLOCK_FRAMES = 4096
# Seconds between two readings of the machine's load by the ``threads="auto"`` policy.
THREAD_POLICY_SECONDS = 10.0
# Each reading of the load takes this many samples of the run queue, this many seconds apart
# (a CPU-bound process is runnable in all of them; a transient task or a spinning worker is not).
_LOAD_SAMPLES = 4
_LOAD_SAMPLE_GAP = 0.002
# Kernel spectra are cached per block length; at most this many lengths are kept.
_KERNEL_CACHE_SIZE = 4
# Floor for magnitudes before taking dB (librosa uses 1e-5; with ref=max and clipping at -top_db
# this only matters for near-silent audio, which we floor lower and map to zeros when silent).
_AMIN = 1e-10


class _BlockKernels(NamedTuple):
    """Kernel spectra for one block length.

    groups: per group of K_g bins, (start, step, W, kernel): bin j of the group multiplies
        spectrum samples ``[start + j * step, start + j * step + W)`` of the extended spectrum by
        ``kernel[j]``, (K_g, W) complex, or (K_g, R, M) when the band folds R times.
    lo, hi: spectrum samples below 0 Hz / above Nyquist the extended spectrum adds.
    """

    groups: list[tuple[int, int, int, Tensor]]
    lo: int
    hi: int


class _BlockPlan(NamedTuple):
    """The bands of `_BlockKernels` regrouped for a few large ops, for one block length M.

    Every computed bin reads R rows of M spectrum samples (R = 1 for a band no wider than M, whose
    kernel row is zero-padded to M), multiplies them by its kernel rows and sums them: the fold.
    Bins with the same R form one class, computed by one gather, one multiply and one reduction.

    classes: per class, (R, K_c, starts, kernel): row r of bin c reads extended-spectrum samples
        ``[starts[c * R + r], ... + M)``; kernel (K_c * R, 1, M) complex.
    lo, hi: as `_BlockKernels`; ext_len: length the extended spectrum is zero-padded to.
    rows: (K,) long, the class-order row holding each bin of the group order.
    """

    classes: list[tuple[int, int, Tensor, Tensor]]
    lo: int
    hi: int
    ext_len: int
    rows: Tensor


class BlockLayout(NamedTuple):
    """Static tables of the ``fft`` backend, for code that recomputes it (a TorchScript export).

    Computed bins are in *group order*: the row order of `HarmonicCQT.power` and the input order of
    `HarmonicCQT.from_power`. For a block of M frames, group g (``group_sizes[g]`` consecutive
    bins) shares one band layout, derived from ``freqs``, ``taps`` and ``band_half_width`` as in
    `HarmonicCQT` (``_block_kernels``); kernels are `_hann_kernel_spectrum` times ``gain / hop``.

    Attributes:
        hop: hop in samples; sr: sample rate in Hz.
        half_kernel: half the longest kernel, in samples (context needed at each block edge).
        margin: the same in frames, rounded up (overlap of consecutive blocks of long audio).
        max_block_frames: longest block computed as one FFT; longer audio is cut into blocks.
        band_half_width: kept half band of each kernel, in units of its DFT resolution.
        group_sizes: bins per group, in group order (sums to K).
        freqs: (K,) centre frequency of each computed bin, Hz (float64).
        taps: (K,) kernel length in samples (float64).
        gain: (K,) librosa's scaling of each kernel (float64).
        dtype: real dtype the front end computes in (float32 or float64).
    """

    hop: int
    sr: int
    half_kernel: int
    margin: int
    max_block_frames: int
    band_half_width: float
    group_sizes: tuple[int, ...]
    freqs: np.ndarray
    taps: np.ndarray
    gain: np.ndarray
    dtype: torch.dtype


class FrontEndConfigError(ConfigError, ValueError):
    """An invalid front-end setting (a bin above Nyquist, a non-positive hop, no harmonics)."""


def _next_smooth(n: int) -> int:
    """Smallest even integer >= n whose only prime factors are 2, 3 and 5 (fast FFT sizes)."""
    n = max(int(n), 2)
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1 and n % 2 == 0:
            return n
        n += 1


def _hann_kernel_spectrum(theta: Tensor, taps: Tensor) -> Tensor:
    """Spectrum of librosa's CQT kernel at angular frequency offsets `theta` (float64).

    The kernel is a periodic Hann window of `taps` samples times a complex exponential, centred
    as librosa's ``pad_center`` does (sample ``ceil(taps / 2)`` at time 0). Its DTFT is a sum of
    three Dirichlet kernels, ``sin(L x / 2) / sin(x / 2)`` at x = theta and theta -+ 2 pi / L,
    sharing one numerator and one phase.

    Args:
        theta: (K, W) offsets from each bin's centre frequency, in radians per sample.
        taps: (K, 1) window lengths L, in samples.

    Returns:
        (K, W) complex128 spectrum (unnormalised: the window sums to L / 2).
    """
    phi = 2.0 * math.pi / taps
    s0, sm, sp = (
        torch.sin(0.5 * theta),
        torch.sin(0.5 * (theta - phi)),
        torch.sin(0.5 * (theta + phi)),
    )
    # The singularities are removable; a 1e-11 rad nudge moves off them at no visible cost.
    near = (s0.abs() < 1e-10) | (sm.abs() < 1e-10) | (sp.abs() < 1e-10)
    if bool(near.any()):
        theta = torch.where(near, theta + 1e-11, theta)
        s0, sm, sp = (
            torch.sin(0.5 * theta),
            torch.sin(0.5 * (theta - phi)),
            torch.sin(0.5 * (theta + phi)),
        )
    half = torch.complex(torch.cos(0.5 * phi), torch.sin(0.5 * phi))  # e^{i phi / 2}, (K, 1)
    bracket = 0.5 / s0 - 0.25 * half.conj() / sm - 0.25 * half / sp
    shift = theta * (torch.ceil(taps / 2) - 0.5 * (taps - 1.0))
    phase = torch.complex(torch.cos(shift), torch.sin(shift))
    return phase * torch.sin(0.5 * taps * theta) * bracket


class HarmonicCQT(nn.Module):
    """Harmonic constant-Q transform, log-scaled as in deep salience, plus a matching STFT.

    Args:
        sr: sample rate of the input audio, in Hz.
        hop: hop between frames, in samples (frames per second = sr / hop).
        fmin: centre frequency of the lowest bin of the f0 grid (harmonic 1), in Hz.
        bins_per_octave: bins per octave of the grid.
        n_octaves: octaves covered; ``n_bins = bins_per_octave * n_octaves``.
        harmonics: multiples of the f0 grid, one output channel each (fractions allowed).
        n_fft: STFT frame length in samples (Hann window, centred, same hop).
        log_scale: if True, `forward` returns log-scaled magnitudes in [0, 1].
        top_db: dynamic range of the log scaling, in dB.
        backend: ``"fft"`` (fast exact rasterised CQT, default) or ``"nnaudio"`` (nnAudio's
            ``CQT2010v2``, per harmonic; a slower reference that needs a power-of-two hop).
        threads: intra-op threads while the front end runs: ``"auto"`` (default) for
            `choose_threads` from the free cores (never more than ``torch.get_num_threads()``),
            or a positive int. The count is process-wide in torch, so it is set for the duration
            of each call and restored after it.

    Raises:
        ValueError: an invalid setting (as `FrontEndConfigError`, also a `mir.errors.MirError`).
    """

    def __init__(
        self,
        sr: int = 22050,
        hop: int = 256,
        fmin: float = 32.70,
        bins_per_octave: int = 60,
        n_octaves: int = 6,
        harmonics: Sequence[float] = (0.5, 1, 2, 3, 4, 5),
        n_fft: int = 1024,
        log_scale: bool = True,
        top_db: float = 80.0,
        backend: str = "fft",
        threads: int | str = "auto",
    ) -> None:
        super().__init__()
        harmonics = tuple(float(h) for h in harmonics)
        self._validate(sr, hop, fmin, bins_per_octave, n_octaves, harmonics, n_fft, top_db, backend)
        self.sr = int(sr)
        self.hop = int(hop)
        self.fmin = float(fmin)
        self.bins_per_octave = int(bins_per_octave)
        self.n_octaves = int(n_octaves)
        self.n_bins = self.bins_per_octave * self.n_octaves
        self.harmonics = harmonics
        self.n_harmonics = len(harmonics)
        self.n_fft = int(n_fft)
        self.log_scale = bool(log_scale)
        self.top_db = float(top_db)
        self.backend = backend
        if threads != "auto" and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise FrontEndConfigError(
                f"HarmonicCQT: threads={threads!r} must be 'auto' or a positive integer"
            )
        self.threads = threads
        self._policy: tuple[float, int, int] | None = None  # (time read, requested, chosen)
        self._policy_active = False

        # One STFT window, moved and cast with the module.
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        if backend == "fft":
            self._init_fft()
        else:
            self._init_nnaudio()

    # ------------------------------------------------------------------ configuration
    @staticmethod
    def _validate(
        sr: int,
        hop: int,
        fmin: float,
        bpo: int,
        n_octaves: int,
        harmonics: tuple[float, ...],
        n_fft: int,
        top_db: float,
        backend: str,
    ) -> None:
        def fail(msg: str) -> None:
            raise FrontEndConfigError(f"HarmonicCQT: {msg}")

        if sr <= 0:
            fail(f"sr={sr} must be a positive sample rate in Hz")
        if int(hop) != hop or hop <= 0:
            fail(f"hop={hop} must be a positive whole number of samples")
        if fmin <= 0:
            fail(f"fmin={fmin} must be a positive frequency in Hz")
        if int(bpo) != bpo or bpo < 1:
            fail(f"bins_per_octave={bpo} must be a positive integer")
        if int(n_octaves) != n_octaves or n_octaves < 1:
            fail(f"n_octaves={n_octaves} must be a positive integer")
        if bpo * n_octaves < 2:
            fail("the grid needs at least 2 bins (bins_per_octave * n_octaves >= 2)")
        if not harmonics:
            fail("harmonics is empty; give at least one multiple of the f0 grid, e.g. (1,)")
        if any(h <= 0 for h in harmonics):
            fail(f"harmonics={harmonics} must all be positive")
        if len(set(harmonics)) != len(harmonics):
            fail(f"harmonics={harmonics} has duplicates")
        if n_fft < 2:
            fail(f"n_fft={n_fft} must be at least 2 samples")
        if top_db <= 0:
            fail(f"top_db={top_db} must be positive (dB)")
        if backend not in ("fft", "nnaudio"):
            fail(f"backend={backend!r} must be 'fft' or 'nnaudio'")
        if backend == "nnaudio" and hop & (hop - 1):
            fail(f"backend='nnaudio' needs a power-of-two hop (nnAudio CQT2010v2), got {hop}")
        # librosa's check: the top kernel's passband must stay below Nyquist.
        q = 1.0 / _relative_bandwidth(bpo)
        f_top = fmin * max(harmonics) * 2.0 ** ((bpo * n_octaves - 1) / bpo)
        cutoff = f_top * (1.0 + 0.5 * _HANN_BANDWIDTH / q)
        if cutoff > sr / 2:
            fail(
                f"top bin of harmonic {max(harmonics):g} is at {f_top:.1f} Hz and its filter "
                f"reaches {cutoff:.1f} Hz, above Nyquist ({sr / 2:.1f} Hz); lower fmin, "
                "n_octaves or the largest harmonic"
            )

    # ------------------------------------------------------------------ grid
    @property
    def grid(self) -> Grid:
        """The frame and f0-bin grid this front end computes on (`mir.grid.Grid`)."""
        return Grid(
            self.sr,
            self.hop,
            self.bins_per_octave,
            self.n_bins,
            self.fmin,
            self.harmonics,
            self.n_fft,
        )

    # The frame and bin conversions are the grid's (defined once, in `mir.grid.Grid`).
    @property
    def frames_per_second(self) -> float:
        """Frame rate in frames per second (sr / hop)."""
        return self.grid.frames_per_second

    @property
    def freqs(self) -> np.ndarray:
        """Centre frequencies of the f0 grid (harmonic 1), in Hz, shape (F,)."""
        return self.grid.freqs

    def n_frames(self, n_samples: int) -> int:
        """Number of frames for a clip of `n_samples` samples (`Grid.n_frames`).

        Raises:
            ValueError: `n_samples` < 1.
        """
        return self.grid.n_frames(n_samples)

    def frame_times(self, n_frames: int) -> np.ndarray:
        """Centre time of each frame, in seconds, shape (T,) (`Grid.frame_times`)."""
        return self.grid.frame_times(n_frames)

    # ------------------------------------------------------------------ public transforms
    def forward(self, audio: Tensor) -> Tensor:
        """HCQT of a batch of mono clips.

        Args:
            audio: (B, N) float waveforms at `sr` Hz (a 1-D (N,) clip is treated as B = 1).

        Returns:
            (B, H, F, T): log-scaled magnitudes in [0, 1] if `log_scale`, else linear magnitudes;
            T = ``n_frames(N)``.
        """
        if not self.log_scale:
            return self.magnitude(audio)
        if self.backend == "nnaudio":
            return self.log_compress(self.magnitude(audio))
        with self.thread_policy():
            # Log-scale the computed bins before gathering channels: fewer values, same result.
            power, rows = self._power_rows(self._check_audio(audio))  # (K, B, T), class order
            return self._channels(self._log_scale(power, power=True, batch_dim=1), rows)

    def magnitude(self, audio: Tensor) -> Tensor:
        """Linear HCQT magnitudes with librosa's scaling.

        Args:
            audio: (B, N) float waveforms at `sr` Hz.

        Returns:
            (B, H, F, T) magnitudes; channel h, bin k measures energy at ``h * freqs[k]`` Hz.
        """
        audio = self._check_audio(audio)
        if self.backend == "nnaudio":
            return self._magnitude_nnaudio(audio)
        with self.thread_policy():
            power, rows = self._power_rows(audio)  # (K, B, T), class order
            return self._channels(_sqrt(power), rows)

    def power(self, audio: Tensor) -> Tensor:
        """|CQT|^2 of the computed bins (``fft`` backend), before channels are gathered.

        Args:
            audio: (B, N) float waveforms at `sr` Hz.

        Returns:
            (B, K, T) powers, K = `n_union_bins`, rows in the group order of `block_layout`;
            ``from_power(power(audio))`` equals ``forward(audio)``.
        """
        if self.backend != "fft":
            raise ValueError("HarmonicCQT.power needs backend='fft'")
        with self.thread_policy():
            power, rows = self._power_rows(self._check_audio(audio))
            return power.index_select(0, rows).transpose(0, 1)  # (B, K, T)

    def from_power(self, power: Tensor) -> Tensor:
        """(B, K, T) powers of the computed bins, group order (as `power`) -> `forward`'s output.

        Log-scaled if `log_scale`, else magnitudes; channels gathered to (B, H, F, T).
        """
        if self.log_scale:
            return self._gather_channels(self._log_scale(power, power=True))
        return self._gather_channels(_sqrt(power))

    def block_layout(self) -> BlockLayout:
        """The ``fft`` backend's static tables, in group order (see `BlockLayout`)."""
        if self.backend != "fft":
            raise ValueError("HarmonicCQT.block_layout needs backend='fft'")
        order = np.concatenate(self._groups)
        return BlockLayout(
            hop=self.hop,
            sr=self.sr,
            half_kernel=self._half_kernel,
            margin=self._margin,
            max_block_frames=_MAX_BLOCK_FRAMES,
            band_half_width=_BAND_HALF_WIDTH,
            group_sizes=tuple(len(g) for g in self._groups),
            freqs=self._union_freqs[order].copy(),
            taps=self._taps[order].copy(),
            gain=self._gain[order].copy(),
            dtype=self._probe.dtype,
        )

    def log_compress(self, mag: Tensor) -> Tensor:
        """Deep-salience log scaling of (B, ...) magnitudes to [0, 1], per-example max as 0 dB.

        ``1 + 20 log10(mag / max) / top_db`` clipped to [0, 1] (librosa ``amplitude_to_db`` with
        ``ref=np.max``); magnitudes are floored at 1e-10 and a silent example gives zeros.
        """
        return self._log_scale(mag, power=False)

    def _log_scale(self, x: Tensor, power: bool, batch_dim: int = 0) -> Tensor:
        """Magnitudes (or powers) with examples along `batch_dim` -> [0, 1], in few passes."""
        amin = _AMIN**2 if power else _AMIN
        scale = (10.0 if power else 20.0) / self.top_db  # dB per decade / top_db
        dims = [d for d in range(x.dim()) if d != batch_dim]
        ref = x.detach().amax(dim=dims, keepdim=True)  # 1 along every dim but the batch
        # 1 + scale * (log10 x - log10 ref); -inf for a silent example, so it clips to zeros.
        offset = torch.where(ref > amin, 1.0 - scale * torch.log10(ref.clamp_min(amin)), -math.inf)
        out = torch.add(offset, torch.log10(x.clamp_min(amin)), alpha=scale)
        return out.clamp_(0.0, 1.0) if _no_grad(x) else out.clamp(0.0, 1.0)

    def stft(self, audio: Tensor) -> Tensor:
        """Complex STFT on the HCQT's frame grid (Hann window of `n_fft`, centred, zero padded).

        Args:
            audio: (B, N) float waveforms.

        Returns:
            (B, n_fft // 2 + 1, T) complex, T = ``n_frames(N)`` (same frame centres as `forward`).
        """
        audio = self._check_audio(audio)
        return torch.stft(
            audio,
            n_fft=self.n_fft,
            hop_length=self.hop,
            window=self.window.to(audio.dtype),
            center=True,
            pad_mode="constant",
            return_complex=True,
        )

    def istft(self, spec: Tensor, length: int) -> Tensor:
        """Inverse of `stft`.

        Args:
            spec: (B, n_fft // 2 + 1, T) complex spectrogram.
            length: number of samples N to return.

        Returns:
            (B, N) waveforms; ``istft(stft(x), x.shape[-1])`` equals x to float precision.

        Raises:
            ValueError: hop > n_fft // 2, where a Hann window cannot be inverted.
        """
        if self.hop > self.n_fft // 2:
            raise ValueError(
                f"HarmonicCQT.istft: hop={self.hop} > n_fft // 2={self.n_fft // 2}; the Hann STFT "
                "is not invertible (raise n_fft)"
            )
        return torch.istft(
            spec,
            n_fft=self.n_fft,
            hop_length=self.hop,
            window=self.window.to(spec.real.dtype),
            center=True,
            length=int(length),
        )

    def extra_repr(self) -> str:
        return (
            f"sr={self.sr}, hop={self.hop}, fmin={self.fmin}, "
            f"bins_per_octave={self.bins_per_octave}, n_bins={self.n_bins}, "
            f"harmonics={self.harmonics}, backend={self.backend!r}"
        )

    # ------------------------------------------------------------------ helpers
    def _check_audio(self, audio: Tensor) -> Tensor:
        if audio.dim() == 1:
            audio = audio.unsqueeze(0)
        if audio.dim() != 2:
            raise ValueError(f"HarmonicCQT: audio must be (B, N), got shape {tuple(audio.shape)}")
        if audio.shape[-1] < 1:
            raise ValueError("HarmonicCQT: audio has 0 samples; need at least 1")
        if audio.is_complex():
            raise ValueError("HarmonicCQT: audio must be real")
        if not audio.is_floating_point():
            audio = audio.float()
        return audio

    # ------------------------------------------------------------------ fft backend
    def _init_fft(self) -> None:
        bpo = self.bins_per_octave
        # Position of every (harmonic, bin) on a log2 axis, in grid bins above fmin; equal
        # positions (harmonics an octave apart) share one computed bin.
        positions = [
            np.round(bpo * math.log2(h) + np.arange(self.n_bins), 6) for h in self.harmonics
        ]
        union = np.unique(np.concatenate(positions))  # (K,) ascending = by frequency
        # Split the union into geometric runs (same fractional position, consecutive integers),
        # then into groups of neighbouring bins that share one strided gather.
        frac = np.round(union - np.floor(union), 6)
        groups: list[np.ndarray] = []
        for fr in np.unique(frac):
            idx = np.flatnonzero(frac == fr)
            breaks = np.flatnonzero(np.diff(union[idx]) > 1.5) + 1
            for run in np.split(idx, breaks):
                groups.extend(run[i : i + _GROUP_SIZE] for i in range(0, len(run), _GROUP_SIZE))
        order = np.concatenate(groups)  # computed bins, in output order of the groups
        where = {float(union[u]): i for i, u in enumerate(order)}
        gather = np.array([[where[float(p)] for p in pos] for pos in positions])  # (H, F)
        self._groups = groups
        self._union_freqs = self.fmin * 2.0 ** (union / bpo)  # (K,) Hz, float64
        q = 1.0 / _relative_bandwidth(bpo)  # filter_scale = 1
        lengths = q * self.sr / self._union_freqs  # librosa's (fractional) kernel lengths
        # librosa builds each kernel on arange(-L // 2, L // 2): floor(L/2) - floor(-L/2) taps.
        self._taps = np.floor(lengths / 2) - np.floor(-lengths / 2)
        # scale=True divides by sqrt(L); norm=1 divides by the window sum, Ls / 2 for Hann.
        self._gain = np.sqrt(lengths) / (0.5 * self._taps)
        self.n_union_bins = len(union)
        self._half_kernel = int(math.ceil(self._taps.max() / 2))  # samples
        self._margin = -(-self._half_kernel // self.hop)  # frames
        self.register_buffer("_gather", torch.as_tensor(gather.reshape(-1)), persistent=False)
        # Carries dtype and device: kernels are built in this dtype, on this device.
        self.register_buffer(
            "_probe", torch.zeros((), dtype=torch.get_default_dtype()), persistent=False
        )
        self._plans: OrderedDict[tuple, _BlockPlan] = OrderedDict()

    def _block_kernels(self, m: int) -> _BlockKernels:
        """Kernel spectra for a block of `m` frames (N = m * hop samples), group by group."""
        device, dtype = self._probe.device, self._probe.dtype
        n = m * self.hop
        n_r = n // 2 + 1
        cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        layout = []
        for idx in self._groups:
            centre = self._union_freqs[idx] * n / self.sr  # spectrum index of each bin's centre
            half = _BAND_HALF_WIDTH * n / self._taps[idx]  # kept half band, in spectrum samples
            j = np.arange(len(idx))
            # Bin j of the group reads samples [start + j * step, ... + width): one strided view.
            step = max(1, round((centre[-1] - centre[0]) / max(len(idx) - 1, 1)))
            start = int(np.floor(np.min(centre - half - j * step)))
            width = int(np.ceil(np.max(centre + half - (start + j * step))))
            padded = -(-width // m) * m if width > m else -(-width // 8) * 8
            padded = min(padded, n)
            start -= (padded - width) // 2  # spend the rounding on a wider, more exact band
            layout.append((idx, start, step, padded))
        lo = max(0, -min(s for _, s, _, _ in layout))
        hi = max(0, max(s + (len(i) - 1) * st + w for i, s, st, w in layout) - n_r)
        if lo >= n_r - 1 or hi >= n_r - 2:
            raise ValueError("HarmonicCQT: kernel bands wider than the spectrum; block too short")
        groups = []
        for idx, start, step, width in layout:
            nu = (start + step * torch.arange(len(idx), dtype=torch.float64, device=device))[
                :, None
            ] + torch.arange(width, dtype=torch.float64, device=device)  # (K_g, W) spectrum index
            omega = torch.as_tensor(2 * np.pi * self._union_freqs[idx] / self.sr, device=device)
            taps = torch.as_tensor(self._taps[idx], device=device)[:, None]
            theta = 2 * math.pi * nu / n - omega[:, None]
            spec = _hann_kernel_spectrum(theta, taps)
            gain = torch.as_tensor(self._gain[idx], device=device)[:, None] / self.hop
            spec = (spec * gain).to(cdtype)
            if width > m:
                spec = spec.view(len(idx), width // m, m)  # (K_g, R, M): R periods to fold
            groups.append((start + lo, step, width, spec))
        return _BlockKernels(groups=groups, lo=lo, hi=hi)

    def _block_plan(self, m: int) -> _BlockPlan:
        """`_BlockKernels` for `m` frames regrouped by fold count (`_BlockPlan`), cached."""
        device, dtype = self._probe.device, self._probe.dtype
        key = (m, str(device), dtype)
        if key in self._plans:
            self._plans.move_to_end(key)
            return self._plans[key]
        # Normal tensors even when first called under inference mode, so that a later call with
        # autograd can use the cached plan.
        with torch.inference_mode(False), torch.no_grad():
            plan = self._build_plan(m)
        self._plans[key] = plan
        while len(self._plans) > _KERNEL_CACHE_SIZE:
            self._plans.popitem(last=False)
        return plan

    def _build_plan(self, m: int) -> _BlockPlan:
        device = self._probe.device
        kern = self._block_kernels(m)
        by_r: dict[int, list[tuple[Tensor, Tensor, Tensor]]] = {}  # R -> (bins, starts, rows)
        k0 = 0
        for start, step, width, kernel in kern.groups:
            k_g = kernel.shape[0]
            first = start + step * torch.arange(k_g, device=device)  # (K_g,) band starts
            if kernel.dim() == 3:  # (K_g, R, M): the band folds R times
                r = kernel.shape[1]
                starts = (first[:, None] + m * torch.arange(r, device=device)).reshape(-1)
                rows = kernel.reshape(k_g * r, m)
            else:  # one row, zero-padded to M (the zeros change nothing)
                r = 1
                starts = first
                rows = kernel.new_zeros(k_g, m)
                rows[:, :width] = kernel
            bins = torch.arange(k0, k0 + k_g, device=device)
            by_r.setdefault(r, []).append((bins, starts, rows))
            k0 += k_g
        classes, order = [], []
        for r in sorted(by_r):
            bins, starts, rows = (torch.cat(parts) for parts in zip(*by_r[r], strict=True))
            order.append(bins)
            classes.append((r, len(bins), starts, rows[:, None, :].contiguous()))
        order_t = torch.cat(order)  # class-order row -> group-order bin
        rows_of = torch.empty_like(order_t)
        rows_of[order_t] = torch.arange(len(order_t), device=device)
        ext_len = max(int(c[2].max()) for c in classes) + m
        return _BlockPlan(classes=classes, lo=kern.lo, hi=kern.hi, ext_len=ext_len, rows=rows_of)

    def _union_power(self, x: Tensor, m: int, t: int) -> tuple[Tensor, Tensor]:
        """|CQT|^2 of all computed bins for (B, N) blocks, N <= m * hop.

        Returns:
            (K, B, t) powers in class order (t <= M), and (K,) the class-order row of each
            group-order bin.
        """
        plan = self._block_plan(m)
        n = m * self.hop
        spec = torch.fft.rfft(x, n=n)  # (B, n // 2 + 1)
        n_r = spec.shape[-1]
        parts = []
        if plan.lo:  # negative frequencies: X(-v) = conj X(v)
            parts.append(spec[:, 1 : plan.lo + 1].flip(-1).conj())
        parts.append(spec)
        if plan.hi:  # above Nyquist: X(n - v) = conj X(v)
            parts.append(spec[:, n - n_r - plan.hi + 1 : n - n_r + 1].flip(-1).conj())
        n_ext = plan.lo + n_r + plan.hi
        if plan.ext_len > n_ext:  # room for the zero-padded rows of the top narrow bands
            parts.append(spec.new_zeros(spec.shape[0], plan.ext_len - n_ext))
        ext = torch.cat(parts, dim=-1) if len(parts) > 1 else spec  # (B, N_ext)
        b = ext.shape[0]
        windows = ext.unfold(-1, m, 1).transpose(0, 1)  # (N_ext - M + 1, B, M) view
        # Without autograd, each class writes into one preallocated array.
        inplace = _no_grad(ext)
        folded = ext.new_empty(self.n_union_bins, b, m) if inplace else None  # (K, B, M)
        pieces = []
        k0 = 0
        for r, k_c, starts, kernel in plan.classes:
            if r == 1:
                if folded is not None:
                    out = folded[k0 : k0 + k_c]
                    torch.index_select(windows, 0, starts, out=out).mul_(kernel)
                else:
                    pieces.append(windows.index_select(0, starts) * kernel)  # (K_c, B, M)
            else:
                band = windows.index_select(0, starts)  # (K_c * R, B, M)
                band = band.mul_(kernel) if folded is not None else band * kernel
                # Sampling every hop in time folds the band modulo M: sum its R rows, as one
                # batched matmul with a row of ones (faster than sum over a middle dim).
                ones = torch.ones(1, r, dtype=band.real.dtype, device=band.device)
                flat = torch.view_as_real(band).view(k_c, r, b * m * 2)
                if folded is not None:
                    out = torch.view_as_real(folded[k0 : k0 + k_c]).view(k_c, 1, b * m * 2)
                    torch.matmul(ones, flat, out=out)
                else:
                    summed = torch.matmul(ones, flat).view(k_c, b, m, 2)
                    pieces.append(torch.view_as_complex(summed))
            k0 += k_c
        if folded is None:
            folded = torch.cat(pieces)
        # Each fold starts at its band's first sample rather than at 0: a per-bin phase ramp over
        # frames, which the magnitude removes.
        frames = torch.fft.ifft(folded, dim=-1)[..., :t]  # (K, B, t)
        power = frames.real.square()
        if _no_grad(frames):
            return power.addcmul_(frames.imag, frames.imag), plan.rows
        return power.addcmul(frames.imag, frames.imag), plan.rows

    def _power_rows(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """(B, N) -> (K, B, T) |CQT|^2 of the computed bins in class order, and their rows.

        Always in the module's dtype: autocast (mixed-precision training) is switched off here,
        as it would run the fold's matmul in half precision.
        """
        with torch.autocast(audio.device.type, enabled=False):
            return self._power_rows_fp(audio)

    def _power_rows_fp(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        b, n_samples = audio.shape
        audio = audio.to(self._probe.dtype)
        t = self.n_frames(n_samples)
        need = -(-(n_samples + self._half_kernel) // self.hop)
        if need <= _MAX_BLOCK_FRAMES:
            # One block; its zero tail is both the right and the (circular) left padding.
            return self._union_power(audio, _next_smooth(need), t)
        # Long audio: overlapping blocks with `d` frames of real context each side, as a batch.
        d = self._margin
        m = _next_smooth(max(_MAX_BLOCK_FRAMES, 4 * d))
        step = m - 2 * d
        n_blocks = -(-t // step)
        total = (n_blocks * step + 2 * d) * self.hop
        padded = nn.functional.pad(audio, (d * self.hop, total - d * self.hop - n_samples))
        blocks = padded.unfold(-1, m * self.hop, step * self.hop)  # (B, n_blocks, M * hop)
        power, rows = self._union_power(blocks.reshape(b * n_blocks, -1), m, m)
        power = power[..., d : d + step].unflatten(1, (b, n_blocks))  # (K, B, n_blocks, step)
        return power.flatten(2)[..., :t], rows  # (K, B, T)

    def _power_fft(self, audio: Tensor) -> Tensor:
        """|CQT|^2 of the computed bins in group order: (B, N) -> (B, K, T)."""
        power, rows = self._power_rows(audio)
        return power.index_select(0, rows).transpose(0, 1)

    def _channels(self, values: Tensor, rows: Tensor) -> Tensor:
        """(K, B, T) values in class order -> (B, H, F, T) harmonic channels (one gather)."""
        _, b, t = values.shape
        out = values.transpose(0, 1).index_select(1, rows[self._gather])  # (B, H * F, T)
        return out.view(b, self.n_harmonics, self.n_bins, t)

    # ------------------------------------------------------------------ thread policy
    def _policy_threads(self) -> int:
        """Intra-op threads for this call (see `threads` and `choose_threads`)."""
        if self.threads != "auto":
            return int(self.threads)
        requested = torch.get_num_threads()
        now = time.monotonic()
        cached = self._policy
        if cached is None or cached[1] != requested or now - cached[0] > THREAD_POLICY_SECONDS:
            chosen = choose_threads(requested, _usable_cores(), _busy_elsewhere())
            self._policy = cached = (now, requested, chosen)
        return cached[2]

    @contextlib.contextmanager
    def thread_policy(self) -> Iterator[None]:
        """Context: run the body with the front end's intra-op thread count (`threads`).

        Restores torch's count after; nested uses keep the outer one's. The fast inference copy
        of a model (`mir.models.fused`) runs its trunk and heads under it too.
        """
        if self._policy_active:  # nested call: the outer one has set it
            yield
            return
        current = torch.get_num_threads()
        wanted = self._policy_threads()
        self._policy_active = True
        if wanted != current:
            torch.set_num_threads(wanted)
        try:
            yield
        finally:
            self._policy_active = False
            if wanted != current:
                torch.set_num_threads(current)

    def _gather_channels(self, union: Tensor) -> Tensor:
        """(B, K, T) values of the computed bins -> (B, H, F, T) harmonic channels."""
        b, _, t = union.shape
        return union.index_select(1, self._gather).view(b, self.n_harmonics, self.n_bins, t)

    # ------------------------------------------------------------------ nnaudio backend
    def _init_nnaudio(self) -> None:
        from nnAudio.features import CQT2010v2  # lazy: only the reference backend needs it

        self.cqts = nn.ModuleList(
            CQT2010v2(
                sr=self.sr,
                hop_length=self.hop,
                fmin=self.fmin * h,
                n_bins=self.n_bins,
                bins_per_octave=self.bins_per_octave,
                output_format="Magnitude",
                earlydownsample=False,  # its early downsampling mis-scales low channels
                pad_mode="constant",
                verbose=False,
            )
            for h in self.harmonics
        )

    def _magnitude_nnaudio(self, audio: Tensor) -> Tensor:
        t = self.n_frames(audio.shape[-1])
        # nnAudio's padding may give an extra frame; keep the librosa count.
        chans = [cqt(audio)[..., :t] for cqt in self.cqts]  # H x (B, F, T)
        return torch.stack(chans, dim=1)  # (B, H, F, T)


def choose_threads(requested: int, cores: int, busy_elsewhere: float) -> int:
    """Intra-op threads for the front end on a machine other processes may be using.

    Each parallel op ends when its slowest thread does, and a thread that shares its core with a
    busy process runs only part of the time, so threads beyond the free cores slow the op down
    rather than speed it up. Free cores are ``cores - busy_elsewhere`` rounded to the nearest
    whole core.

    Args:
        requested: the most threads to use (``torch.get_num_threads()``).
        cores: cores this process may run on.
        busy_elsewhere: cores kept busy by other processes (runnable tasks, or a load average).

    Returns:
        ``requested`` capped at the free cores, at least 1.
    """
    free = math.floor(cores - busy_elsewhere + 0.5)
    return max(1, min(int(requested), free))


def _usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class RunQueueSample(NamedTuple):
    """One look at the run queue (Linux ``/proc``).

    running: runnable tasks of the whole system (``/proc/loadavg``, 4th field, before the slash),
        this process's own included.
    own_before, own_after: this process's runnable threads (state ``R`` in
        ``/proc/self/task/*/stat``) read just before and just after ``running``.
    """

    running: int
    own_before: int
    own_after: int


def busy_from_samples(samples: Sequence[RunQueueSample]) -> float:
    """Cores other processes keep busy, from a few run-queue samples taken milliseconds apart.

    In each sample our own share of ``running`` is the larger of the two counts around it (at
    least 1, the reading thread): an OpenMP worker still spinning when the system count is read
    may have gone to sleep by the time our threads are counted, and would otherwise be counted
    as another process. Over the samples the fewest wins: a process that keeps a core busy is
    runnable in every sample, a short-lived task in one.

    Args:
        samples: at least one `RunQueueSample`.

    Returns:
        Busy cores elsewhere, >= 0.
    """
    if not samples:
        raise ValueError("busy_from_samples: no samples")
    return float(min(max(0, s.running - max(s.own_before, s.own_after, 1)) for s in samples))


def _own_running() -> int:
    """This process's runnable threads (state R), from /proc/self/task."""
    own = 0
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            stat = (task / "stat").read_text()
            own += stat[stat.rindex(")") + 2] == "R"  # the state follows "(comm) "
    return own


def _run_queue_sample() -> RunQueueSample:
    """One `RunQueueSample` (raises OSError where /proc is absent)."""
    before = _own_running()
    running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
    return RunQueueSample(running, before, _own_running())


def _busy_elsewhere() -> float:
    """Cores other processes keep busy now.

    On Linux: `busy_from_samples` of `_LOAD_SAMPLES` run-queue samples `_LOAD_SAMPLE_GAP` s
    apart. Elsewhere the 1-minute load average, which lags and includes this process; 0 where
    neither exists.
    """
    try:
        samples = []
        for i in range(_LOAD_SAMPLES):
            if i:
                time.sleep(_LOAD_SAMPLE_GAP)
            samples.append(_run_queue_sample())
        return busy_from_samples(samples)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0


def _sqrt(power: Tensor) -> Tensor:
    """sqrt with a zero (not infinite) gradient at silence."""
    positive = power > 0
    return torch.where(positive, torch.where(positive, power, 1.0).sqrt(), 0.0)


def _no_grad(x: Tensor) -> bool:
    """True when no gradient will flow through x, so in-place ops are safe."""
    return not (torch.is_grad_enabled() and x.requires_grad)


def _relative_bandwidth(bins_per_octave: int) -> float:
    """librosa's relative bandwidth alpha of a geometric grid (Q = filter_scale / alpha)."""
    r = 2.0 ** (2.0 / bins_per_octave)
    return (r - 1.0) / (r + 1.0)
