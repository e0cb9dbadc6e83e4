"""Bach10 v1.1 (Duan, Pardo & Zhang 2010): ten four-part Bach chorales, one instrument a part.

Layout (as distributed)::

    <root>/<NN-Title>/<NN-Title>.wav              mixture, 44.1 kHz mono
    <root>/<NN-Title>/<NN-Title>-violin.wav       one file per part: violin, clarinet,
                                                  saxphone (sic), bassoon
    <root>/<NN-Title>/<NN-Title>-GTF0s.mat        GTF0s: (4, T) MIDI pitch per part, 0 = silent
    <root>/<NN-Title>/<NN-Title>-GTNotes.mat      per-part notes (frame indices, MIDI pitch)
    <root>/<NN-Title>/<NN-Title>.txt, .asl, .mid  notes (ms), audio-score alignment, score

Conventions:
    * Rows of ``GTF0s`` are the parts in score order: violin (soprano), clarinet (alto),
      saxophone (tenor), bassoon (bass).
    * Ground-truth frames are 46 ms long with a 10 ms hop; frame k (0-based) is centred
      at 0.023 + 0.010 k s. The ``.asl`` file lists the same centres (23, 33, ... ms), and
      a harmonic-sum pitch estimate on each part's own stem agrees best with the
      annotation at this offset (checked against 0 and 46 ms in the tests).
    * ``f0["melody"]`` is the violin, ``f0["bass"]`` the bassoon; ``multif0`` all four.
    * Stems are the four parts by instrument name; there are no vocals, so no
      ``vocals``/``accompaniment`` keys.
    * Bach10 is a test set: all pieces are in ``test`` unless a split file says otherwise.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import scipy.io

from mir.audio import audio_info, fit_length, load_audio
from mir.data.annotations import frame_grid, midi_to_hz, read_split_file
from mir.data.base import Dataset, Splits, dataset_root
from mir.data.track import Track
from mir.errors import DatasetError

PARTS = ("violin", "clarinet", "saxophone", "bassoon")
"""Instrument of each row of ``GTF0s``, in score order (soprano to bass)."""

_PART_FILES = {"saxophone": ("saxphone", "saxophone")}  # v1.1 spells it "saxphone"
HOP_S = 0.010
FIRST_FRAME_S = 0.023  # centre of the first 46 ms frame
_PIECE = re.compile(r"^\d{2}-\S+$")


class Bach10(Dataset):
    """Bach10 v1.1 loader.

    Args:
        root: dataset folder; default the ``BACH10_PATH`` environment variable.
        sr: sample rate in Hz of the returned audio.
        split_file: JSON ``{"train": [...], "validation": [...], "test": [...]}``;
            default all pieces in ``test``.

    Raises:
        DatasetError: the root is missing or holds no ``NN-Title`` piece folders.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        sr: int = 22050,
        split_file: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(sr)
        self.root = dataset_root(root, "BACH10_PATH", "Bach10")
        self._ids = sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and _PIECE.match(p.name)
        )
        if not self._ids:
            raise DatasetError(f"Bach10: no NN-Title piece folders found in {self.root}")
        if split_file is None:
            self._splits = Splits({"test": self._ids})
        else:
            self._splits = Splits(read_split_file(split_file))

    def track_ids(self, split: str) -> list[str]:
        return self._splits.ids(split, present=set(self._ids))

    def _part_path(self, folder: Path, track_id: str, part: str) -> Path:
        for spelling in _PART_FILES.get(part, (part,)):
            path = folder / f"{track_id}-{spelling}.wav"
            if path.is_file():
                return path
        raise DatasetError(f"Bach10: {folder / f'{track_id}-{part}.wav'} does not exist")

    def load(self, track_id: str) -> Track:
        folder = self.root / track_id
        if not folder.is_dir():
            raise DatasetError(f"Bach10: track {track_id!r} not found ({folder} does not exist)")
        mix_path = folder / f"{track_id}.wav"
        mix_info = audio_info(mix_path)
        audio = load_audio(mix_path, self.sr)
        stems: dict[str, np.ndarray] = {}
        for part in PARTS:
            path = self._part_path(folder, track_id, part)
            info = audio_info(path)
            if info.samplerate != mix_info.samplerate:
                raise DatasetError(
                    f"Bach10: {path} is at {info.samplerate} Hz but the mix is at "
                    f"{mix_info.samplerate} Hz"
                )
            if abs(info.frames - mix_info.frames) > 8:
                raise DatasetError(
                    f"Bach10: {path} has {info.frames} samples but the mix has {mix_info.frames}"
                )
            stems[part] = fit_length(load_audio(path, self.sr), len(audio))
        # an instrumental quartet: no vocals, the whole mix is accompaniment (remix material)
        stems["vocals"] = np.zeros_like(audio)
        stems["accompaniment"] = audio.copy()
        times, f0s = self._read_gtf0s(folder / f"{track_id}-GTF0s.mat")
        multif0 = (times, [np.sort(col[col > 0]) for col in f0s.T])
        return Track(
            name=track_id,
            audio=audio,
            sr=self.sr,
            annotations={
                "stems": stems,
                "melody": (times, f0s[0]),
                "bass": (times, f0s[3]),
                "multif0": multif0,
            },
            meta={
                "dataset": "bach10",
                "piece": track_id.split("-", 1)[1],
                "split": self._splits.of(track_id),
                "parts": {p: (times, f0s[i]) for i, p in enumerate(PARTS)},
                "path": str(folder),
            },
        )

    @staticmethod
    def _read_gtf0s(path: Path) -> tuple[np.ndarray, np.ndarray]:
        """(frame times in s, (T,); f0 in Hz per part, (4, T))."""
        if not path.is_file():
            raise DatasetError(f"Bach10: {path} does not exist")
        try:
            mat = scipy.io.loadmat(str(path))
        except Exception as exc:  # scipy raises several types for corrupt .mat files
            raise DatasetError(f"Bach10: cannot read {path} ({exc})") from None
        gt = mat.get("GTF0s")
        if not isinstance(gt, np.ndarray) or gt.ndim != 2 or gt.shape[0] != len(PARTS):
            shape = getattr(gt, "shape", None)
            raise DatasetError(f"Bach10: {path} has no (4, T) GTF0s matrix (got {shape})")
        midi = gt.astype(np.float64)
        if not np.all(np.isfinite(midi)):
            raise DatasetError(f"Bach10: {path} contains NaN or infinite pitches")
        return frame_grid(midi.shape[1], HOP_S, FIRST_FRAME_S), midi_to_hz(midi)
