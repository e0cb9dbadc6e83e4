"""The features the shared model computes once per batch."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class Features:
    """What every head may read.

    Attributes:
        audio: (B, N) mono mixture.
        hcqt: (B, H, F, T) log-scaled Harmonic CQT, or None when no head reads it.
        trunk: (B, C, F, T) shared trunk features, or None when no head reads them.
        stft: (B, F', T) complex STFT of the mixture on the same frames, or None.
    """

    audio: Tensor
    hcqt: Tensor | None
    trunk: Tensor | None = None
    stft: Tensor | None = None
