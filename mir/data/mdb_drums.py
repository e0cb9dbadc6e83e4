"""Drum transcription datasets: MDB Drums (Southall et al. 2017) and ENST-Drums
(Gillet & Richard 2006).

Conventions:
    * Onsets are `Track.onsets`: class name -> sorted onset times in s. With
      ``classes="class"`` (default) the MDB labels map as KD -> ``kick``, SD -> ``snare``,
      HH -> ``hihat``, TT -> ``tom``, CY -> ``cymbal``, OT -> ``other``; 3-class tasks read
      kick, snare and hihat. Every class key is present (an empty array when a track has
      no such hit).
    * ``classes="subclass"`` reads the 21 playing-technique labels of the subclass files
      and groups them into 8 classes (`SUBCLASS_TO_8`): ``kick`` (KD); ``snare`` (SD, SDB
      brush, SDD drag, SDF flam, SDG ghost, SDNS snare off); ``hihat_closed`` (CHH, PHH
      pedal); ``hihat_open`` (OHH); ``tom`` (HIT, MHT, HFT, LFT); ``crash`` (CRC crash,
      CHC china, SPC splash); ``ride`` (RDC ride, RDB ride bell); ``other`` (SST side
      stick, TMB tambourine). Each group lies inside one MDB class (side stick is OT
      in the class files, hence ``other``), so the two modes never disagree.
    * Beats: ``<track>_MIX.beats`` rows are (time s, position in bar); `Track.beats` is
      all times and `Track.downbeats` the times at position 1.
    * Splits: 3-fold cross-validation over tracks (the protocol of the MDB Drums paper
      and later ADT work). Tracks are sorted by name and dealt round-robin into folds
      (track i goes to fold i mod 3; 8/8/7 tracks for the full 23). For ``fold=k``:
      test = fold k, validation = fold k+1 (mod 3), train = the remaining fold. This is
      our own deterministic assignment, not the MIREX 2017 split.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from mir.audio import load_audio
from mir.data.base import Dataset, Splits, dataset_root
from mir.data.track import Track
from mir.errors import AudioError, DatasetError

CLASS_MAP = {"KD": "kick", "SD": "snare", "HH": "hihat", "TT": "tom", "CY": "cymbal", "OT": "other"}
"""MDB Drums class label -> `Track.onsets` key."""

SUBCLASS_TO_8 = {
    "KD": "kick",
    "SD": "snare",
    "SDB": "snare",
    "SDD": "snare",
    "SDF": "snare",
    "SDG": "snare",
    "SDNS": "snare",
    "CHH": "hihat_closed",
    "PHH": "hihat_closed",
    "OHH": "hihat_open",
    "HIT": "tom",
    "MHT": "tom",
    "HFT": "tom",
    "LFT": "tom",
    "CRC": "crash",
    "CHC": "crash",
    "SPC": "crash",
    "RDC": "ride",
    "RDB": "ride",
    "SST": "other",
    "TMB": "other",
}
"""MDB Drums subclass label (21) -> one of 8 onset keys."""

N_FOLDS = 3
AUDIO_DIRS = {"full_mix": ("full_mix", "_MIX.wav"), "drum_only": ("drum_only", "_Drum.wav")}


def fold_splits(ids: list[str], fold: int, n_folds: int = N_FOLDS) -> dict[str, list[str]]:
    """Round-robin `n_folds`-fold split of sorted ids: test = `fold`, validation = next."""
    if not 0 <= int(fold) < n_folds:
        raise DatasetError(f"fold must be in 0..{n_folds - 1}, got {fold}")
    ordered = sorted(ids)
    folds = [ordered[i::n_folds] for i in range(n_folds)]
    test, val = int(fold), (int(fold) + 1) % n_folds
    train = sorted(t for i, f in enumerate(folds) if i not in (test, val) for t in f)
    return {"train": train, "validation": sorted(folds[val]), "test": sorted(folds[test])}


def read_labelled_times(
    path: Path, labels: dict[str, str], what: str, keys: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Parse ``time label`` rows (whitespace separated) into key -> sorted times.

    Raises:
        DatasetError: missing file, a row without two fields, a bad time, or an unknown
            label; the message names the file and the 1-based line number.
    """
    if not path.is_file():
        raise DatasetError(f"{what}: annotation file {path} does not exist")
    out: dict[str, list[float]] = {k: [] for k in (keys or sorted(set(labels.values())))}
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise DatasetError(f"{what}: {path}, line {n}: expected 'time label', got {line!r}")
            t = _parse_time(fields[0], path, n, what)
            if fields[1] not in labels:
                raise DatasetError(
                    f"{what}: {path}, line {n}: unknown label {fields[1]!r} "
                    f"(known: {', '.join(sorted(labels))})"
                )
            out.setdefault(labels[fields[1]], []).append(t)
    return {k: np.sort(np.asarray(v, dtype=np.float64)) for k, v in out.items()}


def _parse_time(s: str, path: Path, n: int, what: str) -> float:
    try:
        t = float(s)
    except ValueError:
        raise DatasetError(f"{what}: {path}, line {n}: time {s!r} is not a number") from None
    if not np.isfinite(t) or t < 0:
        raise DatasetError(f"{what}: {path}, line {n}: time {s!r} is not a non-negative number")
    return t


def read_beats(path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``time position`` rows into (beat times, downbeat times), both in s.

    Raises:
        DatasetError: a malformed row (naming file and line) or non-increasing times.
    """
    times: list[float] = []
    pos: list[int] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise DatasetError(
                    f"{what}: {path}, line {n}: expected 'time position', got {line!r}"
                )
            t = _parse_time(fields[0], path, n, what)
            try:
                p = int(fields[1])
            except ValueError:
                raise DatasetError(
                    f"{what}: {path}, line {n}: beat position {fields[1]!r} is not an integer"
                ) from None
            if times and t <= times[-1]:
                raise DatasetError(f"{what}: {path}, line {n}: beat time {t} is not increasing")
            times.append(t)
            pos.append(p)
    beats = np.asarray(times, dtype=np.float64)
    return beats, beats[np.asarray(pos, dtype=int) == 1]


def _load_audio(path: Path, sr: int, what: str) -> np.ndarray:
    try:
        return load_audio(path, sr)
    except AudioError as exc:
        raise DatasetError(f"{what}: {exc}") from None


class MDBDrums(Dataset):
    """MDB Drums: 23 MedleyDB excerpts with drum onsets and beats.

    Layout under the root (``$MDB_DRUMS_PATH``): ``audio/full_mix/<t>_MIX.wav``,
    ``audio/drum_only/<t>_Drum.wav``, ``annotations/class/<t>_class.txt``,
    ``annotations/subclass/<t>_subclass.txt``, ``annotations/beats/<t>_MIX.beats``.
    Tracks are those with a class annotation file.

    Args:
        root: dataset folder; defaults to ``$MDB_DRUMS_PATH``.
        sr: sample rate in Hz of the returned audio.
        audio_source: ``full_mix`` (drums in the mix) or ``drum_only`` (the drum stem).
        classes: ``class`` (6 classes) or ``subclass`` (8 groups of the 21 subclasses).
        fold: which of the 3 folds is the test set (0, 1 or 2).

    Raises:
        DatasetError: missing root or annotations, a bad option, or a track without the
            chosen audio (naming the folder and the other source if that one exists).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        sr: int = 22050,
        audio_source: str = "full_mix",
        classes: str = "class",
        fold: int = 0,
    ) -> None:
        super().__init__(sr)
        self.root = dataset_root(root, "MDB_DRUMS_PATH", "MDB Drums")
        if audio_source not in AUDIO_DIRS:
            raise DatasetError(
                f"MDB Drums: audio_source must be one of {sorted(AUDIO_DIRS)}, got {audio_source!r}"
            )
        if classes not in ("class", "subclass"):
            raise DatasetError(f"MDB Drums: classes must be 'class' or 'subclass', got {classes!r}")
        self.audio_source = audio_source
        self.classes = classes
        self.fold = int(fold)
        ann = self.root / "annotations" / "class"
        if not ann.is_dir():
            raise DatasetError(f"MDB Drums: annotation folder {ann} does not exist")
        self._ids = sorted(p.name[: -len("_class.txt")] for p in ann.glob("*_class.txt"))
        if not self._ids:
            raise DatasetError(f"MDB Drums: no *_class.txt files in {ann}")
        self._splits = Splits(fold_splits(self._ids, self.fold))

    def __repr__(self) -> str:
        return (
            f"MDBDrums(root={str(self.root)!r}, sr={self.sr}, audio_source={self.audio_source!r}, "
            f"classes={self.classes!r}, fold={self.fold})"
        )

    @property
    def class_names(self) -> list[str]:
        """Onset keys every track has, in a fixed order."""
        table = CLASS_MAP if self.classes == "class" else SUBCLASS_TO_8
        return list(dict.fromkeys(table.values()))

    def track_ids(self, split: str) -> list[str]:
        return self._splits.ids(split)

    def audio_path(self, track_id: str, source: str | None = None) -> Path:
        folder, suffix = AUDIO_DIRS[source or self.audio_source]
        return self.root / "audio" / folder / f"{track_id}{suffix}"

    def load(self, track_id: str) -> Track:
        if track_id not in self._ids:
            raise DatasetError(f"MDB Drums: unknown track {track_id!r} under {self.root}")
        path = self.audio_path(track_id)
        if not path.is_file():
            other = next(s for s in AUDIO_DIRS if s != self.audio_source)
            hint = (
                f"; {other} audio exists: pass audio_source={other!r}"
                if self.audio_path(track_id, other).is_file()
                else ""
            )
            raise DatasetError(f"MDB Drums: {self.audio_source} audio {path} does not exist{hint}")
        audio = _load_audio(path, self.sr, "MDB Drums")
        if self.classes == "class":
            ann = self.root / "annotations" / "class" / f"{track_id}_class.txt"
            onsets = read_labelled_times(ann, CLASS_MAP, "MDB Drums", self.class_names)
        else:
            ann = self.root / "annotations" / "subclass" / f"{track_id}_subclass.txt"
            onsets = read_labelled_times(ann, SUBCLASS_TO_8, "MDB Drums", self.class_names)
        beats = downbeats = None
        beat_dir = self.root / "annotations" / "beats"
        for name in (f"{track_id}_MIX.beats", f"{track_id}_MIX_beats.txt"):
            if (beat_dir / name).is_file():
                beats, downbeats = read_beats(beat_dir / name, "MDB Drums")
                break
        split = self._splits.of(track_id)
        meta: dict[str, object] = {
            "split": split,
            "fold": self.fold,
            "audio_source": self.audio_source,
            "audio_path": str(path),
            "annotation_path": str(ann),
        }
        # the drum-only stem has no vocals: it is accompaniment (remix material); the full
        # mix's vocals are not annotated here, so it has no stems
        stems = None
        if self.audio_source == "drum_only":
            stems = {"vocals": np.zeros_like(audio), "accompaniment": audio.copy()}
        return Track(
            name=track_id,
            audio=audio,
            sr=self.sr,
            annotations={
                "stems": stems,
                "onsets": onsets,
                "beats": beats,
                "downbeats": downbeats,
            },
            meta=meta,
        )


ENST_LABELS = {
    "bd": "kick",
    "sd": "snare",
    "sd-": "snare",
    "rs": "snare",
    "cs": "snare",
    "chh": "hihat",
    "ohh": "hihat",
    "hh": "hihat",
    "lt": "tom",
    "lmt": "tom",
    "mt": "tom",
    "mtt": "tom",
    "ht": "tom",
    "lft": "tom",
    "tt": "tom",
    "c": "cymbal",
    "cr": "cymbal",
    "rc": "cymbal",
    "ch": "cymbal",
    "spl": "cymbal",
}
"""ENST-Drums label (numbered variants like ``rc3``, ``cr1`` drop their digits) -> onset key.

Rim shot (``rs``) and cross stick (``cs``) count as snare, as in ADT work on ENST; any
other label (``cb`` cowbell, ``sticks``, ``sweep``, ...) is ``other``.
"""

ENST_CLASSES = ("kick", "snare", "hihat", "tom", "cymbal", "other")
ENST_MIXES = ("wet_mix", "dry_mix")


class _ENSTLabels(dict):
    """Label table that accepts numbered variants and maps anything else to ``other``."""

    def __contains__(self, label: object) -> bool:
        return isinstance(label, str) and bool(label)

    def __getitem__(self, label: str) -> str:
        base = re.sub(r"\d+$", "", label)
        return ENST_LABELS.get(base, "other")


class ENSTDrums(Dataset):
    """ENST-Drums: three drummers, onsets annotated per hit.

    Layout under the root (``$ENST_DRUMS_PATH``): ``drummer_<k>/audio/<mix>/<name>.wav``
    and ``drummer_<k>/annotation/<name>.txt`` (rows ``time label``), k = 1, 2, 3. Track ids
    are ``drummer_<k>/<name>``. Splits: one drummer per fold (the usual 3-fold
    cross-validation by drummer): test = drummer ``fold+1``, validation = the next
    drummer, train = the remaining one. Onset keys are `ENST_CLASSES`.

    Args:
        root: dataset folder; defaults to ``$ENST_DRUMS_PATH``.
        sr: sample rate in Hz of the returned audio.
        mix: ``wet_mix`` or ``dry_mix``.
        fold: 0, 1 or 2.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        sr: int = 22050,
        mix: str = "wet_mix",
        fold: int = 0,
    ) -> None:
        super().__init__(sr)
        self.root = dataset_root(root, "ENST_DRUMS_PATH", "ENST-Drums")
        if mix not in ENST_MIXES:
            raise DatasetError(f"ENST-Drums: mix must be one of {ENST_MIXES}, got {mix!r}")
        if not 0 <= int(fold) < N_FOLDS:
            raise DatasetError(f"ENST-Drums: fold must be in 0..{N_FOLDS - 1}, got {fold}")
        self.mix = mix
        self.fold = int(fold)
        self._by_drummer: dict[int, list[str]] = {}
        for k in (1, 2, 3):
            ann = self.root / f"drummer_{k}" / "annotation"
            ids = sorted(f"drummer_{k}/{p.stem}" for p in ann.glob("*.txt")) if ann.is_dir() else []
            self._by_drummer[k] = ids
        if not any(self._by_drummer.values()):
            raise DatasetError(
                f"ENST-Drums: no drummer_<k>/annotation/*.txt files under {self.root}"
            )
        test, val = self.fold + 1, (self.fold + 1) % N_FOLDS + 1
        train = 6 - test - val
        self._splits = Splits(
            {
                "train": self._by_drummer[train],
                "validation": self._by_drummer[val],
                "test": self._by_drummer[test],
            }
        )

    def __repr__(self) -> str:
        return (
            f"ENSTDrums(root={str(self.root)!r}, sr={self.sr}, mix={self.mix!r}, fold={self.fold})"
        )

    def track_ids(self, split: str) -> list[str]:
        return self._splits.ids(split)

    def load(self, track_id: str) -> Track:
        drummer, _, name = track_id.partition("/")
        if not any(track_id in ids for ids in self._by_drummer.values()):
            raise DatasetError(f"ENST-Drums: unknown track {track_id!r} under {self.root}")
        path = self.root / drummer / "audio" / self.mix / f"{name}.wav"
        audio = _load_audio(path, self.sr, "ENST-Drums")
        ann = self.root / drummer / "annotation" / f"{name}.txt"
        onsets = read_labelled_times(ann, _ENSTLabels(), "ENST-Drums", list(ENST_CLASSES))
        split = self._splits.of(track_id)
        meta: dict[str, object] = {
            "split": split,
            "drummer": drummer,
            "mix": self.mix,
            "audio_path": str(path),
        }
        return Track(track_id, audio, self.sr, {"onsets": onsets}, meta)
