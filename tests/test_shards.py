"""WebDataset shards: written from the fixtures and read back, the same tracks and the same
excerpts as the in-memory path; split across loader workers without repeats."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from torch.utils.data import DataLoader

pytest.importorskip("webdataset")

from mir.data.datamodule import CropDataset, TrackSource, collate_excerpts  # noqa: E402
from mir.data.medleydb import MedleyDB  # noqa: E402
from mir.data.shard import ShardExcerpts, ShardTracks, main  # noqa: E402
from mir.data.vocadito import Vocadito  # noqa: E402
from mir.frontend import HarmonicCQT  # noqa: E402
from mir.tasks.salience import SingleF0Task  # noqa: E402
from mir.tasks.separation import SeparationTask  # noqa: E402


def _tasks():
    fe = HarmonicCQT(n_octaves=2, bins_per_octave=12, harmonics=(1,))
    tasks = {"separation": SeparationTask(), "melody": SingleF0Task(name="melody", voice="melody")}
    for t in tasks.values():
        t.bind(fe)
    return fe, tasks


@pytest.fixture(scope="module")
def shards(fixtures_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    for name, root in (("vocadito", "vocadito"), ("medleydb", "medleydb")):
        rc = main([f"data={name}", f"data.datasets.{name}.root={fixtures_dir / root}",
                   "split=train", f"out={out / name}", "tracks_per_shard=1"])  # fmt: skip
        assert rc == 0
    return out


def test_round_trip_gives_the_loaded_tracks(shards, fixtures_dir):
    (back,) = list(ShardTracks(str(shards / "vocadito" / "train-000000.tar")))
    ref = Vocadito(fixtures_dir / "vocadito", sr=22050).load("vocadito_1")
    assert back.name == "vocadito/vocadito_1"
    np.testing.assert_array_equal(back.audio, ref.audio)
    assert set(back.get("stems")) == set(ref.get("stems"))
    for k in ref.get("stems"):
        np.testing.assert_array_equal(back.get("stems")[k], ref.get("stems")[k])
    for v in ("vocal", "melody"):
        np.testing.assert_array_equal(back.get(v)[0], ref.get(v)[0])
        np.testing.assert_array_equal(back.get(v)[1], ref.get(v)[1])
    assert len(back.get("multif0")[1]) == len(ref.get("multif0")[1])


def test_shard_excerpts_equal_in_memory_excerpts(shards, fixtures_dir):
    import zlib

    fe, tasks = _tasks()
    crop = fe.n_frames(2 * fe.sr)
    urls = str(shards / "medleydb" / "train-000000.tar")
    stream = list(ShardExcerpts(urls, tasks, crop, fe.hop, seed=5, shuffle_buffer=0))
    track = MedleyDB(fixtures_dir / "medleydb", sr=22050).load("MusicDelta_Reggae")
    track.name = "medleydb/MusicDelta_Reggae"
    n = max(1, round(len(track.audio) / ((crop - 1) * fe.hop)))
    assert len(stream) == n
    ref = CropDataset(TrackSource([track]), tasks, crop, fe.hop, n,
                      zlib.crc32(f"5:{track.name}".encode()))  # fmt: skip
    for i, item in enumerate(stream):
        want = ref[(0, i)]
        np.testing.assert_array_equal(item["audio"].numpy(), want["audio"].numpy())
        for k in tasks:
            np.testing.assert_array_equal(item["targets"][k].numpy(), want["targets"][k].numpy())
            assert item["mask"][k] == want["mask"][k]


def test_workers_read_disjoint_shards(shards):
    fe, tasks = _tasks()
    crop = fe.n_frames(1 * fe.sr)
    urls = [str(shards / n / "train-000000.tar") for n in ("vocadito", "medleydb")]

    def keys(workers: int) -> list[str]:
        ds = ShardExcerpts(urls, tasks, crop, fe.hop, seed=1, shuffle_buffer=8)
        loader = DataLoader(ds, batch_size=4, num_workers=workers, collate_fn=collate_excerpts)
        return [hashlib.sha1(a.numpy().tobytes()).hexdigest() for b in loader for a in b["audio"]]

    serial, parallel = keys(0), keys(2)
    assert len(parallel) == len(serial) == len(set(serial))
    assert set(parallel) == set(serial)


def test_shards_config_builds_a_streaming_datamodule(compose, shards, tmp_path):
    from hydra.utils import instantiate

    from mir.data.shard import ShardDataModule

    url = str(shards / "vocadito" / "train-000000.tar")
    cfg = compose(["data=shards", f"data.urls={url}", "task=melody"], tmp_path)
    module = instantiate(cfg.model)
    dm = instantiate(cfg.data)
    assert isinstance(dm, ShardDataModule)
    dm.bind(module.tasks)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["audio"].shape[0] == cfg.data.batch_size
    assert batch["mask"]["melody"].all()  # vocadito's f0 is the melody
    assert dm.val_dataloader() == []
