"""The track index and the lazy training path: the same excerpts as the in-memory path on
every fixture dataset, whatever the worker count or DDP rank split; index caching and
invalidation; unreadable files named in one line."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from mir.data import index as index_mod
from mir.data.datamodule import CropDataset, EpochSampler, collate_excerpts
from mir.data.index import build_index, read_window
from mir.data.musdb18 import MUSDB18
from mir.errors import DatasetError

TASKS = "[separation,melody,bass,vocal,multif0,drums,beats]"
MUSDB_TRACK = "Music Delta - 80s Rock"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIR_CACHE", str(tmp_path / "cache"))


def _fixture_overrides(fixtures_dir: Path, tmp_path: Path) -> dict[str, list[str]]:
    split = tmp_path / "bach10_split.json"
    split.write_text(
        '{"train": ["01-AchGottundHerr", "02-AchLiebenChristen"], "validation": [], "test": []}'
    )
    return {
        "embedded": [],
        "musdb18": [
            "data=musdb18",
            f"data.datasets.musdb18.root={fixtures_dir / 'musdb18'}",
            "data.datasets.musdb18.validation_tracks=[]",
        ],
        "medleydb": ["data=medleydb", f"data.datasets.medleydb.root={fixtures_dir / 'medleydb'}"],
        "bach10": [
            "data=bach10",
            f"data.datasets.bach10.root={fixtures_dir / 'bach10'}",
            f"+data.datasets.bach10.split_file={split}",
        ],
        "vocadito": ["data=vocadito", f"data.datasets.vocadito.root={fixtures_dir / 'vocadito'}"],
        "mdb_drums": [
            "data=mdb_drums",
            f"data.datasets.mdb_drums.root={fixtures_dir / 'mdb_drums'}",
            "data.datasets.mdb_drums.audio_source=drum_only",
        ],
    }


def _datamodule(compose, tmp_path, overrides):
    cfg = compose([f"task={TASKS}", "data.remix_prob=0.5", *overrides], tmp_path / "out")
    module = instantiate(cfg.model)
    dm = instantiate(cfg.data)
    dm.bind(module.tasks)
    return dm


def _crops(dm, tracks, n=8, seed=3):
    hop, frames = dm._grid()
    return CropDataset(
        tracks, dm.tasks, frames, hop, n, seed, 0.0, dm.remix_prob, dm.remix_stems, 0.0, 0.0
    )


def _assert_same_items(a: CropDataset, b: CropDataset, atol: float) -> None:
    for i in range(len(a)):
        x, y = a[i], b[i]
        np.testing.assert_allclose(x["audio"].numpy(), y["audio"].numpy(), atol=atol)
        assert x["mask"] == y["mask"]
        for k in x["targets"]:
            np.testing.assert_allclose(
                x["targets"][k].numpy(), y["targets"][k].numpy(), atol=atol, err_msg=k
            )


@pytest.mark.parametrize(
    "name", ["embedded", "musdb18", "medleydb", "bach10", "vocadito", "mdb_drums"]
)
def test_lazy_excerpts_equal_in_memory_excerpts(compose, fixtures_dir, tmp_path, name):
    dm = _datamodule(compose, tmp_path, _fixture_overrides(fixtures_dir, tmp_path)[name])
    lazy = _crops(dm, dm.index("train"))
    memory = _crops(dm, dm.tracks("train"))
    assert [e.name for e in lazy.tracks] == [t.name for t in memory.tracks]
    # MUSDB18's 44.1 kHz wav is resampled window by window: equal up to rounding
    _assert_same_items(lazy, memory, atol=1e-5 if name == "musdb18" else 0.0)


def _musdb_copy(fixtures_dir: Path, root: Path, names=(MUSDB_TRACK,)) -> Path:
    for n in names:
        shutil.copytree(fixtures_dir / "musdb18" / "train_wav" / MUSDB_TRACK, root / "train" / n)
    return root


def test_index_is_cached_and_rebuilt_when_a_file_changes(fixtures_dir, tmp_path, monkeypatch):
    root = _musdb_copy(fixtures_dir, tmp_path / "musdb", (MUSDB_TRACK, "B - Two"))
    ds = MUSDB18(root, sr=22050, is_wav=True, validation_tracks=[])
    first = build_index(ds, "musdb18", "train")
    assert [e.track_id for e in first] == sorted([MUSDB_TRACK, "B - Two"])
    n0 = first[1].n_samples

    def no_scan(path):
        raise AssertionError(f"header read of {path}: the cached index was not used")

    monkeypatch.setattr(index_mod.sf, "info", no_scan)
    assert [e.n_samples for e in build_index(ds, "musdb18", "train")] == [n0, n0]
    monkeypatch.undo()
    monkeypatch.setenv("MIR_CACHE", str(tmp_path / "cache"))

    # a shorter mixture: that track is scanned again, the other one is reused
    mix = root / "train" / MUSDB_TRACK / "mixture.wav"
    x, sr = sf.read(mix)
    sf.write(mix, x[: sr * 2], sr)
    scanned = []
    real_info = sf.info
    monkeypatch.setattr(index_mod.sf, "info", lambda p: scanned.append(p) or real_info(p))
    again = {e.track_id: e for e in build_index(ds, "musdb18", "train")}
    assert again[MUSDB_TRACK].n_samples == 2 * 22050
    assert again["B - Two"].n_samples == n0
    assert scanned
    assert all(MUSDB_TRACK in p for p in scanned)


def test_unreadable_file_in_the_scan_is_named_or_skipped(fixtures_dir, tmp_path, caplog):
    root = _musdb_copy(fixtures_dir, tmp_path / "musdb", (MUSDB_TRACK, "B - Two"))
    bad = root / "train" / "B - Two" / "vocals.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    ds = MUSDB18(root, sr=22050, is_wav=True, validation_tracks=[])
    with pytest.raises(DatasetError, match=r"B - Two/vocals.wav: cannot read audio header"):
        build_index(ds, "musdb18", "train")
    with caplog.at_level(logging.WARNING):
        entries = build_index(ds, "musdb18", "train", skip_bad=True)
    assert [e.track_id for e in entries] == [MUSDB_TRACK]
    assert "skipped 1 unreadable tracks" in caplog.text
    assert "vocals.wav" in caplog.text


def test_file_truncated_after_indexing_is_an_error_not_zeros(fixtures_dir, tmp_path):
    root = _musdb_copy(fixtures_dir, tmp_path / "musdb")
    ds = MUSDB18(root, sr=44100, is_wav=True, validation_tracks=[])
    (entry,) = build_index(ds, "musdb18", "train")
    full = read_window(entry, "vocals", 44100, 44100)
    assert full is not None
    assert np.any(full)
    vocals = root / "train" / MUSDB_TRACK / "vocals.wav"
    data = vocals.read_bytes()
    vocals.write_bytes(data[: len(data) // 4])  # a copy cut short: header intact
    with pytest.raises(DatasetError, match=r"vocals.wav"):
        read_window(entry, "vocals", 3 * 44100, 44100)


def test_resampled_windows_match_the_whole_file(fixtures_dir, tmp_path):
    root = _musdb_copy(fixtures_dir, tmp_path / "musdb")
    ds = MUSDB18(root, sr=16000, is_wav=True, validation_tracks=[])
    (entry,) = build_index(ds, "musdb18", "train")
    whole = ds.load(MUSDB_TRACK)
    assert entry.n_samples == len(whole.audio)
    for start in (0, 12345, entry.n_samples - 5000):
        x = read_window(entry, "accompaniment", start, 8000)
        ref = np.zeros(8000, np.float32)
        seg = whole.get("stems")["accompaniment"][start : start + 8000]
        ref[: len(seg)] = seg
        np.testing.assert_allclose(x, ref, atol=1e-5)


def _stream(dataset: CropDataset, workers: int, epochs=(0, 1)) -> list[str]:
    out = []
    sampler = EpochSampler(dataset)
    loader = DataLoader(
        dataset,
        batch_size=2,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_excerpts,
        persistent_workers=workers > 0,
    )
    for epoch in epochs:
        sampler.set_epoch(epoch)
        for batch in loader:
            for a in batch["audio"]:
                out.append(hashlib.sha1(a.numpy().tobytes()).hexdigest())
    return out


def test_excerpts_do_not_depend_on_worker_count(compose, fixtures_dir, tmp_path):
    dm = _datamodule(compose, tmp_path, _fixture_overrides(fixtures_dir, tmp_path)["musdb18"])
    crops = _crops(dm, dm.index("train"), n=8)
    serial = _stream(crops, 0)
    assert _stream(crops, 2) == serial
    assert serial[:8] != serial[8:]  # a new epoch draws new excerpts
    assert len(set(serial)) == len(serial)


def _ddp_datamodule(root: str | Path):
    """The MUSDB18 DataModule both the ranks and the one-rank reference stream read (one
    builder, so the two streams can only differ by how they are split)."""
    from mir.data.datamodule import MirDataModule
    from mir.frontend import HarmonicCQT
    from mir.tasks.separation import SeparationTask

    fe = HarmonicCQT(n_octaves=2, bins_per_octave=12, harmonics=(1,))
    task = SeparationTask()
    task.bind(fe)
    ds = MUSDB18(root, sr=fe.sr, is_wav=True, validation_tracks=[])
    dm = MirDataModule({"musdb18": ds}, crop_seconds=1.0, batch_size=2, steps_per_epoch=6)
    dm.bind({"separation": task})
    dm.setup("fit")
    assert dm._train is not None
    return dm


def _ddp_rank(rank: int, world: int, port: int, root: str, out: str) -> None:
    import torch.distributed as dist
    from lightning_fabric.utilities.distributed import DistributedSamplerWrapper

    os.environ["MIR_CACHE"] = str(Path(out).parent / "cache")
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    dm = _ddp_datamodule(root)
    # what Lightning does under DDP: its distributed sampler over ours, no shuffling
    sampler = DistributedSamplerWrapper(
        EpochSampler(dm._train), num_replicas=world, rank=rank, shuffle=False
    )
    loader = DataLoader(dm._train, batch_size=2, sampler=sampler, num_workers=2,
                        collate_fn=collate_excerpts)  # fmt: skip
    mine = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        for batch in loader:
            mine += [hashlib.sha1(a.numpy().tobytes()).hexdigest() for a in batch["audio"]]
    parts: list = [None] * world
    dist.all_gather_object(parts, mine)
    if rank == 0:
        Path(out).write_text("\n".join("|".join(p) for p in parts))
    dist.destroy_process_group()


def test_ddp_ranks_read_disjoint_shares_of_the_one_rank_stream(fixtures_dir, tmp_path):
    import socket

    import torch.multiprocessing as mp

    root = _musdb_copy(fixtures_dir, tmp_path / "musdb", (MUSDB_TRACK, "B - Two"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ranks.txt"
    mp.spawn(_ddp_rank, args=(2, port, str(root), str(out)), nprocs=2, join=True)
    parts = [p.split("|") for p in out.read_text().split("\n")]
    a, b = set(parts[0]), set(parts[1])
    assert len(parts[0]) == len(parts[1]) == 12
    assert not a & b

    os.environ["MIR_CACHE"] = str(tmp_path / "cache")
    dm = _ddp_datamodule(root)
    one_rank = _stream(dm._train, 0)
    assert a | b == set(one_rank)
    assert len(set(one_rank)) == 24


def test_split_all_and_ids_select_tracks(compose, fixtures_dir, tmp_path):
    over = _fixture_overrides(fixtures_dir, tmp_path)["bach10"]
    dm = _datamodule(compose, tmp_path, [o for o in over if "split_file" not in o])
    assert dm.track_ids("train") == []
    assert [t for _, t in dm.track_ids("all")] == ["01-AchGottundHerr", "02-AchLiebenChristen"]
    dm.ids = {"bach10/02-AchLiebenChristen"}
    assert dm.track_ids("all") == [("bach10", "02-AchLiebenChristen")]
    dm.ids = {"01-AchGottundHerr"}
    assert dm.track_ids("test") == [("bach10", "01-AchGottundHerr")]
    loader = dm.test_dataloader()
    assert len(loader.dataset) == 1
    assert not dm._tracks
    (track,) = next(iter(loader))
    assert track.name == "bach10/01-AchGottundHerr"
    assert len(track.audio) > 0


def test_workers_default_to_none_on_cpu():
    from mir.data.datamodule import MirDataModule

    dm = MirDataModule({"x": object()})  # type: ignore[dict-item]
    assert dm._workers() == 0
    assert not dm._on_gpu()
    assert torch.cuda.is_available() or dm.num_workers is None


def test_mp3_tracks_are_decoded_once_and_read_by_window(tmp_path, monkeypatch):
    from mir.data.magnatagatune import MagnaTagATune
    from mir.frontend import HarmonicCQT
    from mir.tasks.tagging import TaggingTask

    root = tmp_path / "mtat"
    rows = ["clip_id\trock\tpiano\tmp3_path"]
    rng = np.random.default_rng(0)
    for i in range(3):
        rel = f"{i}/clip-{i}.mp3"
        (root / "mp3" / str(i)).mkdir(parents=True)
        x = (0.1 * rng.standard_normal(16000 * (3 + i))).astype(np.float32)
        sf.write(root / "mp3" / rel, x, 16000, format="MP3")
        rows.append(f"{i}\t1\t{i % 2}\t{rel}")
    (root / "annotations_final.csv").write_text("\n".join(rows) + "\n")
    ds = MagnaTagATune(root, sr=22050, tags=["rock", "piano"])
    entries = build_index(ds, "mtat", "train")
    assert len(entries) == 3
    decoded = [p for e in entries for r in e.signals.values() for p, _ in r]
    assert all(p.endswith(".wav") and str(tmp_path / "cache" / "decoded") in p for p in decoded)

    fe = HarmonicCQT(n_octaves=2, bins_per_octave=12, harmonics=(1,))
    task = TaggingTask(tags=["rock", "piano"])
    task.bind(fe)
    frames = fe.n_frames(fe.sr)
    tracks = [ds.load(t) for t in ds.track_ids("train")]
    for t in tracks:
        t.name = f"mtat/{t.name}"
    lazy = CropDataset(entries, {"tagging": task}, frames, fe.hop, 6, seed=2)
    memory = CropDataset(tracks, {"tagging": task}, frames, fe.hop, 6, seed=2)
    _assert_same_items(lazy, memory, atol=0.0)

    # the cached index is used without decoding again
    monkeypatch.setattr(MagnaTagATune, "load", lambda *a: pytest.fail("decoded twice"))
    assert [e.name for e in build_index(ds, "mtat", "train")] == [e.name for e in entries]


def test_decode_option_caches_resampled_stems_exactly(compose, fixtures_dir, tmp_path):
    dm = _datamodule(compose, tmp_path, _fixture_overrides(fixtures_dir, tmp_path)["musdb18"])
    dm.decode = True
    (entry,) = dm.index("train")
    assert entry.file_sr == dm.datasets["musdb18"].sr  # read at the front end's rate
    assert all(len(r) == 1 for r in entry.signals.values())  # one cached file per signal
    _assert_same_items(_crops(dm, dm.index("train")), _crops(dm, dm.tracks("train")), atol=0.0)
