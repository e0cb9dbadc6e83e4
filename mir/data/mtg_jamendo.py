"""MTG-Jamendo (Bogdanov et al. 2019), auto-tagging of full-length Creative Commons tracks.

Conventions:
    * Layout under the root (``$MTG_JAMENDO_PATH``), as the mtg-jamendo-dataset
      repository and its download script leave it: split files
      ``data/splits/split-<k>/autotagging_<subset>-{train,validation,test}.tsv`` (k = 0..4;
      subset ``top50tags``, ``moodtheme``, ``genre``, ``instrument``, or ``all`` for the
      unprefixed ``autotagging-<split>.tsv``), and the audio under ``audio/`` (or
      `audio_dir`) at the TSV's ``PATH``, ``NN/<id>.mp3``; the low-quality download
      is ``NN/<id>.low.mp3``.
    * TSV format: tab separated, header ``TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS``;
      each row has the five fields and then one field per tag (``genre---rock``,
      ``instrument---piano``, ``mood/theme---happy``: category, three dashes, name). Tags are
      kept whole, with their category prefix.
    * Vocabulary: an explicit `tags` list (the configs pass the official
      ``data/tags/top50.txt`` or ``moodtheme.txt`` in their order), or else every tag
      found in the three split files, sorted. `Track.tags` lists the vocabulary tags of a
      track in vocabulary order; tags outside it are dropped from `Track.tags` (kept in
      ``meta["all_tags"]``).
    * Splits: the official split files, one of the five (`split_index`); track ids are
      the TSV's ``TRACK_ID`` (``track_0000214``), sorted. The splits are
      artist-disjoint by construction of the dataset; a track listed in two splits, or
      twice in one, is an error.
    * Audio is the full track (MTG-Jamendo tracks are whole songs, typically 3-5 min); the
      front end reads whatever libsndfile reads (mp3 needs libsndfile >= 1.1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mir.audio import load_audio
from mir.data.base import SPLITS, Dataset, Splits, dataset_root
from mir.data.track import Track
from mir.errors import AudioError, DatasetError

SUBSETS = {
    "top50tags": "autotagging_top50tags",
    "moodtheme": "autotagging_moodtheme",
    "genre": "autotagging_genre",
    "instrument": "autotagging_instrument",
    "all": "autotagging",
}
"""Subset name -> split-file stem (``<stem>-<split>.tsv``)."""

N_SPLITS = 5
HEADER = ("TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS")
AUDIO_FORMATS = ("auto", "mp3", "low")
"""``mp3``: ``<id>.mp3``; ``low``: ``<id>.low.mp3``; ``auto``: the first of the two found."""


class MTGJamendo(Dataset):
    """MTG-Jamendo tracks with their tags, on the official splits.

    Args:
        root: the mtg-jamendo-dataset folder (with ``data/splits``); defaults to
            ``$MTG_JAMENDO_PATH``.
        sr: sample rate in Hz of the returned audio.
        subset: one of `SUBSETS`.
        split_index: which of the five official splits (0..4).
        audio_dir: folder of the ``NN/`` audio folders, relative to `root` or absolute.
        audio_format: ``auto``, ``mp3`` or ``low`` (see `AUDIO_FORMATS`).
        tags: explicit vocabulary; None = every tag in the split files, sorted.

    Attributes:
        tags: the vocabulary, a list of tag strings (the label index order).

    Raises:
        DatasetError: missing root, split folder or split file, a malformed TSV (naming
            the file and line), a duplicate track, or a bad option.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        sr: int = 22050,
        subset: str = "top50tags",
        split_index: int = 0,
        audio_dir: str | os.PathLike[str] = "audio",
        audio_format: str = "auto",
        tags: list[str] | tuple[str, ...] | None = None,
    ) -> None:
        super().__init__(sr)
        self.root = dataset_root(root, "MTG_JAMENDO_PATH", "MTG-Jamendo")
        if subset not in SUBSETS:
            raise DatasetError(
                f"MTG-Jamendo: subset must be one of {', '.join(SUBSETS)}, got {subset!r}"
            )
        if not 0 <= int(split_index) < N_SPLITS:
            raise DatasetError(
                f"MTG-Jamendo: split_index must be in 0..{N_SPLITS - 1}, got {split_index}"
            )
        if audio_format not in AUDIO_FORMATS:
            raise DatasetError(
                f"MTG-Jamendo: audio_format must be one of {', '.join(AUDIO_FORMATS)}, "
                f"got {audio_format!r}"
            )
        self.subset = subset
        self.split_index = int(split_index)
        self.audio_format = audio_format
        self.audio_root = self.root / Path(audio_dir)
        split_dir = self.root / "data" / "splits" / f"split-{self.split_index}"
        if not split_dir.is_dir():
            raise DatasetError(
                f"MTG-Jamendo: split folder {split_dir} does not exist (is {self.root} the "
                "mtg-jamendo-dataset folder, with data/splits/?)"
            )
        self._rows: dict[str, _Row] = {}
        splits: dict[str, list[str]] = {}
        for split in SPLITS:
            path = split_dir / f"{SUBSETS[subset]}-{split}.tsv"
            rows = _read_tsv(path)
            for row in rows:
                if row.track_id in self._rows:
                    prev = self._rows[row.track_id]
                    raise DatasetError(
                        f"MTG-Jamendo: {path}, line {row.line}: track {row.track_id} is "
                        f"already listed in {prev.source}, line {prev.line}"
                    )
                self._rows[row.track_id] = row
            splits[split] = [r.track_id for r in rows]
        self._splits = Splits(splits)
        found = sorted({t for r in self._rows.values() for t in r.tags})
        self.tags = list(tags) if tags is not None else found
        if len(set(self.tags)) != len(self.tags):
            raise DatasetError("MTG-Jamendo: the tag vocabulary has duplicates")
        vocab = set(self.tags)
        self.tag_counts = {t: 0 for t in self.tags}
        for r in self._rows.values():
            for t in r.tags:
                if t in vocab:
                    self.tag_counts[t] += 1

    def __repr__(self) -> str:
        return (
            f"MTGJamendo(root={str(self.root)!r}, sr={self.sr}, subset={self.subset!r}, "
            f"split_index={self.split_index}, n_tags={len(self.tags)})"
        )

    def track_ids(self, split: str) -> list[str]:
        return self._splits.ids(split)

    def audio_path(self, track_id: str) -> Path:
        """The track's audio file per `audio_format` (the ``mp3`` name when none exists)."""
        rel = Path(self._row(track_id).path)
        full = self.audio_root / rel
        low = full.with_name(rel.name[: -len(rel.suffix)] + ".low" + rel.suffix)
        if self.audio_format == "mp3":
            return full
        if self.audio_format == "low":
            return low
        return low if not full.is_file() and low.is_file() else full

    def load(self, track_id: str) -> Track:
        row = self._row(track_id)
        path = self.audio_path(track_id)
        if not path.is_file():
            raise DatasetError(
                f"MTG-Jamendo: audio for {track_id} not found at {path} "
                f"(audio_format={self.audio_format!r}, audio folder {self.audio_root})"
            )
        try:
            audio = load_audio(path, self.sr)
        except AudioError as exc:
            raise DatasetError(f"MTG-Jamendo: {exc}") from None
        present = set(row.tags)
        split = self._splits.of(track_id)
        meta: dict[str, object] = {
            "split": split,
            "split_index": self.split_index,
            "artist_id": row.artist_id,
            "album_id": row.album_id,
            "duration": row.duration,
            "all_tags": list(row.tags),
            "audio_path": str(path),
        }
        return Track(
            name=track_id,
            audio=audio,
            sr=self.sr,
            annotations={"tags": [t for t in self.tags if t in present]},
            meta=meta,
        )

    def _row(self, track_id: str) -> _Row:
        if track_id not in self._rows:
            raise DatasetError(f"MTG-Jamendo: unknown track {track_id!r} under {self.root}")
        return self._rows[track_id]


@dataclass(frozen=True)
class _Row:
    """One TSV row and where it was read."""

    track_id: str
    artist_id: str
    album_id: str
    path: str
    duration: float
    tags: tuple[str, ...]
    source: Path
    line: int


def _read_tsv(path: Path) -> list[_Row]:
    """Parse one split file.

    Raises:
        DatasetError: missing file, wrong header, a row with fewer than 6 fields, an empty
            path, a bad duration, a tag without ``---``, or a track twice in the file.
    """
    if not path.is_file():
        raise DatasetError(f"MTG-Jamendo: split file {path} does not exist")
    rows: list[_Row] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        lines = f.read().splitlines()
    if not lines:
        raise DatasetError(f"MTG-Jamendo: {path} is empty")
    header = tuple(lines[0].split("\t"))
    if header[: len(HEADER)] != HEADER:
        raise DatasetError(
            f"MTG-Jamendo: {path}, line 1: expected the tab-separated header "
            f"{' '.join(HEADER)}, got {' '.join(header)!r}"
        )
    for n, text in enumerate(lines[1:], start=2):
        if not text.strip():
            continue
        fields = text.split("\t")
        if len(fields) < len(HEADER):
            raise DatasetError(
                f"MTG-Jamendo: {path}, line {n}: {len(fields)} tab-separated fields, expected "
                f"{' '.join(HEADER[:-1])} and at least one tag"
            )
        track_id, artist_id, album_id, rel, dur = (s.strip() for s in fields[:5])
        if not track_id or not rel:
            raise DatasetError(f"MTG-Jamendo: {path}, line {n}: empty TRACK_ID or PATH")
        try:
            duration = float(dur)
        except ValueError:
            raise DatasetError(
                f"MTG-Jamendo: {path}, line {n}: DURATION {dur!r} is not a number"
            ) from None
        tags = tuple(t.strip() for t in fields[5:] if t.strip())
        bad = [t for t in tags if "---" not in t]
        if bad:
            raise DatasetError(
                f"MTG-Jamendo: {path}, line {n}: tag {bad[0]!r} is not 'category---name'"
            )
        if track_id in seen:
            raise DatasetError(
                f"MTG-Jamendo: {path}, line {n}: track {track_id} already on line {seen[track_id]}"
            )
        seen[track_id] = n
        rows.append(_Row(track_id, artist_id, album_id, rel, duration, tags, path, n))
    return rows
