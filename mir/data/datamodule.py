"""The DataModule: random training excerpts with per-task targets and label masks,
and whole tracks for validation and test."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pytorch_lightning as pl
import scipy.signal
import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data import Dataset as TorchDataset

from mir.data.base import Dataset
from mir.data.index import MIXTURE, IndexEntry, build_index, read_window
from mir.data.track import Track
from mir.errors import DatasetError
from mir.grid import Grid, Window

log = logging.getLogger(__name__)


class LabelTask(Protocol):
    """What the data reads of a task (`mir.tasks.base.Task` is one): its grid, whether a
    track has its labels, its targets for a window, the stems it reads, and the shortest
    excerpt it trains on."""

    target_kind: str

    @property
    def grid(self) -> Grid: ...

    @property
    def min_crop_seconds(self) -> float: ...

    def has_labels(self, track: Track) -> bool: ...

    def targets(self, track: Track, window: Window) -> np.ndarray: ...

    def stems_needed(self) -> tuple[str, ...]: ...


class TrackSource:
    """Training tracks as `CropDataset` reads them: lengths, labels and windows of audio.

    `tracks` is either a list of `Track`s held in memory, or index entries
    (`mir.data.index.IndexEntry`) whose windows are read from disk.
    """

    def __init__(self, tracks: Sequence[Track] | Sequence[IndexEntry]) -> None:
        self.items: list[Track | IndexEntry] = list(tracks)
        self.lazy = bool(self.items) and isinstance(self.items[0], IndexEntry)

    def __len__(self) -> int:
        return len(self.items)

    def name(self, k: int) -> str:
        return self.items[k].name

    def sr(self, k: int) -> int:
        return self.items[k].sr

    def n_samples(self, k: int) -> int:
        it = self.items[k]
        return it.n_samples if isinstance(it, IndexEntry) else len(it.audio)

    def label_track(self, k: int) -> Track:
        """The track for `Task.has_labels` (annotations; stems non-silent or not)."""
        it = self.items[k]
        return it.label_track() if isinstance(it, IndexEntry) else it

    def lends(self, k: int, names: Sequence[str]) -> bool:
        """Whether track `k` can lend these remix stems: one present and not silent."""
        it = self.items[k]
        if isinstance(it, IndexEntry):
            return any(it.lends.get(n, False) for n in names)
        stems = it.get("stems", {})
        return any(n in stems and bool(np.any(stems[n])) for n in names)

    def read(self, k: int, signal: str, start: int, n: int) -> np.ndarray | None:
        """`n` samples of ``mixture`` or a stem from `start`, zero-padded; None if absent."""
        it = self.items[k]
        if isinstance(it, IndexEntry):
            return read_window(it, signal, start, n)
        x = it.audio if signal == MIXTURE else it.get("stems", {}).get(signal)
        if x is None:
            return None
        out = np.zeros(n, np.float32)
        seg = x[start : start + n]
        out[: len(seg)] = seg
        return out

    def window(self, k: int, start: int, n: int, stems: Sequence[str]) -> Track:
        """Track `k` cut to ``[start, start + n)``: audio and `stems` of the window, all
        annotations (times stay those of the whole track)."""
        a = self.label_track(k)
        audio = self.read(k, MIXTURE, start, n)
        assert audio is not None
        cut = {s: x for s in stems if (x := self.read(k, s, start, n)) is not None}
        for s, x in cut.items():
            if not np.any(x) and self.lends(k, [s]):
                # a silent stretch of a stem that is not silent: a one-sample tail past the
                # window keeps `Task.has_labels` answering for the whole track
                cut[s] = np.append(x, np.float32(1.0))
        return dataclasses.replace(
            a, audio=audio, annotations={**a.annotations, "stems": cut or None}
        )


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
        tracks: Sequence[Track] | Sequence[IndexEntry] | TrackSource,
        tasks: Mapping[str, LabelTask],
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
        src = tracks if isinstance(tracks, TrackSource) else TrackSource(tracks)
        if not len(src):
            raise DatasetError("training split is empty")
        if not 0.0 <= remix_prob <= 1.0:
            raise DatasetError(f"remix_prob={remix_prob} must be in [0, 1]")
        self.src = src
        self.tasks = tasks
        self.crop_frames = crop_frames
        self.hop = hop
        self.length = length
        self.seed = seed
        self.epoch = 0
        self.gain_db = gain_db
        dur = np.array([src.n_samples(k) for k in range(len(src))], dtype=np.float64)
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
        lead = np.array([src.lends(k, self.remix_stems[:1]) for k in range(len(src))], bool)
        rest = np.array([src.lends(k, self.remix_stems[1:]) for k in range(len(src))], bool)
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
        self.stems = tuple(dict.fromkeys([s for t in tasks.values() for s in t.stems_needed()]))

    def __len__(self) -> int:
        return self.length

    @property
    def tracks(self) -> list[Track | IndexEntry]:
        """The training tracks: in memory, or index entries (both have ``name``)."""
        return self.src.items

    def _window(self, k: int, rng: np.random.Generator, n_samples: int | None = None) -> Window:
        """A random hop-aligned excerpt of `n_samples` (default: the crop) of track `k`."""
        if n_samples is None:
            n_samples = (self.crop_frames - 1) * self.hop
        max_start = max(0, (self.src.n_samples(k) - n_samples) // self.hop)
        start_frame = int(rng.integers(0, max_start + 1))
        return Window(start_frame, self.crop_frames, start_frame * self.hop, n_samples)

    def _remix(self, rng: np.random.Generator) -> tuple[Track, Window]:
        """A track-like excerpt: the lead remix stem of one track over the rest of another."""
        rest_dur = self.rest_dur.copy()
        while True:  # a lead track with another track that has the rest (one exists)
            a = int(rng.choice(len(self.src), p=self.lead_p))
            rest_dur[a] = 0.0
            if rest_dur.sum() > 0:
                break
            rest_dur = self.rest_dur.copy()
        b = int(rng.choice(len(self.src), p=_normalised(rest_dur)))
        n_samples = (self.crop_frames - 1) * self.hop
        shift = rng.uniform(-self.remix_semitones, self.remix_semitones)
        stems = {}
        for k, name in enumerate(self.remix_stems):
            src = a if k == 0 else b
            rate = 2.0 ** (shift / 12.0) if k == 0 and self.remix_semitones else 1.0
            need = int(round(n_samples * rate))
            start = self._window(src, rng, need).start_sample
            seg = self.src.read(src, name, start, need)
            if seg is None:
                seg = np.zeros(need, dtype=np.float32)
            if need != n_samples:  # read `rate` times the excerpt, play it back in the excerpt
                seg = scipy.signal.resample(seg, n_samples).astype(np.float32)
            if self.remix_gain_db:
                seg *= np.float32(10 ** (rng.uniform(-self.remix_gain_db, self.remix_gain_db) / 20))
            stems[name] = seg
        mix = np.sum([stems[k] for k in self.remix_stems], axis=0).astype(np.float32)
        name = f"remix:{self.src.name(a)}+{self.src.name(b)}"
        track = Track(name, mix, self.src.sr(a), {"stems": stems})
        return track, Window(0, self.crop_frames, 0, n_samples)

    def __getitem__(self, i: int | tuple[int, int]) -> dict:
        """Excerpt `i` of the current epoch, or of ``i = (epoch, index)``."""
        epoch, i = (int(i[0]), int(i[1])) if isinstance(i, tuple) else (self.epoch, int(i))
        rng = np.random.default_rng((self.seed, epoch, i))
        if self.remix_prob > 0 and rng.random() < self.remix_prob:
            track, window = self._remix(rng)
            labels = track
        else:
            k = int(rng.choice(len(self.src), p=self.p))
            w = self._window(k, rng)
            labels = self.src.label_track(k)  # has_labels answers for the whole track
            track = self.src.window(k, w.start_sample, w.n_samples, self.stems)
            window = Window(w.start_frame, w.n_frames, 0, w.n_samples)  # samples of the cut
        audio = track.audio
        gain = float(10 ** (rng.uniform(-self.gain_db, self.gain_db) / 20)) if self.gain_db else 1.0
        targets, mask = {}, {}
        for name, task in self.tasks.items():
            labelled = task.has_labels(labels)
            y = task.targets(track, window)
            if task.target_kind == "samples":
                y = y * gain
            targets[name] = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
            mask[name] = labelled
        return {"audio": torch.from_numpy(audio * gain), "targets": targets, "mask": mask}


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


class EpochSampler(Sampler[tuple[int, int]]):
    """The keys ``(epoch, i)`` of an epoch's excerpts, so that an excerpt depends on the
    epoch and its position only, in any worker process (persistent workers keep their
    copy of the dataset, which never sees `CropDataset.epoch` change)."""

    def __init__(self, dataset: CropDataset) -> None:
        self.n = len(dataset)
        self.epoch = dataset.epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, i) for i in range(self.n)])


def _limit_threads(_: int) -> None:
    torch.set_num_threads(1)  # a reader needs no intra-op threads; the trainer has the cores


class StreamedTracks(TorchDataset):
    """Whole tracks for validation and test, read one at a time when the loader asks."""

    def __init__(self, dm: MirDataModule, ids: Sequence[tuple[str, str]]) -> None:
        self.dm = dm
        self.ids = list(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Track:
        return self.dm.load(*self.ids[i])


def select_tracks(
    datasets: Mapping[str, Dataset],
    split: str,
    ids: Collection[str] | None = None,
    cap: int | None = None,
) -> list[tuple[str, str]]:
    """(dataset name, track id) of `split` (``train``, ``validation``, ``test`` or ``all``)
    over `datasets`, restricted to `ids` (``<id>`` or ``<dataset>/<id>``) when given, at
    most `cap` per dataset (the first by id)."""
    out = []
    for dname, ds in datasets.items():
        chosen = ds.split_ids(split)
        if ids is not None:
            chosen = [t for t in chosen if t in ids or f"{dname}/{t}" in ids]
        if cap is not None:
            chosen = chosen[: int(cap)]
        out += [(dname, t) for t in chosen]
    return out


class MirDataModule(pl.LightningDataModule):
    """Training excerpts and whole-track evaluation over one or several datasets.

    Args:
        datasets: name -> `Dataset`; tracks of all of them are pooled (ids prefixed
            with the dataset name), and each task's loss is masked on tracks that lack
            its labels.
        crop_seconds: training excerpt length in s.
        batch_size: excerpts per batch.
        num_workers: DataLoader worker processes for training; None: half the CPUs (at
            most 8) when training on a GPU, else 0. Workers persist across epochs, and
            batches go to pinned memory on a GPU.
        steps_per_epoch: batches per training epoch.
        seed: seed of the excerpt sampling.
        gain_db: random gain of +-`gain_db` dB applied to mixture and stems alike.
        remix_prob: probability that a training excerpt is remixed from the stems of two
            tracks (see `CropDataset`); 0 turns remixing off.
        remix_stems: stems that sum to a mixture; the first comes from one track, the
            rest from another.
        remix_gain_db: independent random gain (+- dB) of each remixed stem.
        remix_semitones: random pitch shift (+- semitones) of the remixed lead stem.
        max_eval_tracks: cap on validation/test tracks per dataset, the first by id
            (None = all).
        tags: the datasets' tag vocabulary (read by the tagging task's config).
        ids: only these tracks, in every split (``<id>`` or ``<dataset>/<id>``).
        lazy: stream training excerpts from disk through the track index
            (`mir.data.index`); False holds the training tracks in memory.
        skip_bad: leave tracks whose files cannot be read out of the index, with one
            warning listing them, instead of stopping with an error naming the file.
        decode: decode every track once into ``$MIR_CACHE/decoded`` (mono float wav at the
            front end's rate), even datasets whose wav/flac files can be read directly:
            faster excerpts (no resampling, no summing of stems) for more disk.

    Training excerpts are read window by window from disk, so memory and start-up do not
    grow with the corpus; validation and test read one whole track at a time. Under DDP
    each rank draws a disjoint share of every epoch's excerpts (Lightning's distributed
    sampler over `EpochSampler`), and each worker its own items of that share.

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
        num_workers: int | None = None,
        steps_per_epoch: int = 64,
        seed: int = 0,
        gain_db: float = 0.0,
        remix_prob: float = 0.0,
        remix_stems: Sequence[str] = ("vocals", "accompaniment"),
        remix_gain_db: float = 0.0,
        remix_semitones: float = 0.0,
        max_eval_tracks: int | None = None,
        tags: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        lazy: bool = True,
        skip_bad: bool = False,
        decode: bool = False,
    ) -> None:
        super().__init__()
        if not datasets and type(self) is MirDataModule:
            raise DatasetError("no dataset configured (data.datasets is empty)")
        self.datasets = dict(datasets)
        self.crop_seconds = float(crop_seconds)
        self.batch_size = int(batch_size)
        self.num_workers = None if num_workers is None else int(num_workers)
        self.steps_per_epoch = int(steps_per_epoch)
        self.seed = int(seed)
        self.gain_db = float(gain_db)
        self.remix_prob = float(remix_prob)
        self.remix_stems = tuple(remix_stems)
        self.remix_gain_db = float(remix_gain_db)
        self.remix_semitones = float(remix_semitones)
        self.max_eval_tracks = max_eval_tracks
        self.tags = list(tags) if tags is not None else None
        self.ids = None if ids is None else {str(i) for i in ids}
        self.lazy = bool(lazy)
        self.skip_bad = bool(skip_bad)
        self.decode = bool(decode)
        self._sampler: EpochSampler | None = None
        self._index: dict[str, list[IndexEntry]] = {}
        self.tasks: dict[str, LabelTask] = {}
        self.grid: Grid | None = None
        self._tracks: dict[str, list[Track]] = {}
        self._train: CropDataset | None = None

    def bind(self, tasks: Mapping[str, LabelTask], grid: Grid | None = None) -> None:
        """Attach the (front-end-bound) tasks whose targets the excerpts carry, and the grid
        of the excerpts (default: the one grid the tasks are bound to).

        Raises:
            ValueError: the tasks are bound to another grid than `grid`, or to several.
        """
        grids = {t.grid for t in tasks.values()}
        if grid is not None:
            grids.add(grid)
        if len(grids) > 1:
            raise ValueError(f"tasks and data on different grids: {sorted(map(str, grids))}")
        self.tasks = dict(tasks)
        self.grid = grid if grid is not None else next(iter(grids), None)

    def track_ids(self, split: str) -> list[tuple[str, str]]:
        """(dataset name, track id) of `split` (``train``, ``validation``, ``test`` or
        ``all``), restricted to `ids` when given, and for evaluation splits capped at
        `max_eval_tracks` per dataset."""
        cap = None if split == "train" else self.max_eval_tracks
        return select_tracks(self.datasets, split, self.ids, cap)

    def load(self, dname: str, track_id: str) -> Track:
        """One whole track, named ``<dataset>/<id>``, with only the stems the tasks read."""
        keep = {s for t in self.tasks.values() for s in t.stems_needed()}
        track = self.datasets[dname].load(track_id)
        track.name = f"{dname}/{track.name}"
        track.set("stems", {k: v for k, v in track.get("stems", {}).items() if k in keep} or None)
        return track

    def tracks(self, split: str) -> list[Track]:
        """All tracks of `split`, loaded into memory (small sets, tests, baselines);
        training and evaluation stream instead (`index`, `StreamedTracks`)."""
        if split not in self._tracks:
            keep = {s for t in self.tasks.values() for s in t.stems_needed()}
            if split == "train" and self.remix_prob > 0:
                keep |= set(self.remix_stems)
            out = []
            for dname, tid in self.track_ids(split):
                track = self.datasets[dname].load(tid)
                track.name = f"{dname}/{track.name}"
                track.set(
                    "stems", {k: v for k, v in track.get("stems", {}).items() if k in keep} or None
                )
                out.append(track)
            log.info("%s: %d tracks", split, len(out))
            self._tracks[split] = out
        return self._tracks[split]

    def index(self, split: str) -> list[IndexEntry]:
        """The track index of `split` across datasets (built once, cached on disk)."""
        if split in self._index:
            return self._index[split]
        by_ds: dict[str, list[str]] = {}
        for dname, tid in self.track_ids(split):
            by_ds.setdefault(dname, []).append(tid)
        out: list[IndexEntry] = []
        for dname, ids in by_ds.items():
            ds = self.datasets[dname]
            out += build_index(ds, dname, split, ids, self.skip_bad, decode=self.decode)
        log.info("%s: %d tracks, %.2f h", split, len(out), sum(e.duration for e in out) / 3600)
        self._index[split] = out
        return out

    @property
    def effective_crop_seconds(self) -> float:
        """`crop_seconds`, raised to the longest excerpt a task needs."""
        need = max((float(t.min_crop_seconds) for t in self.tasks.values()), default=0.0)
        return max(self.crop_seconds, need)

    def _grid(self) -> tuple[int, int]:
        """(hop, frames per training excerpt) on the bound grid."""
        grid = self.grid
        if grid is None:
            raise RuntimeError("MirDataModule.bind(tasks) must be called before setup")
        crop = self.effective_crop_seconds
        if crop > self.crop_seconds:
            log.info("training excerpts lengthened to %.2f s (a task's minimum)", crop)
        return grid.hop, grid.n_frames(int(round(crop * grid.sr)))

    def prepare_data(self) -> None:
        """Build (or check) the training index once, on the first process of the node
        (Lightning calls this before `setup` on every rank reads the cached index)."""
        if self.lazy:
            self.index("train")

    def setup(self, stage: str | None = None) -> None:
        if not self.tasks:
            raise RuntimeError("MirDataModule.bind(tasks) must be called before setup")
        if stage in (None, "fit"):
            hop, crop_frames = self._grid()
            self._train = CropDataset(
                self.index("train") if self.lazy else self.tracks("train"),
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
        if self._sampler is not None:
            self._sampler.set_epoch(epoch)

    def _on_gpu(self) -> bool:
        trainer = getattr(self, "trainer", None)
        root = getattr(getattr(trainer, "strategy", None), "root_device", None)
        return root is not None and root.type == "cuda"

    def _workers(self) -> int:
        if self.num_workers is not None:
            return int(self.num_workers)
        # by default, workers only where the main process has a GPU to feed: on CPU the
        # model's own threads use the cores
        return min(8, (os.cpu_count() or 1) // 2) if self._on_gpu() else 0

    def train_dataloader(self) -> DataLoader:
        assert self._train is not None
        self._sampler = EpochSampler(self._train)
        workers = self._workers()
        return DataLoader(
            self._train,
            batch_size=self.batch_size,
            sampler=self._sampler,
            num_workers=workers,
            collate_fn=collate_excerpts,
            pin_memory=self._on_gpu(),
            persistent_workers=workers > 0,
            worker_init_fn=_limit_threads,
        )

    def _eval_loader(self, split: str) -> DataLoader | list:
        ids = self.track_ids(split)
        if not ids:
            raise DatasetError(f"{split} split is empty")
        if split in self._tracks:  # already in memory (e.g. read by a test)
            data: Any = self._tracks[split]
        else:
            data = StreamedTracks(self, ids)
        return DataLoader(data, batch_size=1, shuffle=False, collate_fn=collate_tracks)

    def val_dataloader(self) -> DataLoader | list:
        return self._eval_loader("validation")

    def test_dataloader(self) -> DataLoader | list:
        return self._eval_loader("test")
