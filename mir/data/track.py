"""The one example type every dataset yields.

Conventions:
    * Audio is mono float32 at the front end's sample rate, shape (N,).
    * Single-voice f0 series (melody, bass, vocal) are `(times, freqs)` in seconds and Hz,
      with 0 Hz meaning unvoiced, as `mir_eval.melody` reads them.
    * Multi-f0 is `(times, [freqs_at_t ...])`, as `mir_eval.multipitch` reads it.
    * Drum onsets are a dict class name -> onset times in seconds; class names are
      lower case (``kick``, ``snare``, ``hihat`` by default).
    * Stems are a dict source name -> (N,) float32, same length and rate as `audio`;
      separation reads ``vocals`` and ``accompaniment``.
    * An annotation a dataset does not have is ``None`` (or absent from the dict), never
      faked: tasks mask their loss for tracks that lack their labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

F0Series = tuple[np.ndarray, np.ndarray]
"""(times in s, shape (T,); f0 in Hz, shape (T,), 0 = unvoiced)."""

MultiF0Series = tuple[np.ndarray, list[np.ndarray]]
"""(times in s, shape (T,); list of T arrays of active f0s in Hz)."""


@dataclass
class Track:
    """One annotated recording.

    Attributes:
        name: identifier, unique within its dataset.
        audio: mono mixture, float32, shape (N,), at `sr` Hz.
        sr: sample rate in Hz.
        stems: source name -> waveform (N,), or None when the dataset has no stems.
        f0: voice name (``melody``, ``bass``, ``vocal``) -> single-voice f0 series.
        multif0: all active f0s per frame, or None.
        onsets: drum class -> onset times (s), or None when drums are not annotated.
        beats: beat times (s), or None.
        downbeats: downbeat times (s), or None.
        tags: track-level tags present (strings), or None when not annotated.
        meta: free-form metadata (artist, piece, split, source paths...).
    """

    name: str
    audio: np.ndarray
    sr: int
    stems: dict[str, np.ndarray] | None = None
    f0: dict[str, F0Series] = field(default_factory=dict)
    multif0: MultiF0Series | None = None
    onsets: dict[str, np.ndarray] | None = None
    beats: np.ndarray | None = None
    downbeats: np.ndarray | None = None
    tags: list[str] | None = None
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        """Length of the mixture in seconds."""
        return len(self.audio) / self.sr
