"""The DataModule: random training excerpts with per-task targets and label masks,
and whole tracks for validation and test."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pytorch_lightning as pl
import scipy.signal
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

    Remixing (``remix_prob`` > 0): with that probability, an excerpt is a new mixture made
    of stems of different tracks: the first of `remix_stems` (the lead, e.g. vocals) from
    one track that has it (non-silent), the others from another track whose sum of them is
    non-silent, each at its own random position, summed. So a solo-singing recording
    (accompaniment silent) lends its vocals and an instrumental one (vocals silent) its
    accompaniment. Tracks are drawn in proportion to duration within each pool. Remixed
    stems get independent random gains of +-`remix_gain_db` dB, and the lead is
    pitch-shifted by a uniform +-`remix_semitones` (resampled, so its tempo changes with
    it). Such an excerpt is a `Track` with those stems only: tasks that read them
    (separation) get targets, every other task gets zero targets and a False mask, as for
    any track without its labels.
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
        remix_prob: float = 0.0,
        remix_stems: Sequence[str] = ("vocals", "accompaniment"),
        remix_gain_db: float = 0.0,
        remix_semitones: float = 0.0,
    ) -> None:
        if not tracks:
            raise DatasetError("training split is empty")
        if not 0.0 <= remix_prob <= 1.0:
            raise DatasetError(f"remix_prob={remix_prob} must be in [0, 1]")
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
        self.remix_stems = tuple(remix_stems)
        if len(self.remix_stems) < 2:
            raise DatasetError(f"remix_stems={list(remix_stems)} needs at least two stems")
        if remix_gain_db < 0 or not 0 <= remix_semitones < 12:
            raise DatasetError(
                f"remix_gain_db={remix_gain_db} must be >= 0 and remix_semitones="
                f"{remix_semitones} in [0, 12)"
            )
        self.remix_gain_db = float(remix_gain_db)
        self.remix_semitones = float(remix_semitones)
        # pools: tracks with the lead stem, tracks with the rest; a remix needs two tracks
        lead = np.array([_lends(t, self.remix_stems[:1]) for t in tracks], dtype=bool)
        rest = np.array([_lends(t, self.remix_stems[1:]) for t in tracks], dtype=bool)
        pairable = lead.any() and rest.any() and (lead | rest).sum() >= 2
        self.remix_prob = float(remix_prob) if pairable else 0.0
        if remix_prob > 0 and self.remix_prob == 0:
            log.warning(
                "remixing is off: no two training tracks give %s and %s",
                self.remix_stems[0],
                "+".join(self.remix_stems[1:]),
            )
        self.lead_p = _normalised(np.where(lead, dur, 0.0))
        self.rest_dur = np.where(rest, dur, 0.0)

    def __len__(self) -> int:
        return self.length

    def _window(
        self, track: Track, rng: np.random.Generator, n_samples: int | None = None
    ) -> Window:
        """A random hop-aligned excerpt of `n_samples` (default: the crop) of `track`."""
        if n_samples is None:
            n_samples = (self.crop_frames - 1) * self.hop
        max_start = max(0, (len(track.audio) - n_samples) // self.hop)
        start_frame = int(rng.integers(0, max_start + 1))
        return Window(start_frame, self.crop_frames, start_frame * self.hop, n_samples)

    def _remix(self, rng: np.random.Generator) -> tuple[Track, Window]:
        """A track-like excerpt: the lead remix stem of one track over the rest of another."""
        rest_dur = self.rest_dur.copy()
        while True:  # a lead track with another track that has the rest (one exists)
            a = int(rng.choice(len(self.tracks), p=self.lead_p))
            rest_dur[a] = 0.0
            if rest_dur.sum() > 0:
                break
            rest_dur = self.rest_dur.copy()
        b = int(rng.choice(len(self.tracks), p=_normalised(rest_dur)))
        n_samples = (self.crop_frames - 1) * self.hop
        shift = rng.uniform(-self.remix_semitones, self.remix_semitones)
        stems = {}
        for k, name in enumerate(self.remix_stems):
            src = self.tracks[a if k == 0 else b]
            assert src.stems is not None
            x = src.stems.get(name)
            if x is None:
                x = np.zeros(len(src.audio), np.float32)
            rate = 2.0 ** (shift / 12.0) if k == 0 and self.remix_semitones else 1.0
            need = int(round(n_samples * rate))
            start = self._window(src, rng, need).start_sample
            seg = np.zeros(need, dtype=np.float32)
            part = x[start : start + need]
            seg[: len(part)] = part
            if need != n_samples:  # read `rate` times the excerpt, play it back in the excerpt
                seg = scipy.signal.resample(seg, n_samples).astype(np.float32)
            if self.remix_gain_db:
                seg *= np.float32(10 ** (rng.uniform(-self.remix_gain_db, self.remix_gain_db) / 20))
            stems[name] = seg
        mix = np.sum([stems[k] for k in self.remix_stems], axis=0).astype(np.float32)
        name = f"remix:{self.tracks[a].name}+{self.tracks[b].name}"
        track = Track(name=name, audio=mix, sr=self.tracks[a].sr, stems=stems)
        return track, Window(0, self.crop_frames, 0, n_samples)

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng((self.seed, self.epoch, i))
        if self.remix_prob > 0 and rng.random() < self.remix_prob:
            track, window = self._remix(rng)
        else:
            track = self.tracks[rng.choice(len(self.tracks), p=self.p)]
            window = self._window(track, rng)
        n_samples = window.n_samples
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


def _lends(track: Track, names: Sequence[str]) -> bool:
    """Whether `track` can lend these remix stems: at least one present and not silent."""
    stems = track.stems or {}
    return any(n in stems and bool(np.any(stems[n])) for n in names)


def _normalised(w: np.ndarray) -> np.ndarray:
    return w / max(float(w.sum()), 1e-12)


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
        remix_prob: probability that a training excerpt is remixed from the stems of two
            tracks (see `CropDataset`); 0 turns remixing off.
        remix_stems: stems that sum to a mixture; the first comes from one track, the
            rest from another.
        remix_gain_db: independent random gain (+- dB) of each remixed stem.
        remix_semitones: random pitch shift (+- semitones) of the remixed lead stem.
        max_eval_tracks: cap on validation/test tracks (None = all).
        tags: the datasets' tag vocabulary (read by the tagging task's config).

    The excerpt is lengthened to the longest ``min_crop_seconds`` a task declares (the
    Jansson U-Net needs one 128-frame patch, ~12 s).

    Channel swap (a stereo augmentation of open-unmix and others) is not offered: every
    dataset yields the mono downmix, which swapping left and right leaves unchanged, so for
    our mono model it is the identity.
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
        remix_prob: float = 0.0,
        remix_stems: Sequence[str] = ("vocals", "accompaniment"),
        remix_gain_db: float = 0.0,
        remix_semitones: float = 0.0,
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
        self.remix_prob = float(remix_prob)
        self.remix_stems = tuple(remix_stems)
        self.remix_gain_db = float(remix_gain_db)
        self.remix_semitones = float(remix_semitones)
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
            if split == "train" and self.remix_prob > 0:
                keep |= set(self.remix_stems)
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

    @property
    def effective_crop_seconds(self) -> float:
        """`crop_seconds`, raised to the longest excerpt a task needs."""
        need = max(
            (float(getattr(t, "min_crop_seconds", 0.0)) for t in self.tasks.values()), default=0.0
        )
        return max(self.crop_seconds, need)

    def _grid(self) -> tuple[int, int]:
        fe = next(iter(self.tasks.values())).fe
        crop = self.effective_crop_seconds
        if crop > self.crop_seconds:
            log.info("training excerpts lengthened to %.2f s (a task's minimum)", crop)
        return fe.hop, fe.n_frames(int(round(crop * fe.sr)))

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
                self.remix_prob,
                self.remix_stems,
                self.remix_gain_db,
                self.remix_semitones,
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
