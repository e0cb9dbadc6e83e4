"""The DataModule: random training excerpts with per-task targets and label masks,
and whole tracks for validation and test."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from mir.data.base import Dataset
from mir.data.track import Track
from mir.errors import DatasetError
from mir.tasks.base import Task, Window

log = logging.getLogger(__name__)


class CropDataset(TorchDataset):
    """`length` random excerpts of `crop_frames` frames, drawn from `tracks` by seed.

    Each item is ``{"audio": (N,), "targets": {task: array}, "mask": {task: bool}}``;
    tracks shorter than the excerpt are zero-padded. Excerpts start on frame boundaries
    so frame targets and audio stay aligned. Tracks are drawn in proportion to duration.
    """

    def __init__(
        self,
        tracks: list[Track],
        tasks: Mapping[str, Task],
        crop_frames: int,
        hop: int,
        length: int,
        seed: int,
        gain_db: float = 0.0,
    ) -> None:
        if not tracks:
            raise DatasetError("training split is empty")
        self.tracks = tracks
        self.tasks = tasks
        self.crop_frames = crop_frames
        self.hop = hop
        self.length = length
        self.seed = seed
        self.epoch = 0
        self.gain_db = gain_db
        dur = np.array([len(t.audio) for t in tracks], dtype=np.float64)
        self.p = dur / dur.sum()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng((self.seed, self.epoch, i))
        track = self.tracks[rng.choice(len(self.tracks), p=self.p)]
        n_samples = (self.crop_frames - 1) * self.hop
        max_start = max(0, (len(track.audio) - n_samples) // self.hop)
        start_frame = int(rng.integers(0, max_start + 1))
        window = Window(start_frame, self.crop_frames, start_frame * self.hop, n_samples)
        audio = np.zeros(n_samples, dtype=np.float32)
        seg = track.audio[window.start_sample : window.start_sample + n_samples]
        audio[: len(seg)] = seg
        gain = float(10 ** (rng.uniform(-self.gain_db, self.gain_db) / 20)) if self.gain_db else 1.0
        targets, mask = {}, {}
        for name, task in self.tasks.items():
            labelled = task.has_labels(track)
            y = task.targets(track, window)
            if task.target_kind == "samples":
                y = y * gain
            targets[name] = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
            mask[name] = labelled
        return {"audio": torch.from_numpy(audio * gain), "targets": targets, "mask": mask}


def collate_excerpts(items: list[dict]) -> dict:
    return {
        "audio": torch.stack([it["audio"] for it in items]),
        "targets": {
            k: torch.stack([it["targets"][k] for it in items]) for k in items[0]["targets"]
        },
        "mask": {k: torch.tensor([it["mask"][k] for it in items]) for k in items[0]["mask"]},
    }


def collate_tracks(items: list[Track]) -> list[Track]:
    return items


class MirDataModule(pl.LightningDataModule):
    """Training excerpts and whole-track evaluation over one or several datasets.

    Args:
        datasets: name -> `Dataset`; tracks of all of them are pooled (ids prefixed
            with the dataset name), and each task's loss is masked on tracks that lack
            its labels.
        crop_seconds: training excerpt length in s.
        batch_size: excerpts per batch.
        num_workers: DataLoader worker processes for training.
        steps_per_epoch: batches per training epoch.
        seed: seed of the excerpt sampling.
        gain_db: random gain of +-`gain_db` dB applied to mixture and stems alike.
        max_eval_tracks: cap on validation/test tracks (None = all).
        tags: the datasets' tag vocabulary (read by the tagging task's config).
    """

    def __init__(
        self,
        datasets: Mapping[str, Dataset],
        crop_seconds: float = 5.0,
        batch_size: int = 8,
        num_workers: int = 0,
        steps_per_epoch: int = 64,
        seed: int = 0,
        gain_db: float = 0.0,
        max_eval_tracks: int | None = None,
        tags: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if not datasets:
            raise DatasetError("no dataset configured (data.datasets is empty)")
        self.datasets = dict(datasets)
        self.crop_seconds = float(crop_seconds)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.steps_per_epoch = int(steps_per_epoch)
        self.seed = int(seed)
        self.gain_db = float(gain_db)
        self.max_eval_tracks = max_eval_tracks
        self.tags = list(tags) if tags is not None else None
        self.tasks: dict[str, Task] = {}
        self._tracks: dict[str, list[Track]] = {}
        self._train: CropDataset | None = None

    def bind(self, tasks: Mapping[str, Task]) -> None:
        """Attach the (front-end-bound) tasks whose targets the excerpts carry."""
        self.tasks = dict(tasks)

    def tracks(self, split: str) -> list[Track]:
        """All tracks of `split` across datasets, loaded once and kept in memory."""
        if split not in self._tracks:
            keep = {s for t in self.tasks.values() for s in t.stems_needed()}
            out = []
            for dname, ds in self.datasets.items():
                ids = ds.track_ids(split)
                if split != "train" and self.max_eval_tracks is not None:
                    ids = ids[: int(self.max_eval_tracks)]
                for tid in ids:
                    track = ds.load(tid)
                    track.name = f"{dname}/{track.name}"
                    if track.stems is not None:
                        track.stems = {k: v for k, v in track.stems.items() if k in keep} or None
                    out.append(track)
            log.info("%s: %d tracks", split, len(out))
            self._tracks[split] = out
        return self._tracks[split]

    def _grid(self) -> tuple[int, int]:
        fe = next(iter(self.tasks.values())).fe
        return fe.hop, fe.n_frames(int(round(self.crop_seconds * fe.sr)))

    def setup(self, stage: str | None = None) -> None:
        if not self.tasks:
            raise RuntimeError("MirDataModule.bind(tasks) must be called before setup")
        if stage in (None, "fit"):
            hop, crop_frames = self._grid()
            self._train = CropDataset(
                self.tracks("train"),
                self.tasks,
                crop_frames,
                hop,
                self.steps_per_epoch * self.batch_size,
                self.seed,
                self.gain_db,
            )

    def set_epoch(self, epoch: int) -> None:
        """Draw a fresh set of excerpts each epoch (called by the module)."""
        if self._train is not None:
            self._train.epoch = int(epoch)

    def train_dataloader(self) -> DataLoader:
        assert self._train is not None
        return DataLoader(
            self._train,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate_excerpts,
            persistent_workers=False,
        )

    def _eval_loader(self, split: str) -> DataLoader:
        tracks = self.tracks(split)
        if not tracks:
            raise DatasetError(f"{split} split is empty")
        return DataLoader(tracks, batch_size=1, shuffle=False, collate_fn=collate_tracks)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
