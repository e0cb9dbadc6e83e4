"""MUSDB18 loader: contract and golden tests on the 7 s fixture, errors on synthetic layouts."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import mir_eval
import numpy as np
import pytest
import soundfile as sf

from mir.bsseval import bss_eval_v4
from mir.data import musdb18
from mir.data.base import SPLITS
from mir.data.musdb18 import MUSDB18, STEM_ORDER, VALIDATION_TRACKS
from mir.data.track import F0_KINDS
from mir.errors import DatasetError

TRACK = "Music Delta - 80s Rock"


@pytest.fixture(scope="module")
def mus_root(fixtures_dir: Path) -> Path:
    return fixtures_dir / "musdb18"


@pytest.fixture(scope="module")
def fixture_track(mus_root: Path):
    return MUSDB18(mus_root, sr=22050).load(TRACK)


def _write_track(folder: Path, n: int = 4410, sr: int = 44100, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    stems = {k: 0.1 * rng.standard_normal((n, 2)).astype(np.float32) for k in STEM_ORDER[1:]}
    stems["mixture"] = sum(stems.values())
    for k, x in stems.items():
        sf.write(folder / f"{k}.wav", x, sr, subtype="FLOAT")


# contract --------------------------------------------------------------------------------


def test_fixture_layout_detected(mus_root: Path) -> None:
    ds = MUSDB18(mus_root, sr=22050)
    assert ds.is_wav  # the decoded copy wins over train/*.stem.mp4: no ffmpeg needed
    assert ds.subset_dirs["train"].name == "train_wav"
    assert ds.track_ids("train") == [TRACK]
    assert ds.track_ids("validation") == []
    assert ds.track_ids("test") == []


def test_fixture_track_contract(fixture_track) -> None:
    tr = fixture_track
    assert tr.name == TRACK
    assert tr.sr == 22050
    assert tr.audio.dtype == np.float32
    assert tr.audio.ndim == 1
    assert tr.duration == pytest.approx(300032 / 44100, abs=1e-3)
    assert set(tr.get("stems")) == {"drums", "bass", "other", "vocals", "accompaniment"}
    for x in tr.get("stems").values():
        assert x.shape == tr.audio.shape
        assert x.dtype == np.float32
    acc = tr.get("stems")["drums"] + tr.get("stems")["bass"] + tr.get("stems")["other"]
    np.testing.assert_allclose(tr.get("stems")["accompaniment"], acc, atol=1e-5)
    assert not tr.has("onsets")
    assert not any(tr.has(k) for k in F0_KINDS)
    assert not tr.has("tags")
    assert not tr.has("beats")
    assert tr.meta["split"] == "train"
    assert tr.meta["original_sr"] == 44100
    assert tr.meta["channels"] == 2
    for p in tr.meta["stem_paths"].values():
        assert Path(p).is_file()


def test_mixture_is_approximately_sum_of_stems(fixture_track) -> None:
    # MUSDB stems sum to the mixture only up to AAC coding: -31.6 dB on this track
    assert fixture_track.meta["stem_residual_db"] < -25.0
    mono_sum = fixture_track.get("stems")["accompaniment"] + fixture_track.get("stems")["vocals"]
    err = np.sum((fixture_track.audio - mono_sum) ** 2) / np.sum(fixture_track.audio**2)
    assert 10 * np.log10(err) < -25.0


def test_load_stereo_shapes(mus_root: Path) -> None:
    stereo, sr = MUSDB18(mus_root).load_stereo(TRACK)
    assert sr == 44100
    assert set(stereo) == {*STEM_ORDER, "accompaniment"}
    for x in stereo.values():
        assert x.shape == (2, 300032)


def test_mp4_matches_wav_when_ffmpeg_available(mus_root: Path) -> None:
    try:
        musdb18._ffmpeg()
    except DatasetError:
        pytest.skip("ffmpeg not installed; .stem.mp4 decoding is not tested")
    ds = MUSDB18(mus_root, sr=22050, is_wav=False)
    assert ds.track_ids("train") == [TRACK]
    wav, _ = MUSDB18(mus_root).load_stereo(TRACK)
    mp4, sr = ds.load_stereo(TRACK)
    assert sr == 44100
    n = min(mp4["vocals"].shape[1], wav["vocals"].shape[1])
    assert abs(mp4["vocals"].shape[1] - wav["vocals"].shape[1]) < 2048
    # the wav copy is 16-bit: equal up to quantisation (and any decoder priming offset)
    np.testing.assert_allclose(mp4["vocals"][:, :n], wav["vocals"][:, :n], atol=1e-3)


# golden: separation scores -------------------------------------------------------------


def test_true_stems_score_perfectly(fixture_track) -> None:
    n = 2 * fixture_track.sr  # 2 s keep it fast
    ref = np.stack([fixture_track.get("stems")[k][:n] for k in ("vocals", "accompaniment")])
    sdr, sir, sar, perm = mir_eval.separation.bss_eval_sources(ref, ref.copy())
    assert np.all(sdr > 100)
    assert np.all(sir > 100)
    assert list(perm) == [0, 1]


def test_museval_reference_scores_reproduced(mus_root: Path) -> None:
    """museval's own regression test: uniform noise estimates, scored by BSSEval v4.

    museval's test draws ``np.random.seed(0)``, then ``np.random.random(track.audio.shape)``
    for vocals and again for accompaniment, and scores them against the true stereo
    44.1 kHz targets with 1 s windows and hops. Our arrays must reproduce its JSON.
    """
    ref = json.loads((mus_root / "museval_reference_scores.json").read_text())
    stereo, sr = MUSDB18(mus_root).load_stereo(TRACK)
    targets = ["vocals", "accompaniment"]
    refs = np.stack([stereo[k].astype(np.float64) for k in targets])  # (S, C, N)
    rng = np.random.RandomState(0)
    ests = np.stack([rng.random_sample(stereo["mixture"].T.shape).T for _ in targets])
    scores = bss_eval_v4(refs, ests, sr)  # museval's 1-s windows and hops
    by_name = {t["name"]: t["frames"] for t in ref["targets"]}
    assert set(by_name) == set(targets)
    for j, name in enumerate(targets):
        for metric, values in scores.items():
            expected = np.array([f["metrics"][metric] for f in by_name[name]])
            np.testing.assert_allclose(values[j], expected, atol=1e-3, err_msg=f"{name} {metric}")


# splits ---------------------------------------------------------------------------------


def test_official_validation_list() -> None:
    assert len(VALIDATION_TRACKS) == 14
    assert len(set(VALIDATION_TRACKS)) == 14
    assert "Meaxic - Take A Step" in VALIDATION_TRACKS


def test_splits_disjoint_on_synthetic_layout(tmp_path: Path) -> None:
    names = {"train": ["A - One", VALIDATION_TRACKS[0], "B - Two"], "test": ["C - Three"]}
    for subset, tracks in names.items():
        for i, name in enumerate(tracks):
            _write_track(tmp_path / subset / name, seed=i)
    ds = MUSDB18(tmp_path, sr=22050)
    assert ds.is_wav
    ids = {s: ds.track_ids(s) for s in SPLITS}
    assert ids == {
        "train": ["A - One", "B - Two"],
        "validation": [VALIDATION_TRACKS[0]],
        "test": ["C - Three"],
    }
    for a, b in itertools.combinations(SPLITS, 2):
        assert not set(ids[a]) & set(ids[b])
    tr = ds.load(VALIDATION_TRACKS[0])
    assert tr.meta["split"] == "validation"
    assert tr.meta["stem_residual_db"] < -100  # synthetic stems sum exactly
    custom = MUSDB18(tmp_path, validation_tracks=["B - Two"])
    assert custom.track_ids("validation") == ["B - Two"]


def test_subsets_mapping(tmp_path: Path) -> None:
    _write_track(tmp_path / "my_train" / "A - One")
    ds = MUSDB18(tmp_path, subsets={"train": "my_train"})
    assert ds.track_ids("train") == ["A - One"]
    with pytest.raises(DatasetError, match="unknown subsets"):
        MUSDB18(tmp_path, subsets={"valid": "x"})


# errors ---------------------------------------------------------------------------------


def test_nonexistent_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        MUSDB18(tmp_path / "nope")


def test_root_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_track(tmp_path / "train" / "A - One")
    monkeypatch.setenv("MUSDB_PATH", str(tmp_path))
    assert MUSDB18().track_ids("train") == ["A - One"]
    monkeypatch.delenv("MUSDB_PATH")
    with pytest.raises(DatasetError, match="MUSDB_PATH"):
        MUSDB18()


def test_empty_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no train or test folder"):
        MUSDB18(tmp_path)


def test_unknown_split_and_track(tmp_path: Path) -> None:
    _write_track(tmp_path / "train" / "A - One")
    ds = MUSDB18(tmp_path)
    with pytest.raises(DatasetError, match="unknown split"):
        ds.track_ids("valid")
    with pytest.raises(DatasetError, match="unknown track"):
        ds.load("Z - None")


def test_stem_length_mismatch_names_file(tmp_path: Path) -> None:
    folder = tmp_path / "train" / "A - One"
    _write_track(folder)
    sf.write(folder / "bass.wav", np.zeros((4000, 2), np.float32), 44100)
    with pytest.raises(DatasetError, match=r"bass\.wav.*differs from the mixture"):
        MUSDB18(tmp_path).load("A - One")


def test_stem_rate_mismatch_names_file(tmp_path: Path) -> None:
    folder = tmp_path / "train" / "A - One"
    _write_track(folder)
    sf.write(folder / "vocals.wav", np.zeros((4410, 2), np.float32), 48000)
    with pytest.raises(DatasetError, match=r"vocals\.wav.*48000 Hz"):
        MUSDB18(tmp_path).load("A - One")


def test_missing_stem_names_file(tmp_path: Path) -> None:
    folder = tmp_path / "train" / "A - One"
    _write_track(folder)
    (folder / "drums.wav").unlink()
    with pytest.raises(DatasetError, match=r"drums\.wav"):
        MUSDB18(tmp_path).load("A - One")


def test_mp4_without_ffmpeg_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "A - One.stem.mp4").write_bytes(b"not really an mp4")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setitem(__import__("sys").modules, "imageio_ffmpeg", None)
    with pytest.raises(DatasetError, match=r"ffmpeg.*musdbconvert"):
        MUSDB18(tmp_path)
