"""The one example type every dataset yields: audio plus annotations keyed by kind.

A `Track` holds its mixture and a dict ``annotations`` from *kind* (a string) to a value.
A dataset stores the kinds it has and leaves the others absent (never faked); a task reads
the kinds it needs with `Track.get` / `Track.has` and masks its loss on tracks that lack
them. A new kind needs no change here: a loader writes it, a task reads it.

Conventions (the kinds in use, and their value formats):
    * ``melody``, ``bass``, ``vocal``: a single-voice f0 series `F0Series`, ``(times, f0)``
      in s and Hz, 0 Hz meaning unvoiced, as `mir_eval.melody` reads it.
    * ``multif0``: every active f0 per frame, `MultiF0Series`, ``(times, [f0s at t, ...])``,
      as `mir_eval.multipitch` reads it.
    * ``onsets``: drum class -> onset times in s; class names are lower case (``kick``,
      ``snare``, ``hihat`` by default). A class absent from the dict is not annotated; an
      empty array is a real "no onsets".
    * ``beats``, ``downbeats``: times in s, (n,).
    * ``chords``: `ChordSeries`, ``(intervals, labels)``: (n, 2) start and end in s and n
      labels in `mir_eval.chord` syntax (``N`` no chord, ``X`` unknown), as
      `mir_eval.io.load_labeled_intervals` returns them.
    * ``tags``: the track-level tags present (strings); an empty list is "none present".
    * ``stems``: source name -> (N,) float32, same length and rate as `audio`; separation
      reads ``vocals`` and ``accompaniment``. Stems are signals: windows cut them with the
      mixture (`Track.without_audio` drops them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

F0Series = tuple[np.ndarray, np.ndarray]
"""(times in s, shape (T,); f0 in Hz, shape (T,), 0 = unvoiced)."""

MultiF0Series = tuple[np.ndarray, list[np.ndarray]]
"""(times in s, shape (T,); list of T arrays of active f0s in Hz)."""

ChordSeries = tuple[np.ndarray, list[str]]
"""(intervals in s, shape (n, 2); n chord labels in `mir_eval.chord` syntax)."""

F0_KINDS = ("melody", "bass", "vocal")
"""The single-voice f0 kinds in use (a loader may add other voices)."""


@dataclass
class Track:
    """One annotated recording.

    Attributes:
        name: identifier, unique within its dataset.
        audio: mono mixture, float32, shape (N,), at `sr` Hz.
        sr: sample rate in Hz.
        annotations: kind -> value (see the module docstring); a kind the dataset does not
            have is absent. A None value is dropped on construction.
        meta: free-form metadata (artist, piece, split, source paths...).
    """

    name: str
    audio: np.ndarray
    sr: int
    annotations: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.annotations = {k: v for k, v in self.annotations.items() if v is not None}

    @property
    def duration(self) -> float:
        """Length of the mixture in seconds."""
        return len(self.audio) / self.sr

    def has(self, kind: str) -> bool:
        """Whether the track annotates `kind`."""
        return self.annotations.get(kind) is not None

    def get(self, kind: str, default: Any = None) -> Any:
        """The annotation of `kind`, or `default` when the track does not have it."""
        value = self.annotations.get(kind)
        return default if value is None else value

    def set(self, kind: str, value: Any) -> None:
        """Store `value` as the annotation of `kind`; None removes the kind."""
        if value is None:
            self.annotations.pop(kind, None)
        else:
            self.annotations[kind] = value

    def without_audio(self) -> Track:
        """A copy with the annotations and metadata only: ``audio`` empty, no ``stems``."""
        ann = {k: v for k, v in self.annotations.items() if k != "stems"}
        return dataclasses.replace(self, audio=np.zeros(0, np.float32), annotations=ann)
