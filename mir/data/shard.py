"""Sharded streaming for clusters and object storage: WebDataset tar shards.

Write the shards of a dataset split, then train from them:

    python -m mir.data.shard data=musdb18 split=train out=shards/musdb [tracks_per_shard=16]
    python -m mir.train task=separation data=shards \\
        data.urls='shards/musdb/train-{000000..000009}.tar' \\
        data.val_urls='shards/musdb/validation-000000.tar'

Conventions:
    * One sample per track: ``track.json`` (format version, name, rate, metadata and
      `Track.annotations` by kind, as JSON; arrays keep their dtype), ``audio.npy`` (the
      mono mixture, float32 at the front end's rate) and ``arrays.npz`` (the arrays of
      over `_INLINE` elements, such as stems, referenced from the JSON), read with
      ``allow_pickle=False``: a shard runs no code. Version 1 samples (one JSON field per
      kind and ``stems.npz``) are still read.
    * Shards are named ``<split>-NNNNNN.tar``; each is written to a temporary name and
      renamed when complete.
    * `urls` is anything WebDataset opens: a brace pattern of local paths, ``file:``,
      ``http(s):`` (through curl), ``pipe:<command>`` (e.g. ``pipe:aws s3 cp s3://b/x.tar -``).
    * Training streams the shards: each rank, then each loader worker, takes its share of
      the shards (`webdataset.split_by_node`, `split_by_worker`), shards are shuffled by
      seed and epoch, each track gives excerpts in proportion to its duration (one per
      crop length, at least one) through the same code as the index path, and the
      excerpts are shuffled through a buffer of `shuffle_buffer`. An epoch is one pass over
      the shards (``steps_per_epoch`` is not used); remixing across tracks is not offered.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, IterableDataset

from mir.configs import CONF
from mir.data.datamodule import (
    CropDataset,
    MirDataModule,
    TrackSource,
    collate_excerpts,
    collate_tracks,
)
from mir.data.track import Track
from mir.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

# -- encoding ---------------------------------------------------------------------------------


SHARD_VERSION = 2
"""2: annotations keyed by kind (`Track.annotations`); 1 had one JSON field per kind."""

_INLINE = 4096  # arrays up to this many elements live in track.json, larger ones in arrays.npz


def _encode(x: Any, arrays: dict[str, np.ndarray]) -> Any:
    """A JSON-ready form of an annotation value: dicts (string keys), lists, tuples,
    strings, numbers, None and arrays; large arrays go to `arrays` by reference."""
    if isinstance(x, np.ndarray):
        if x.size > _INLINE:
            key = f"a{len(arrays)}"
            arrays[key] = x
            return {"__npz__": key}
        return {"__array__": x.tolist(), "dtype": x.dtype.str, "shape": list(x.shape)}
    if isinstance(x, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in x]}
    if isinstance(x, list):
        return [_encode(v, arrays) for v in x]
    if isinstance(x, dict):
        return {str(k): _encode(v, arrays) for k, v in x.items()}
    if isinstance(x, np.generic):
        return x.item()
    return x


def _decode(x: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(x, list):
        return [_decode(v, arrays) for v in x]
    if not isinstance(x, dict):
        return x
    if "__npz__" in x:
        return arrays[x["__npz__"]]
    if "__array__" in x:
        return np.asarray(x["__array__"], dtype=np.dtype(x["dtype"])).reshape(x["shape"])
    if "__tuple__" in x:
        return tuple(_decode(v, arrays) for v in x["__tuple__"])
    return {k: _decode(v, arrays) for k, v in x.items()}


def encode_track(track: Track, index: int) -> dict[str, Any]:
    """A WebDataset sample of one track (see the module docstring)."""
    arrays: dict[str, Any] = {}  # name -> array (np.savez keywords)
    ann = {
        "version": SHARD_VERSION,
        "name": track.name,
        "sr": track.sr,
        "annotations": _encode(track.annotations, arrays),
        "meta": json.loads(json.dumps(track.meta, default=str)),
    }
    audio = io.BytesIO()
    np.save(audio, np.asarray(track.audio, np.float32), allow_pickle=False)
    packed = io.BytesIO()
    np.savez(packed, **arrays)
    return {
        "__key__": f"{index:08d}",
        "track.json": json.dumps(ann).encode(),
        "audio.npy": audio.getvalue(),
        "arrays.npz": packed.getvalue() if arrays else b"",
    }


def decode_track(sample: Mapping[str, Any]) -> Track:
    """The `Track` of a sample written by `encode_track` (or by version 1)."""
    where = f"{sample.get('__url__', '?')}:{sample.get('__key__', '?')}"
    try:
        ann = json.loads(sample["track.json"])
        audio = np.load(io.BytesIO(sample["audio.npy"]), allow_pickle=False)
        arrays: dict[str, np.ndarray] = {}
        for field in ("arrays.npz", "stems.npz"):
            if sample.get(field):
                with np.load(io.BytesIO(sample[field]), allow_pickle=False) as z:
                    arrays.update({k: z[k] for k in z.files})
        if ann.get("version", 1) == 1:
            annotations = _legacy_annotations(ann, arrays if sample.get("stems.npz") else None)
        else:
            annotations = _decode(ann["annotations"], arrays)
    except (KeyError, ValueError, OSError, TypeError) as exc:
        raise DatasetError(f"shard sample {where}: cannot decode ({exc})") from None
    return Track(
        ann["name"], audio.astype(np.float32, copy=False), int(ann["sr"]), annotations, ann["meta"]
    )


def _legacy_annotations(ann: dict[str, Any], stems: dict[str, np.ndarray] | None) -> dict:
    """Version 1 samples: one JSON field per kind, f0 voices under ``f0``, stems apart."""

    def a(x: Any) -> np.ndarray | None:
        return None if x is None else np.asarray(x, dtype=np.float64)

    mf0 = ann["multif0"]
    onsets = ann["onsets"]
    return {
        "stems": stems,
        **{k: (a(t), a(f)) for k, (t, f) in ann["f0"].items()},
        "multif0": None if mf0 is None else (a(mf0[0]), [a(f) for f in mf0[1]]),
        "onsets": None if onsets is None else {k: a(v) for k, v in onsets.items()},
        "beats": a(ann["beats"]),
        "downbeats": a(ann["downbeats"]),
        "tags": ann["tags"],
    }


def write_shards(
    tracks: Iterator[Track], out: Path, split: str, tracks_per_shard: int = 16
) -> list[Path]:
    """Write `tracks` (read one at a time) as ``<out>/<split>-NNNNNN.tar``, each shard
    atomically; returns the shard paths."""
    import webdataset as wds
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    writer, tmp, count = None, None, 0

    def close() -> None:
        if writer is not None and tmp is not None:
            writer.close()
            os.replace(tmp, paths[-1])

    try:
        for i, track in enumerate(tqdm(tracks, desc=f"shards {split}", unit="track", delay=2.0)):
            if writer is None or count == tracks_per_shard:
                close()
                paths.append(out / f"{split}-{len(paths):06d}.tar")
                tmp = paths[-1].with_name(f".{paths[-1].name}.{os.getpid()}.tmp")
                writer, count = wds.TarWriter(str(tmp)), 0
            writer.write(encode_track(track, i))
            count += 1
        close()
    except BaseException:
        if tmp is not None and tmp.exists():
            tmp.unlink()
        raise
    return paths


# -- reading ----------------------------------------------------------------------------------


def _pipeline(urls: str | Sequence[str], seed: int, shuffle_shards: bool) -> Any:
    import webdataset as wds

    n = len(wds.shardlists.expand_urls(urls)) if isinstance(urls, str) else len(urls)
    return wds.WebDataset(
        urls,
        shardshuffle=n if shuffle_shards else False,
        nodesplitter=wds.split_by_node,
        workersplitter=wds.split_by_worker,
        seed=seed,
        empty_check=False,
    )


class ShardExcerpts(IterableDataset):
    """Training excerpts streamed from shards (see the module docstring)."""

    def __init__(
        self,
        urls: str | Sequence[str],
        tasks: Mapping[str, Any],
        crop_frames: int,
        hop: int,
        seed: int,
        gain_db: float = 0.0,
        shuffle_buffer: int = 128,
    ) -> None:
        self.urls = urls
        self.tasks = tasks
        self.crop_frames = crop_frames
        self.hop = hop
        self.seed = seed
        self.gain_db = gain_db
        self.shuffle_buffer = int(shuffle_buffer)
        self.epoch = 0

    def _excerpts(self, samples: Iterator[dict]) -> Iterator[dict]:
        n_samples = (self.crop_frames - 1) * self.hop
        for sample in samples:
            track = decode_track(sample)
            n = max(1, round(len(track.audio) / n_samples))
            crops = CropDataset(
                TrackSource([track]),
                self.tasks,
                self.crop_frames,
                self.hop,
                n,
                zlib.crc32(f"{self.seed}:{track.name}".encode()),
                self.gain_db,
            )
            for i in range(n):
                yield crops[(self.epoch, i)]

    def __iter__(self) -> Iterator[dict]:
        import webdataset as wds

        seed = self.seed * 1_000_003 + self.epoch
        stream = _pipeline(self.urls, seed, True).compose(self._excerpts)
        if self.shuffle_buffer > 1:
            stream = stream.compose(
                wds.filters.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, seed=seed)
            )
        return iter(stream)


class ShardTracks(IterableDataset):
    """Whole tracks streamed from shards, for validation and test (split by rank and
    worker, not shuffled)."""

    def __init__(self, urls: str | Sequence[str]) -> None:
        self.urls = urls

    def __iter__(self) -> Iterator[Track]:
        return (decode_track(s) for s in _pipeline(self.urls, 0, False))


class ShardDataModule(MirDataModule):
    """`MirDataModule` over WebDataset shards written by ``python -m mir.data.shard``.

    Args:
        urls: training shards (brace pattern or list; local paths or URLs).
        val_urls: validation shards, or None for no validation.
        test_urls: test shards, or None for no test.
        shuffle_buffer: excerpts held in the shuffle buffer of each loader worker.
        **kwargs: the other `MirDataModule` settings (crop, batch size, workers...).
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        val_urls: str | Sequence[str] | None = None,
        test_urls: str | Sequence[str] | None = None,
        shuffle_buffer: int = 128,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("datasets", None)
        super().__init__(datasets={}, **kwargs)
        if not urls:
            raise ConfigError("data=shards needs data.urls=<shard pattern>")
        self.urls = urls
        self.split_urls = {"train": urls, "validation": val_urls, "test": test_urls}
        self.shuffle_buffer = int(shuffle_buffer)

    def prepare_data(self) -> None:
        """Nothing to index: shards are streamed as they are."""

    def setup(self, stage: str | None = None) -> None:
        if not self.tasks:
            raise RuntimeError("ShardDataModule.bind(tasks) must be called before setup")
        hop, crop_frames = self._grid()
        self._shard_train = ShardExcerpts(
            self.urls, self.tasks, crop_frames, hop, self.seed, self.gain_db, self.shuffle_buffer
        )

    def set_epoch(self, epoch: int) -> None:
        if getattr(self, "_shard_train", None) is not None:
            self._shard_train.epoch = int(epoch)

    def train_dataloader(self) -> DataLoader:
        workers = self._workers()
        return DataLoader(
            self._shard_train,
            batch_size=self.batch_size,
            num_workers=workers,
            collate_fn=collate_excerpts,
            pin_memory=self._on_gpu(),
            # workers are made afresh each epoch, so they see the new epoch's seed
            persistent_workers=False,
        )

    def tracks(self, split: str) -> list[Track]:
        urls = self.split_urls.get(split)
        return [] if urls is None else list(ShardTracks(urls))

    def _eval_loader(self, split: str) -> DataLoader | list:
        urls = self.split_urls.get(split)
        if urls is None:
            return []
        return DataLoader(ShardTracks(urls), batch_size=1, collate_fn=collate_tracks)


# -- command line -----------------------------------------------------------------------------


def _named(dm: MirDataModule, split: str) -> Iterator[Track]:
    """The tracks of `split`, one at a time, named ``<dataset>/<id>`` as in training."""
    for dname, tid in dm.track_ids(split):
        track = dm.datasets[dname].load(tid)
        track.name = f"{dname}/{track.name}"
        yield track


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mir.data.shard data=<name> split=<split> out=<dir> [key=value ...]``:
    any other ``data.*`` or ``frontend.*`` override is passed to the config."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    args = list(sys.argv[1:] if argv is None else argv)
    opts = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if "=" in a}
    if "data" not in opts or "out" not in opts:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        print("error: data=<name> and out=<dir> are needed", file=sys.stderr)
        return 2
    split = opts.pop("split", "train")
    out = Path(opts.pop("out"))
    per_shard = int(opts.pop("tracks_per_shard", "16"))
    overrides = [f"{k}={v}" for k, v in opts.items()]
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=overrides)
        dm = instantiate(cfg.data)
        paths = write_shards(_named(dm, split), out, split, per_shard)
    except (DatasetError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(paths)} shards to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
