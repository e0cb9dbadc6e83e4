"""The one time-frequency grid: sample rate, hop, f0 bins and harmonics.

The front-end config (``conf/frontend/*.yaml``) defines it once; `mir.frontend.HarmonicCQT`
exposes it as ``grid``, and the tasks (targets, decoding) and the data (excerpt lengths)
read it from there. Everything else is derived: ``frames_per_second = sr / hop``, frame
centres ``t * hop / sr``, bin ``k`` at ``fmin * 2 ** (k / bins_per_octave)`` Hz.

Conventions:
    * Frames are centred (librosa ``center=True``): a clip of N >= 1 samples has
      ``1 + N // hop`` frames, frame t centred at sample ``t * hop``.
    * Bins are those of harmonic 1 (the f0 grid); harmonic h's bin k is at h times that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """The shared frame and f0-bin grid.

    Attributes:
        sr: sample rate, Hz.
        hop: frame hop, samples.
        bins_per_octave: f0 bins per octave.
        n_bins: f0 bins F (``bins_per_octave * n_octaves``).
        fmin: centre of bin 0, Hz.
        harmonics: the HCQT's harmonic multiples, in channel order.
        n_fft: the front end's STFT size (separation's masks have ``n_fft // 2 + 1`` bins).
    """

    sr: int
    hop: int
    bins_per_octave: int
    n_bins: int
    fmin: float
    harmonics: tuple[float, ...]
    n_fft: int

    @property
    def frames_per_second(self) -> float:
        """Frame rate in frames per second (sr / hop)."""
        return self.sr / self.hop

    @property
    def freqs(self) -> np.ndarray:
        """Centre frequencies of the f0 bins, Hz, shape (F,)."""
        return self.fmin * 2.0 ** (np.arange(self.n_bins) / self.bins_per_octave)

    def n_frames(self, n_samples: int) -> int:
        """Frames of a clip of `n_samples` samples: ``1 + n_samples // hop``.

        Raises:
            ValueError: `n_samples` < 1.
        """
        if n_samples < 1:
            raise ValueError(f"HarmonicCQT: audio has {n_samples} samples; need at least 1")
        return 1 + int(n_samples) // self.hop

    def frame_times(self, n_frames: int) -> np.ndarray:
        """Centre time of each of `n_frames` frames, s, shape (T,)."""
        return np.arange(int(n_frames)) * (self.hop / self.sr)

    def frame_of(self, times: np.ndarray) -> np.ndarray:
        """Index of the frame nearest each time in `times` (s), as int."""
        return np.rint(np.asarray(times, dtype=np.float64) * self.frames_per_second).astype(int)

    def frame_to_sample(self, frame: int) -> int:
        """The sample at which frame `frame` is centred."""
        return int(frame) * self.hop

    def bin_of(self, freqs: np.ndarray) -> np.ndarray:
        """Fractional f0-bin position of each frequency in `freqs` (Hz, > 0)."""
        return self.bins_per_octave * np.log2(np.asarray(freqs, dtype=np.float64) / self.fmin)


@dataclass(frozen=True)
class Window:
    """A training excerpt on the grid: frames and the samples they cover."""

    start_frame: int
    n_frames: int
    start_sample: int
    n_samples: int
