"""The dataset interface: named splits of track ids, and a loader for one track."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Container, Iterable, Mapping, Sequence
from pathlib import Path

from mir.data.track import Track
from mir.errors import DatasetError

SPLITS = ("train", "validation", "test")
ALL = "all"
"""Pseudo-split: every track of the three splits."""


class Dataset(ABC):
    """A collection of annotated tracks.

    Subclasses read one dataset's own layout and return `Track`s at the front end's
    sample rate. Splits are named ``train``, ``validation`` and ``test``.

    Args:
        sr: sample rate in Hz that `load` resamples audio to.
    """

    def __init__(self, sr: int) -> None:
        self.sr = int(sr)

    @abstractmethod
    def track_ids(self, split: str) -> list[str]:
        """Ids of the tracks in `split` (one of ``SPLITS``), sorted."""

    @abstractmethod
    def load(self, track_id: str) -> Track:
        """Read one track with all the annotations the dataset has."""

    def split_ids(self, split: str) -> list[str]:
        """`track_ids`, or with ``split="all"`` the sorted ids of every split."""
        if split == ALL:
            return sorted({t for s in SPLITS for t in self.track_ids(s)})
        return self.track_ids(split)

    def signals(self, track_id: str) -> Mapping[str, Sequence[tuple[Path, float]]] | None:
        """Where the track's audio lives, for windowed reads (`mir.data.index`).

        Returns:
            ``mixture`` and each stem -> a sum of (audio file, gain) terms, averaged over
            channels and resampled to `sr` as `load` does (an empty sum is a stem known to
            be silent); or None (the default) when the audio is not plain files that
            libsndfile can seek in (mp3, ``.stem.mp4``, audio computed by the loader):
            such a dataset is decoded once through `load` into a cache instead.
        """
        return None

    def annotations(self, track_id: str) -> Track:
        """The track's annotations and metadata without reading its audio (as
        `Track.without_audio` gives: ``audio`` empty, no ``stems``). Datasets that implement
        `signals` implement this too; the default reads the track through `load`."""
        return self.load(track_id).without_audio()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sr={self.sr})"


def check_split(split: str, allow_all: bool = False) -> str:
    """`split` if it is one of `SPLITS` (or ``all`` where `allow_all`).

    Raises:
        DatasetError: any other name.
    """
    if split not in SPLITS and not (allow_all and split == ALL):
        raise DatasetError(
            f"unknown split {split!r}; expected one of {', '.join(SPLITS)} (or {ALL})"
        )
    return split


class Splits:
    """Which track ids each split holds, and the split of a track id.

    Args:
        ids: split name (of `SPLITS`) -> track ids; a missing split is empty. An id listed
            in two splits belongs to the first of `SPLITS` that lists it.
    """

    def __init__(self, ids: Mapping[str, Iterable[str]]) -> None:
        self._ids = {s: sorted(ids.get(s, ())) for s in SPLITS}
        self._split: dict[str, str] = {}
        for s in SPLITS:
            for t in self._ids[s]:
                self._split.setdefault(t, s)

    def ids(self, split: str, present: Container[str] | None = None) -> list[str]:
        """The sorted ids of `split`, only those in `present` when given.

        Raises:
            DatasetError: `split` is not one of `SPLITS`.
        """
        check_split(split)
        return [t for t in self._ids[split] if present is None or t in present]

    def of(self, track_id: str) -> str | None:
        """The split holding `track_id`, or None where no split lists it."""
        return self._split.get(track_id)


# Environment variable -> the dataset's key under `data.datasets` in conf/data/*.yaml.
CONFIG_KEYS = {
    "BACH10_PATH": "bach10",
    "ENST_DRUMS_PATH": "enst_drums",
    "MDB_DRUMS_PATH": "mdb_drums",
    "MEDLEYDB_PATH": "medleydb",
    "MTAT_PATH": "magnatagatune",
    "MTG_JAMENDO_PATH": "mtg_jamendo",
    "MUSDB_PATH": "musdb18",
    "VOCADITO_PATH": "vocadito",
}


def dataset_root(root: str | os.PathLike[str] | None, env: str, name: str) -> Path:
    """Resolve a dataset root from an argument or an environment variable, and check it exists.

    Raises:
        DatasetError: neither is set, or the directory does not exist.
    """
    value = root if root not in (None, "") else os.environ.get(env)
    if value in (None, ""):
        key = CONFIG_KEYS.get(env, "<name>")  # the override Hydra accepts
        raise DatasetError(
            f"{name}: no dataset path given; set data.datasets.{key}.root=<folder> or ${env}"
        )
    path = Path(str(value)).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{name}: dataset path {path} does not exist or is not a directory")
    return path
