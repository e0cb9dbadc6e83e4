"""Bach10 loader: contract, golden and audio-agreement tests on the real fixture (two
chorales; skipped without it), error cases on tiny synthetic layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import soundfile as sf

from mir.data.bach10 import FIRST_FRAME_S, HOP_S, PARTS, Bach10
from mir.data.track import F0_KINDS
from mir.errors import DatasetError
from tests._pitch import harmonic_sum_f0

SR = 22050


@pytest.fixture(scope="module")
def bach10_root(fixtures_dir: Path) -> Path:
    root = fixtures_dir / "bach10"
    if not root.is_dir():
        pytest.skip("Bach10 fixture not found")
    return root


@pytest.fixture(scope="module")
def bach10(bach10_root: Path) -> Bach10:
    return Bach10(bach10_root, sr=SR)


def test_loads_every_fixture_track(bach10: Bach10, bach10_root: Path) -> None:
    ids = bach10.track_ids("test")
    assert ids == ["01-AchGottundHerr", "02-AchLiebenChristen"]
    assert bach10.track_ids("train") == bach10.track_ids("validation") == []
    for track_id in ids:
        track = bach10.load(track_id)
        assert track.sr == SR
        assert track.audio.dtype == np.float32
        assert track.audio.ndim == 1
        info = sf.info(str(bach10_root / track_id / f"{track_id}.wav"))
        assert abs(track.duration - info.duration) < 1e-3
        # instrumental: the vocals are silent and the accompaniment is the mix
        assert sorted(track.get("stems")) == sorted([*PARTS, "vocals", "accompaniment"])
        assert not np.any(track.get("stems")["vocals"])
        np.testing.assert_array_equal(track.get("stems")["accompaniment"], track.audio)
        for stem in track.get("stems").values():
            assert stem.shape == track.audio.shape
        assert {k for k in F0_KINDS if track.has(k)} == {"melody", "bass"}
        for times, freqs in (track.get("melody"), track.get("bass")):
            assert np.all(np.diff(times) > 0)
            assert np.all(freqs >= 0)
            assert times[-1] <= track.duration
        violin = track.get("melody")[1]
        bassoon = track.get("bass")[1]
        assert violin[violin > 0].min() > 200
        assert violin.max() < 1100
        assert bassoon[bassoon > 0].min() > 50
        assert bassoon.max() < 400
        times, frames = track.get("multif0")
        assert len(frames) == len(times)
        assert max(len(f) for f in frames) == 4
        assert all(np.all(np.diff(f) >= 0) for f in frames)
        # Each frame holds exactly the voiced parts.
        parts = np.stack([track.meta["parts"][p][1] for p in PARTS])
        assert [len(f) for f in frames] == np.count_nonzero(parts, axis=0).tolist()
        assert not track.has("onsets")
        assert not track.has("beats")
        assert not track.has("tags")
        assert track.meta["split"] == "test"


def test_golden_f0_matches_raw_mat(bach10: Bach10, bach10_root: Path) -> None:
    track_id = "01-AchGottundHerr"
    raw = scipy.io.loadmat(str(bach10_root / track_id / f"{track_id}-GTF0s.mat"))["GTF0s"]
    track = bach10.load(track_id)
    times, violin = track.get("melody")
    assert raw.shape == (4, len(times)) == (4, 2519)
    np.testing.assert_allclose(times[:3], [0.023, 0.033, 0.043])
    np.testing.assert_allclose(np.diff(times), HOP_S)
    voiced = raw[0] > 0
    assert int(np.count_nonzero(violin)) == int(voiced.sum()) == 2199
    np.testing.assert_allclose(violin[voiced], 440 * 2 ** ((raw[0][voiced] - 69) / 12))
    first = np.argmax(voiced)
    assert first == 20  # 0-based frame 20 = 1-based 21, the first GTNotes frame
    assert times[first] == pytest.approx(0.223)  # the .txt notes start at 220 ms
    assert violin[first] == pytest.approx(440 * 2 ** ((72.00969708 - 69) / 12))
    np.testing.assert_allclose(
        track.get("bass")[1][voiced], 440 * 2 ** ((raw[3][voiced] - 69) / 12)
    )


def test_violin_f0_agrees_with_the_violin_stem(bach10: Bach10) -> None:
    track = bach10.load("01-AchGottundHerr")
    times, f0 = track.get("melody")
    voiced = f0 > 0

    def agreement(offset: float) -> float:
        est = harmonic_sum_f0(track.get("stems")["violin"], track.sr, times[voiced] + offset)
        return float(np.mean(np.abs(1200 * np.log2(est / f0[voiced])) < 50))

    at_annotated = agreement(0.0)
    assert at_annotated >= 0.9  # measured 0.98
    # The 23 ms first-frame centre fits better than frames starting at 0 or 23 ms later.
    assert at_annotated >= agreement(-FIRST_FRAME_S)
    assert at_annotated >= agreement(+FIRST_FRAME_S)


def test_custom_split_file(bach10_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": ["01-AchGottundHerr"], "test": ["02-AchLiebenChristen"]}))
    ds = Bach10(bach10_root, split_file=path)
    assert ds.track_ids("train") == ["01-AchGottundHerr"]
    assert ds.track_ids("test") == ["02-AchLiebenChristen"]
    assert ds.load("01-AchGottundHerr").meta["split"] == "train"


# ---- synthetic layouts -----------------------------------------------------------------

NATIVE_SR = 8000


def make_bach10(
    root: Path,
    piece: str = "01-Test",
    stem_sr: int = NATIVE_SR,
    bassoon_len: int = NATIVE_SR,
    gtf0: object = None,
) -> Path:
    """Write one piece: four sine parts ("saxphone" as in v1.1), their sum, GTF0s."""
    folder = root / piece
    folder.mkdir(parents=True)
    n = NATIVE_SR
    midi = np.array([72.0, 67.0, 64.0, 48.0])
    mix = np.zeros(n, dtype=np.float32)
    for part, m in zip(("violin", "clarinet", "saxphone", "bassoon"), midi, strict=True):
        f0 = 440 * 2 ** ((m - 69) / 12)
        x = (0.1 * np.sin(2 * np.pi * f0 * np.arange(n) / NATIVE_SR)).astype(np.float32)
        mix += x
        sf.write(
            folder / f"{piece}-{part}.wav", x[:bassoon_len] if part == "bassoon" else x, stem_sr
        )
    sf.write(folder / f"{piece}.wav", mix, NATIVE_SR)
    frames = int((1.0 - 0.046) / HOP_S) + 1
    if gtf0 is None:
        gtf0 = np.repeat(midi[:, None], frames, axis=1)
        gtf0[:, :10] = 0
    scipy.io.savemat(str(folder / f"{piece}-GTF0s.mat"), {"GTF0s": gtf0})
    return root


def test_synthetic_piece(tmp_path: Path) -> None:
    track = Bach10(make_bach10(tmp_path), sr=NATIVE_SR).load("01-Test")
    np.testing.assert_allclose(track.get("melody")[1][10:], 440 * 2 ** (3 / 12))
    assert np.all(track.get("melody")[1][:10] == 0)
    assert track.get("bass")[1][10] == pytest.approx(130.81, abs=0.01)
    assert [len(f) for f in track.get("multif0")[1][9:11]] == [0, 4]
    assert track.meta["piece"] == "Test"


def test_nonexistent_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        Bach10(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no NN-Title piece folders"):
        Bach10(tmp_path)


def test_env_var_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_bach10(tmp_path / "b10")
    monkeypatch.setenv("BACH10_PATH", str(root))
    assert Bach10().track_ids("test") == ["01-Test"]
    monkeypatch.delenv("BACH10_PATH")
    with pytest.raises(DatasetError, match="BACH10_PATH"):
        Bach10()


def test_missing_piece_and_files(tmp_path: Path) -> None:
    root = make_bach10(tmp_path)
    with pytest.raises(DatasetError, match="02-Other"):
        Bach10(root).load("02-Other")
    (root / "01-Test/01-Test-clarinet.wav").unlink()
    with pytest.raises(DatasetError, match="01-Test-clarinet.wav"):
        Bach10(root).load("01-Test")


def test_stem_sample_rate_mismatch(tmp_path: Path) -> None:
    root = make_bach10(tmp_path, stem_sr=16000)
    with pytest.raises(DatasetError, match=r"violin\.wav is at 16000 Hz but the mix is at 8000"):
        Bach10(root).load("01-Test")


def test_stem_length_mismatch(tmp_path: Path) -> None:
    root = make_bach10(tmp_path, bassoon_len=NATIVE_SR // 2)
    with pytest.raises(DatasetError, match=r"bassoon\.wav has 4000 samples but the mix has 8000"):
        Bach10(root).load("01-Test")


def test_bad_gtf0s(tmp_path: Path) -> None:
    root = make_bach10(tmp_path, gtf0=np.zeros((3, 10)))
    with pytest.raises(DatasetError, match=r"GTF0s\.mat has no \(4, T\) GTF0s matrix"):
        Bach10(root).load("01-Test")
    (root / "01-Test/01-Test-GTF0s.mat").write_text("not a mat file")
    with pytest.raises(DatasetError, match=r"cannot read .*GTF0s\.mat"):
        Bach10(root).load("01-Test")
