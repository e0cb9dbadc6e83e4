"""MagnaTagATune (Law et al. 2009), auto-tagging of 29 s clips.

Conventions:
    * Layout under the root (``$MTAT_PATH``): ``annotations_final.csv`` (tab separated,
      quoted; columns ``clip_id``, 188 tag columns of 0/1, ``mp3_path``) and the audio
      at ``mp3/<mp3_path>`` (``<mp3_path>`` is ``<d>/<file>.mp3``, d in 0..9, a..f) or,
      if that is absent, at ``<root>/<mp3_path>``. The path column is taken as given, so
      any format libsndfile reads works.
    * Vocabulary: the `n_tags` most frequent tags of the CSV (ties kept in column order),
      or an explicit `tags` list (the config passes the standard top-50 of Choi et al.
      2016 / Won et al. 2020). `Track.tags` lists the vocabulary tags present, in
      vocabulary order; clips with none are kept, with ``tags == []``.
    * Splits by audio folder, the usual convention (Dieleman & Schrauwen 2014; Won et
      al. 2020's sota-music-tagging-models): folders 0-9, a, b (the first 12) train,
      c validation, d, e, f (the last 3) test. Won et al.'s split files also drop the
      clips with no top-50 tag (15,244 / 1,529 / 4,332 clips); we keep them, so our
      counts are larger.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from mir.audio import load_audio
from mir.data.base import Dataset, Splits, dataset_root
from mir.data.track import Track
from mir.errors import AudioError, DatasetError

CSV_NAME = "annotations_final.csv"
SPLIT_OF_FOLDER = {
    **{d: "train" for d in "0123456789ab"},
    "c": "validation",
    **{d: "test" for d in "def"},
}
"""First character of the audio folder -> split."""


class MagnaTagATune(Dataset):
    """MagnaTagATune clips with their top-n tags.

    Args:
        root: dataset folder; defaults to ``$MTAT_PATH``.
        sr: sample rate in Hz of the returned audio.
        n_tags: vocabulary size when `tags` is not given (top-n by frequency).
        tags: explicit vocabulary (each must be a CSV column); overrides `n_tags`.

    Attributes:
        tags: the vocabulary, a list of tag strings (the label index order).

    Raises:
        DatasetError: missing root or CSV, a malformed CSV row (naming the line), an
            unknown tag in `tags`, or a clip whose folder is not 0..f.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        sr: int = 22050,
        n_tags: int = 50,
        tags: list[str] | tuple[str, ...] | None = None,
    ) -> None:
        super().__init__(sr)
        self.root = dataset_root(root, "MTAT_PATH", "MagnaTagATune")
        self.csv_path = self.root / CSV_NAME
        columns, clips, labels = _read_csv(self.csv_path)
        counts = labels.sum(axis=0)
        if tags is None:
            if not 1 <= int(n_tags) <= len(columns):
                raise DatasetError(
                    f"MagnaTagATune: n_tags must be in 1..{len(columns)}, got {n_tags}"
                )
            order = np.argsort(-counts, kind="stable")[: int(n_tags)]
            self.tags = [columns[i] for i in order]
        else:
            missing = [t for t in tags if t not in columns]
            if missing:
                raise DatasetError(f"MagnaTagATune: tags not in {self.csv_path}: {missing}")
            self.tags = list(tags)
        index = {c: i for i, c in enumerate(columns)}
        self.tag_counts = {t: int(counts[index[t]]) for t in self.tags}
        vocab = labels[:, [index[t] for t in self.tags]]  # (clips, n_tags)
        self._clips: dict[str, tuple[str, list[str]]] = {}
        splits: dict[str, list[str]] = {s: [] for s in SPLIT_OF_FOLDER.values()}
        for (clip_id, mp3_path, line), row in zip(clips, vocab, strict=True):
            folder = mp3_path.replace("\\", "/").split("/")[0]
            split = SPLIT_OF_FOLDER.get(folder[:1]) if len(folder) == 1 else None
            if split is None:
                raise DatasetError(
                    f"MagnaTagATune: {self.csv_path}, line {line}: audio folder of "
                    f"{mp3_path!r} is not one of 0..9, a..f"
                )
            if clip_id in self._clips:
                raise DatasetError(
                    f"MagnaTagATune: {self.csv_path}, line {line}: duplicate clip_id {clip_id}"
                )
            self._clips[clip_id] = (
                mp3_path,
                [t for t, on in zip(self.tags, row, strict=True) if on],
            )
            splits[split].append(clip_id)
        self._splits = Splits(splits)

    def __repr__(self) -> str:
        return f"MagnaTagATune(root={str(self.root)!r}, sr={self.sr}, n_tags={len(self.tags)})"

    def track_ids(self, split: str) -> list[str]:
        return self._splits.ids(split)

    def audio_path(self, track_id: str) -> Path:
        mp3_path = self._entry(track_id)[0]
        under_mp3 = self.root / "mp3" / mp3_path
        return under_mp3 if under_mp3.is_file() else self.root / mp3_path

    def load(self, track_id: str) -> Track:
        mp3_path, tags = self._entry(track_id)
        path = self.audio_path(track_id)
        if not path.is_file():
            raise DatasetError(
                f"MagnaTagATune: audio for clip {track_id} not found at "
                f"{self.root / 'mp3' / mp3_path} or {self.root / mp3_path}"
            )
        try:
            audio = load_audio(path, self.sr)
        except AudioError as exc:
            raise DatasetError(f"MagnaTagATune: {exc}") from None
        folder = mp3_path.replace("\\", "/").split("/")[0]
        meta: dict[str, object] = {
            "split": SPLIT_OF_FOLDER[folder],
            "audio_path": str(path),
            "clip_id": track_id,
        }
        return Track(track_id, audio, self.sr, {"tags": list(tags)}, meta)

    def _entry(self, track_id: str) -> tuple[str, list[str]]:
        track_id = str(track_id)
        if track_id not in self._clips:
            raise DatasetError(f"MagnaTagATune: unknown clip {track_id!r} in {self.csv_path}")
        return self._clips[track_id]


def _read_csv(path: Path) -> tuple[list[str], list[tuple[str, str, int]], np.ndarray]:
    """Read ``annotations_final.csv``.

    Returns:
        (tag columns, [(clip_id, mp3_path, line number)], 0/1 labels of shape (clips, tags)).
    """
    if not path.is_file():
        raise DatasetError(f"MagnaTagATune: annotation file {path} does not exist")
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        rows = csv.reader(f, delimiter="\t")
        try:
            header = next(rows)
        except StopIteration:
            raise DatasetError(f"MagnaTagATune: {path} is empty") from None
        if len(header) < 3 or header[0] != "clip_id" or header[-1] != "mp3_path":
            raise DatasetError(
                f"MagnaTagATune: {path}, line 1: expected a tab-separated header "
                f"'clip_id <tags...> mp3_path', got {header[:2]}...{header[-1:]}"
            )
        columns = header[1:-1]
        clips: list[tuple[str, str, int]] = []
        labels: list[list[int]] = []
        for row in rows:
            line = rows.line_num
            if not row or row == [""]:
                continue
            if len(row) != len(header):
                raise DatasetError(
                    f"MagnaTagATune: {path}, line {line}: {len(row)} fields, expected {len(header)}"
                )
            values = row[1:-1]
            if any(v not in ("0", "1") for v in values):
                bad = next(v for v in values if v not in ("0", "1"))
                raise DatasetError(
                    f"MagnaTagATune: {path}, line {line}: tag value {bad!r} is not 0 or 1"
                )
            if not row[-1]:
                raise DatasetError(f"MagnaTagATune: {path}, line {line}: empty mp3_path")
            clips.append((row[0], row[-1], line))
            labels.append([v == "1" for v in values])
    arr = np.asarray(labels, dtype=bool).reshape(len(clips), len(columns))
    return columns, clips, arr
