"""A cheap, independent f0 estimate for golden tests of f0 annotations against audio."""

from __future__ import annotations

import numpy as np


def harmonic_sum_f0(
    x: np.ndarray, sr: int, centres: np.ndarray, fmax: float = 2000.0, n_fft: int = 2048
) -> np.ndarray:
    """Per frame centred at `centres` (s), the candidate f0 (55 Hz to `fmax`, 5-cent grid)
    with the largest weighted sum of spectral magnitude at its first 5 harmonics."""
    pad = np.pad(x, (n_fft // 2, n_fft // 2))
    starts = np.round(centres * sr).astype(int)
    frames = np.stack([pad[s : s + n_fft] for s in starts]) * np.hanning(n_fft)  # (T, n_fft)
    mag = np.abs(np.fft.rfft(frames, axis=1))  # (T, F)
    cand = 55.0 * 2 ** (np.arange(0, 6000, 5) / 1200)
    cand = cand[cand < fmax]
    sal = np.zeros((len(starts), len(cand)))
    for h in range(1, 6):
        bins = np.round(h * cand * n_fft / sr).astype(int)
        sal += 0.8 ** (h - 1) * mag[:, bins]
    return cand[np.argmax(sal, axis=1)]
