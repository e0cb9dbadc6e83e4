"""Remix augmentation of the DataModule: pools of lead and accompaniment stems across
datasets, per-stem gains and the lead's pitch shift."""

from __future__ import annotations

import numpy as np
import pytest

from mir.data.datamodule import CropDataset
from mir.data.track import Track
from mir.errors import DatasetError
from mir.frontend import HarmonicCQT
from mir.tasks.separation import SeparationTask

SR = 22050


def _sine(f: float, seconds: float = 4.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * f * t)).astype(np.float32)


def _task() -> tuple[HarmonicCQT, dict]:
    fe = HarmonicCQT(n_octaves=2, bins_per_octave=12, harmonics=(1,))
    task = SeparationTask()
    task.bind(fe)
    return fe, {"separation": task}


def _solo(name: str, f: float) -> Track:
    """Solo singing: vocals only, accompaniment known silent."""
    v = _sine(f)
    return Track(name, v, SR, {"stems": {"vocals": v, "accompaniment": np.zeros_like(v)}})


def _instrumental(name: str, f: float) -> Track:
    """An instrumental recording: vocals known silent, the mix is accompaniment."""
    a = _sine(f, amp=0.2)
    return Track(name, a, SR, {"stems": {"vocals": np.zeros_like(a), "accompaniment": a}})


def _peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * SR / len(x))


def test_solo_vocals_remix_over_instrumental_accompaniment() -> None:
    fe, tasks = _task()
    tracks = [_solo("voc", 440.0), _instrumental("inst", 110.0)]
    crop = fe.n_frames(2 * SR)
    ds = CropDataset(tracks, tasks, crop, fe.hop, 6, seed=0, remix_prob=1.0)
    assert ds.remix_prob == 1.0  # neither track has both stems, yet the two make a pair
    for i in range(6):
        item = ds[i]
        assert item["mask"]["separation"]  # a remix of real stems trains separation
        voc, acc = item["targets"]["separation"].numpy()
        np.testing.assert_allclose(item["audio"].numpy(), voc + acc, atol=1e-6)
        assert _peak_hz(voc) == pytest.approx(440.0, abs=2.0)
        assert _peak_hz(acc) == pytest.approx(110.0, abs=2.0)


def test_remixing_off_without_a_pair() -> None:
    fe, tasks = _task()
    # two solo tracks: vocals but no accompaniment anywhere
    ds = CropDataset([_solo("a", 440.0), _solo("b", 330.0)], tasks, 40, fe.hop, 2, 0, 0.0, 1.0)
    assert ds.remix_prob == 0.0
    # plain excerpts of a solo track: its silent accompaniment leaves separation unlabelled
    assert not ds[0]["mask"]["separation"]


def test_pitch_shift_and_gain_of_remixed_stems() -> None:
    fe, tasks = _task()
    tracks = [_solo("voc", 440.0), _instrumental("inst", 110.0)]
    crop = fe.n_frames(2 * SR)
    ds = CropDataset(
        tracks,
        tasks,
        crop,
        fe.hop,
        24,
        seed=0,
        remix_prob=1.0,
        remix_gain_db=6.0,
        remix_semitones=3.0,
    )
    peaks, gains = [], []
    for i in range(24):
        voc, acc = ds[i]["targets"]["separation"].numpy()
        peaks.append(_peak_hz(voc))
        gains.append(np.sqrt(np.mean(acc**2)) / (0.2 / np.sqrt(2)))
        assert _peak_hz(acc) == pytest.approx(110.0, abs=2.0)  # only the lead is shifted
    semis = 12 * np.log2(np.array(peaks) / 440.0)
    assert np.all(np.abs(semis) <= 3.0 + 0.1)
    assert np.ptp(semis) > 2.0  # the shifts are drawn, not constant
    db = 20 * np.log10(np.array(gains))
    assert np.all(np.abs(db) <= 6.0 + 0.1)
    assert np.ptp(db) > 3.0
    # deterministic by seed
    np.testing.assert_array_equal(ds[3]["audio"].numpy(), ds[3]["audio"].numpy())


def test_bad_remix_settings_are_clear_errors() -> None:
    fe, tasks = _task()
    tracks = [_solo("voc", 440.0), _instrumental("inst", 110.0)]
    with pytest.raises(DatasetError, match="remix_semitones"):
        CropDataset(tracks, tasks, 40, fe.hop, 2, 0, remix_prob=1.0, remix_semitones=12.0)
    with pytest.raises(DatasetError, match="at least two stems"):
        CropDataset(tracks, tasks, 40, fe.hop, 2, 0, remix_prob=1.0, remix_stems=["vocals"])


def test_pool_experiment_remixes_real_stems_across_datasets(compose, fixtures_dir, tmp_path):
    """experiment=jansson_unet_pool on the fixtures: solo singing (vocadito) and a multitrack
    (MedleyDB) lend vocals, a drum-only stem (MDB-Drums) and the multitrack lend
    accompaniment, and every remix pairs two different recordings."""
    from hydra.utils import instantiate

    roots = {k: fixtures_dir / k for k in ("medleydb", "vocadito", "mdb_drums")}
    if not all(r.is_dir() for r in roots.values()):
        pytest.skip("medleydb, vocadito or mdb_drums fixture not found")
    cfg = compose(
        [
            "experiment=jansson_unet_pool",
            "~data.datasets.musdb18",
            "~data.datasets.embedded",
            *(f"data.datasets.{k}.root={v}" for k, v in roots.items()),
            "data.crop_seconds=2.0",
        ],
        tmp_path,
    )
    dm = instantiate(cfg.data)
    fe, tasks = _task()
    dm.bind(tasks)
    dm.setup("fit")
    ds = dm._train
    assert ds is not None
    assert ds.remix_prob == pytest.approx(0.8)
    assert {t.name for t in ds.tracks} == {
        "medleydb/MusicDelta_Reggae",
        "vocadito/vocadito_1",
        "mdb_drums/MusicDelta_Punk",
    }
    leads, rests = set(), set()
    rng = np.random.default_rng(0)
    for _ in range(30):
        track, _ = ds._remix(rng)
        a, b = track.name.removeprefix("remix:").split("+")
        assert a != b
        leads.add(a)
        rests.add(b)
    assert leads == {"medleydb/MusicDelta_Reggae", "vocadito/vocadito_1"}
    assert rests == {"medleydb/MusicDelta_Reggae", "mdb_drums/MusicDelta_Punk"}
