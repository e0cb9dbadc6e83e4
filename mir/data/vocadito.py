"""vocadito (Bittner, Pasalo, Bosch, Meseguer-Brocal & Rubinstein 2021): 40 solo singing
recordings with f0, notes from two annotators, and lyrics. CC BY 4.0.

Layout (as distributed on Zenodo)::

    <root>/vocadito_metadata.csv                       track_id,singer_id,average_pitch,language
    <root>/Audio/vocadito_<n>.wav                      44.1 kHz mono, n = 1..40
    <root>/Annotations/F0/vocadito_<n>_f0.csv          time (s), f0 (Hz); no header
    <root>/Annotations/Notes/vocadito_<n>_notes{A1,A2}.csv   onset (s), pitch (Hz), duration (s)
    <root>/Annotations/Lyrics/vocadito_<n>_lyrics.txt  plain text, one sung line a line

Conventions:
    * Track ids are the file stems, ``vocadito_1`` .. ``vocadito_40``.
    * The F0 grid is dense: hop 256 samples at 44.1 kHz (5.8 ms), frame k at k * 256 / 44100 s,
      0 Hz on unvoiced frames (negative values, should a file hold any, are read as 0 Hz).
    * The recordings are unaccompanied, so ``f0["vocal"]`` and ``f0["melody"]`` are the same
      series, ``multif0`` holds that one voice (an empty array on unvoiced frames), and
      ``stems`` are ``vocals`` (the recording) and ``accompaniment`` (silence, which is the
      truth here, not a placeholder). The separation task needs every stem non-silent, so
      these tracks do not label it; remixing may still use their vocals.
    * Notes are in ``meta["notes"]``: annotator (``A1``, ``A2``) -> (intervals in s, (K, 2);
      pitches in Hz, (K,)), as `mir_eval.transcription` reads them; ``meta["lyrics"]`` is the
      lyrics text. The metadata's ``average_pitch`` is a MIDI note number. Without
      ``vocadito_metadata.csv`` the singer, language and average pitch are None; a missing
      notes or lyrics file is None too; the audio and the F0 file are required.
    * Splits: vocadito has no official split. `SPLIT` is ours, singer-disjoint and fixed:
      singers S1-S21 train (28 tracks), S22-S26 validation (6), S27-S29 test (6), i.e.
      validation = tracks 27, 29-33 and test = tracks 34-39 (singer ids from
      ``vocadito_metadata.csv``; S9 sings tracks 12 and 40, both in train).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np

from mir.audio import load_audio
from mir.data.annotations import read_f0_csv, read_numeric_table, read_split_file
from mir.data.base import Dataset, Splits, dataset_root
from mir.data.track import Track
from mir.errors import DatasetError

N_TRACKS = 40
ANNOTATION_HOP_S = 256 / 44100
"""Hop of the F0 annotation grid, in seconds."""

ANNOTATORS = ("A1", "A2")

_VALIDATION = (27, 29, 30, 31, 32, 33)  # singers S22-S26
_TEST = (34, 35, 36, 37, 38, 39)  # singers S27-S29
SPLIT: dict[str, tuple[str, ...]] = {
    "train": tuple(f"vocadito_{n}" for n in range(1, N_TRACKS + 1) if n not in _VALIDATION + _TEST),
    "validation": tuple(f"vocadito_{n}" for n in _VALIDATION),
    "test": tuple(f"vocadito_{n}" for n in _TEST),
}
"""Our singer-disjoint split (see the module docstring), 28/6/6 tracks."""

_TRACK = re.compile(r"^vocadito_(\d+)$")
_METADATA_COLUMNS = ("track_id", "singer_id", "average_pitch", "language")


class Vocadito(Dataset):
    """vocadito loader (one track: the recording, its f0, both note annotations, lyrics).

    Args:
        root: dataset folder holding ``Audio/``; default the ``VOCADITO_PATH`` variable.
        sr: sample rate in Hz of the returned audio.
        split_file: JSON ``{"train": [...], "validation": [...], "test": [...]}`` replacing
            the default singer-disjoint `SPLIT`.

    Raises:
        DatasetError: the root or its ``Audio/`` folder is missing, the metadata CSV is
            malformed, or the split file is invalid.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        sr: int = 22050,
        split_file: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(sr)
        self.root = dataset_root(root, "VOCADITO_PATH", "vocadito")
        self.audio_dir = self.root / "Audio"
        if not self.audio_dir.is_dir():
            raise DatasetError(
                f"vocadito: {self.audio_dir} does not exist (expected Audio/vocadito_<n>.wav)"
            )
        if split_file in (None, ""):
            self._splits = Splits(SPLIT)
        else:
            self._splits = Splits(read_split_file(split_file))
        self._metadata = self._read_metadata(self.root / "vocadito_metadata.csv")

    def available(self) -> list[str]:
        """Ids of every track whose audio is under ``Audio/``, in any split or none, sorted."""
        return sorted(p.stem for p in self.audio_dir.glob("vocadito_*.wav") if _TRACK.match(p.stem))

    def track_ids(self, split: str) -> list[str]:
        return self._splits.ids(split, present=set(self.available()))

    def split_of(self, track_id: str) -> str | None:
        """The split holding `track_id`, or None if the split lists it nowhere."""
        return self._splits.of(track_id)

    def load(self, track_id: str) -> Track:
        match = _TRACK.match(track_id)
        if match is None:
            raise DatasetError(
                f"vocadito: unknown track id {track_id!r} (expected vocadito_1..vocadito_40)"
            )
        audio_path = self.audio_dir / f"{track_id}.wav"
        if not audio_path.is_file():
            raise DatasetError(f"vocadito: track {track_id!r} not found ({audio_path} is missing)")
        audio = load_audio(audio_path, self.sr)
        annotations = self.root / "Annotations"
        f0_path = annotations / "F0" / f"{track_id}_f0.csv"
        times, freqs = self._read_f0(f0_path, len(audio) / self.sr)
        multif0 = (times, [np.array([f]) if f > 0 else np.zeros(0) for f in freqs])
        notes = {
            a: self._read_notes(annotations / "Notes" / f"{track_id}_notes{a}.csv")
            for a in ANNOTATORS
        }
        lyrics_path = annotations / "Lyrics" / f"{track_id}_lyrics.txt"
        lyrics = lyrics_path.read_text(encoding="utf-8") if lyrics_path.is_file() else None
        row = self._metadata.get(int(match.group(1)), {})
        return Track(
            name=track_id,
            audio=audio,
            sr=self.sr,
            annotations={
                "stems": {"vocals": audio.copy(), "accompaniment": np.zeros_like(audio)},
                "vocal": (times, freqs),
                "melody": (times, freqs.copy()),
                "multif0": multif0,
            },
            meta={
                "dataset": "vocadito",
                "singer": row.get("singer_id"),
                "language": row.get("language"),
                "average_pitch_midi": row.get("average_pitch"),
                "split": self.split_of(track_id),
                "notes": notes,
                "lyrics": lyrics,
                "path": str(audio_path),
                "f0_path": str(f0_path),
            },
        )

    @staticmethod
    def _read_f0(path: Path, duration: float) -> tuple[np.ndarray, np.ndarray]:
        """(times in s, (T,); f0 in Hz, (T,), 0 = unvoiced), checked against the audio."""
        times, freqs = read_f0_csv(path)
        if times.size == 0:
            raise DatasetError(f"vocadito: {path} holds no f0 rows")
        # The grid is a few ms shorter than the audio; far beyond it means the wrong file.
        if times[-1] > duration + 0.1:
            raise DatasetError(
                f"vocadito: {path} ends at {times[-1]:.3f} s but the audio lasts {duration:.3f} s"
            )
        return times, freqs

    @staticmethod
    def _read_notes(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        """(intervals in s, (K, 2); pitches in Hz, (K,)), or None when the file is absent."""
        if not path.is_file():
            return None
        _, rows = read_numeric_table(path, min_columns=3, max_columns=3, header=False)
        table = np.stack(rows) if rows else np.zeros((0, 3))  # (K, 3): onset, Hz, duration
        if np.any(table[:, 1] <= 0) or np.any(table[:, 2] < 0):
            raise DatasetError(f"vocadito: {path} has a note with pitch <= 0 or duration < 0")
        intervals = np.stack([table[:, 0], table[:, 0] + table[:, 2]], axis=1)  # (K, 2)
        return intervals, table[:, 1]

    @staticmethod
    def _read_metadata(path: Path) -> dict[int, dict[str, object]]:
        """Track number -> {singer_id, average_pitch (MIDI), language}; {} without the file."""
        if not path.is_file():
            return {}
        try:
            with path.open(encoding="utf-8-sig", newline="") as f:
                reader = csv.DictReader(f)
                missing = [c for c in _METADATA_COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    raise DatasetError(
                        f"vocadito: {path} lacks the column(s) {', '.join(missing)} "
                        f"(header: {reader.fieldnames})"
                    )
                rows: dict[int, dict[str, object]] = {}
                for lineno, row in enumerate(reader, start=2):
                    try:
                        number = int(row["track_id"])
                        pitch = float(row["average_pitch"])
                    except (TypeError, ValueError):
                        raise DatasetError(
                            f"vocadito: {path}, line {lineno}: track_id must be an integer and "
                            f"average_pitch a number, got {row['track_id']!r}, "
                            f"{row['average_pitch']!r}"
                        ) from None
                    rows[number] = {
                        "singer_id": row["singer_id"],
                        "average_pitch": pitch,
                        "language": row["language"],
                    }
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DatasetError(f"vocadito: cannot read {path} ({exc})") from None
        return rows
