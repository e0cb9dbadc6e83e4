"""vocadito loader: contract, golden and audio-agreement tests on the real fixture (one
track, vocadito_1; skipped without it), the split, error cases on tiny synthetic layouts,
and the data config."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra.utils import instantiate

from mir.data.track import F0_KINDS
from mir.data.vocadito import ANNOTATION_HOP_S, SPLIT, Vocadito
from mir.errors import DatasetError
from mir.train import instantiate as mir_instantiate
from tests._pitch import harmonic_sum_f0

SR = 22050
TRACK = "vocadito_1"


@pytest.fixture(scope="module")
def vocadito_root(fixtures_dir: Path) -> Path:
    root = fixtures_dir / "vocadito"
    if not root.is_dir():
        pytest.skip("vocadito fixture not found")
    return root


@pytest.fixture(scope="module")
def track(vocadito_root: Path):
    return Vocadito(vocadito_root, sr=SR).load(TRACK)


def test_fixture_contract(vocadito_root: Path, track) -> None:
    ds = Vocadito(vocadito_root, sr=SR)
    assert ds.track_ids("train") == [TRACK]
    assert ds.track_ids("validation") == ds.track_ids("test") == []
    assert track.sr == SR
    assert track.audio.dtype == np.float32
    assert track.audio.ndim == 1
    info = sf.info(str(vocadito_root / "Audio" / f"{TRACK}.wav"))
    assert abs(track.duration - info.duration) < 1e-3
    assert set(track.get("stems")) == {"vocals", "accompaniment"}
    for stem in track.get("stems").values():
        assert stem.shape == track.audio.shape
        assert stem.dtype == np.float32
    np.testing.assert_array_equal(track.get("stems")["vocals"], track.audio)
    assert not np.any(track.get("stems")["accompaniment"])
    assert {k for k in F0_KINDS if track.has(k)} == {"vocal", "melody"}
    times, freqs = track.get("vocal")
    np.testing.assert_array_equal(track.get("melody")[1], freqs)
    assert times.dtype == freqs.dtype == np.float64
    assert np.all(np.diff(times) > 0)
    assert times[0] >= 0
    assert times[-1] <= track.duration
    assert np.all(freqs >= 0)
    voiced = freqs[freqs > 0]
    assert voiced.min() > 60
    assert voiced.max() < 1500
    mf_times, frames = track.get("multif0")
    np.testing.assert_array_equal(mf_times, times)
    assert [len(f) for f in frames] == (freqs > 0).astype(int).tolist()
    assert all(f[0] == hz for f, hz in zip(frames, freqs, strict=True) if len(f))
    assert not track.has("onsets")
    assert not track.has("beats")
    assert not track.has("tags")
    meta = track.meta
    assert (meta["singer"], meta["language"], meta["split"]) == ("S1", "Tagalog", "train")
    assert meta["average_pitch_midi"] == 50.0
    assert meta["lyrics"].startswith("ako ay may lobo")
    assert Path(meta["path"]).is_file()
    for annotator in ("A1", "A2"):
        intervals, pitches = meta["notes"][annotator]
        assert intervals.shape == (len(pitches), 2)
        assert np.all(intervals[:, 1] > intervals[:, 0])
        assert np.all((pitches > 60) & (pitches < 1500))


def test_golden_f0_matches_raw_csv(vocadito_root: Path, track) -> None:
    raw = np.loadtxt(vocadito_root / "Annotations/F0" / f"{TRACK}_f0.csv", delimiter=",")
    times, freqs = track.get("vocal")
    assert raw.shape == (len(times), 2) == (5722, 2)
    np.testing.assert_allclose(times, raw[:, 0])
    np.testing.assert_allclose(np.diff(times), ANNOTATION_HOP_S, atol=1e-9)
    assert int(np.count_nonzero(freqs)) == int(np.count_nonzero(raw[:, 1] > 0)) == 3642
    first = int(np.argmax(freqs > 0))
    assert first == 115
    assert freqs[first] == pytest.approx(140.153)
    # The metadata's average pitch (MIDI 50 = 146.8 Hz) is the median voiced f0 (146.7 Hz).
    median_midi = 69 + 12 * np.log2(np.median(freqs[freqs > 0]) / 440)
    assert abs(median_midi - track.meta["average_pitch_midi"]) < 0.5
    intervals, pitches = track.meta["notes"]["A1"]
    assert len(pitches) == 59
    assert len(track.meta["notes"]["A2"][1]) == 64
    np.testing.assert_allclose(intervals[0], [0.661768707, 0.661768707 + 0.290249433])
    assert pitches[0] == pytest.approx(143.742)


def test_f0_agrees_with_the_audio(track) -> None:
    times, f0 = track.get("vocal")
    voiced = np.flatnonzero(f0 > 0)[::3]  # every third voiced frame keeps it cheap

    def agreement(offset: float) -> float:
        est = harmonic_sum_f0(track.audio, track.sr, times[voiced] + offset, fmax=1500.0)
        return float(np.mean(np.abs(1200 * np.log2(est / f0[voiced])) < 50))

    at_annotated = agreement(0.0)
    assert at_annotated >= 0.9  # measured 0.98 on all voiced frames
    # The annotation is aligned: shifting it by 50 ms fits clearly worse (measured 0.77/0.81).
    assert at_annotated > agreement(-0.05) + 0.1
    assert at_annotated > agreement(+0.05) + 0.1


def test_notes_agree_with_f0(track) -> None:
    """Each annotated note's pitch is the median f0 over its span, within 50 cents."""
    times, f0 = track.get("vocal")
    for annotator in ("A1", "A2"):
        intervals, pitches = track.meta["notes"][annotator]
        errors = []
        for (onset, offset), hz in zip(intervals, pitches, strict=True):
            span = (times >= onset) & (times < offset) & (f0 > 0)
            assert span.any()
            errors.append(abs(1200 * np.log2(np.median(f0[span]) / hz)))
        assert np.mean(np.array(errors) < 50) >= 0.95, annotator  # measured 1.0 for both


def test_split_is_singer_disjoint(vocadito_root: Path) -> None:
    ids = [t for s in SPLIT.values() for t in s]
    assert sorted(ids) == sorted(f"vocadito_{n}" for n in range(1, 41))
    assert [len(SPLIT[s]) for s in ("train", "validation", "test")] == [28, 6, 6]
    with (vocadito_root / "vocadito_metadata.csv").open(newline="") as f:
        singer = {f"vocadito_{r['track_id']}": r["singer_id"] for r in csv.DictReader(f)}
    assert set(singer) == set(ids)
    singers = {s: {singer[t] for t in tracks} for s, tracks in SPLIT.items()}
    assert not singers["train"] & singers["validation"]
    assert not singers["train"] & singers["test"]
    assert not singers["validation"] & singers["test"]
    assert singers["test"] == {"S27", "S28", "S29"}


# ---- synthetic layouts -----------------------------------------------------------------

NATIVE_SR = 8000


def make_vocadito(root: Path, numbers: tuple[int, ...] = (1, 30), f0_rows: str | None = None):
    """Write `numbers` tracks: 1 s of a 220 Hz sine, its f0 csv, one note, metadata."""
    (root / "Audio").mkdir(parents=True)
    for sub in ("F0", "Notes", "Lyrics"):
        (root / "Annotations" / sub).mkdir(parents=True)
    x = 0.1 * np.sin(2 * np.pi * 220 * np.arange(NATIVE_SR) / NATIVE_SR)
    meta = ["track_id,singer_id,average_pitch,language"]
    for n in numbers:
        name = f"vocadito_{n}"
        sf.write(root / "Audio" / f"{name}.wav", x.astype(np.float32), NATIVE_SR)
        times = np.arange(0, 0.99, ANNOTATION_HOP_S)
        rows = "\n".join(f"{t},{0.0 if t < 0.1 else -220.0 if t > 0.9 else 220.0}" for t in times)
        (root / "Annotations/F0" / f"{name}_f0.csv").write_text(f0_rows or rows)
        (root / "Annotations/Notes" / f"{name}_notesA1.csv").write_text("0.1,220.0,0.8\n")
        (root / "Annotations/Lyrics" / f"{name}_lyrics.txt").write_text("la la\n")
        meta.append(f"{n},S{n},57,English")
    (root / "vocadito_metadata.csv").write_text("\n".join(meta) + "\n")
    return root


def test_synthetic_tracks(tmp_path: Path) -> None:
    ds = Vocadito(make_vocadito(tmp_path), sr=NATIVE_SR)
    assert ds.track_ids("train") == ["vocadito_1"]
    assert ds.track_ids("validation") == ["vocadito_30"]
    assert ds.track_ids("test") == []
    track = ds.load("vocadito_30")
    times, f0 = track.get("vocal")
    assert set(np.unique(f0)) == {0.0, 220.0}  # negative (unvoiced) values read as 0 Hz
    assert f0[0] == 0
    assert f0[-1] == 0
    assert track.meta["notes"]["A2"] is None  # a missing annotator file is None
    np.testing.assert_allclose(track.meta["notes"]["A1"][0], [[0.1, 0.9]])
    assert track.meta["singer"] == "S30"
    assert track.meta["split"] == "validation"


def test_missing_root_and_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        Vocadito(tmp_path / "nope")
    with pytest.raises(DatasetError, match=r"Audio does not exist"):
        Vocadito(tmp_path)
    monkeypatch.delenv("VOCADITO_PATH", raising=False)
    with pytest.raises(DatasetError, match="VOCADITO_PATH"):
        Vocadito()
    monkeypatch.setenv("VOCADITO_PATH", str(make_vocadito(tmp_path / "v")))
    assert Vocadito().track_ids("train") == ["vocadito_1"]


def test_unknown_and_missing_tracks(tmp_path: Path) -> None:
    ds = Vocadito(make_vocadito(tmp_path))
    with pytest.raises(DatasetError, match="unknown track id 'foo'"):
        ds.load("foo")
    with pytest.raises(DatasetError, match=r"vocadito_2\.wav is missing"):
        ds.load("vocadito_2")
    with pytest.raises(DatasetError, match="unknown split"):
        ds.track_ids("dev")


def test_corrupt_f0_csv(tmp_path: Path) -> None:
    root = make_vocadito(tmp_path, numbers=(1,), f0_rows="0.0,0.0\n0.0058,abc\n")
    with pytest.raises(DatasetError, match=r"vocadito_1_f0\.csv, line 2: not a number"):
        Vocadito(root).load("vocadito_1")
    (root / "Annotations/F0/vocadito_1_f0.csv").write_text("0.0,0.0\n0.0058\n")
    with pytest.raises(DatasetError, match=r"vocadito_1_f0\.csv, line 2: expected at least 2"):
        Vocadito(root).load("vocadito_1")
    (root / "Annotations/F0/vocadito_1_f0.csv").write_text("0.5,0.0\n0.1,220.0\n")
    with pytest.raises(DatasetError, match=r"vocadito_1_f0\.csv: times decrease"):
        Vocadito(root).load("vocadito_1")
    (root / "Annotations/F0/vocadito_1_f0.csv").write_text("0.0,0.0\n60.0,220.0\n")
    with pytest.raises(DatasetError, match=r"ends at 60\.000 s but the audio lasts 1\.000 s"):
        Vocadito(root).load("vocadito_1")
    (root / "Annotations/F0/vocadito_1_f0.csv").unlink()
    with pytest.raises(DatasetError, match=r"vocadito_1_f0\.csv: annotation file does not exist"):
        Vocadito(root).load("vocadito_1")


def test_corrupt_notes_and_metadata(tmp_path: Path) -> None:
    root = make_vocadito(tmp_path, numbers=(1,))
    (root / "Annotations/Notes/vocadito_1_notesA1.csv").write_text("0.1,220.0\n")
    with pytest.raises(DatasetError, match=r"notesA1\.csv, line 1: expected at least 3"):
        Vocadito(root).load("vocadito_1")
    (root / "vocadito_metadata.csv").write_text("track_id,singer\n1,S1\n")
    with pytest.raises(DatasetError, match=r"metadata\.csv lacks the column\(s\) singer_id"):
        Vocadito(root)
    (root / "vocadito_metadata.csv").write_text(
        "track_id,singer_id,average_pitch,language\none,S1,50,English\n"
    )
    with pytest.raises(DatasetError, match=r"metadata\.csv, line 2: track_id must be an integer"):
        Vocadito(root)


def test_custom_split_file(tmp_path: Path) -> None:
    root = make_vocadito(tmp_path / "v")
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"test": ["vocadito_1"], "train": ["vocadito_30"]}))
    ds = Vocadito(root, split_file=path)
    assert ds.track_ids("test") == ["vocadito_1"]
    assert ds.track_ids("train") == ["vocadito_30"]
    assert ds.load("vocadito_1").meta["split"] == "test"


def test_config_composes_and_trains_on_the_right_tasks(
    compose, vocadito_root: Path, tmp_path: Path
) -> None:
    """data=vocadito builds the DataModule; vocadito labels vocal, melody and multif0
    but not separation (its accompaniment is silent) nor bass."""
    tasks = "task=[vocal,melody,multif0,separation,bass]"
    root = f"data.datasets.vocadito.root={vocadito_root}"
    cfg = compose(["data=vocadito", tasks, root], tmp_path)
    ds = mir_instantiate(cfg.data.datasets.vocadito)
    assert isinstance(ds, Vocadito)
    assert ds.sr == cfg.frontend.sr
    module = instantiate(cfg.model)
    dm = instantiate(cfg.data)
    dm.bind(module.tasks)
    (track,) = dm.tracks("train")
    assert track.name == f"vocadito/{TRACK}"
    labelled = {name for name, task in module.tasks.items() if task.has_labels(track)}
    assert labelled == {"vocal", "melody", "multif0"}
    assert dm.tracks("validation") == []
