"""MDB Drums and ENST-Drums loaders: fixture contract, golden and physics tests; errors."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mir.data.base import SPLITS
from mir.data.mdb_drums import (
    CLASS_MAP,
    ENST_CLASSES,
    SUBCLASS_TO_8,
    ENSTDrums,
    MDBDrums,
    fold_splits,
)
from mir.errors import DatasetError

FIXTURE_TRACKS = [
    "MusicDelta_Beatles",
    "MusicDelta_Country1",
    "MusicDelta_Punk",
    "MusicDelta_Reggae",
]


@pytest.fixture(scope="module")
def mdb_root(fixtures_dir: Path) -> Path:
    return fixtures_dir / "mdb_drums"


@pytest.fixture(scope="module")
def mdb(mdb_root: Path) -> MDBDrums:
    return MDBDrums(mdb_root, sr=22050, audio_source="drum_only")


@pytest.fixture(scope="module")
def tracks(mdb: MDBDrums) -> dict:
    return {t: mdb.load(t) for t in FIXTURE_TRACKS}


def _plain_parse(path: Path) -> list[tuple[float, str]]:
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            t, label = line.split()
            rows.append((float(t), label))
    return rows


# contract -------------------------------------------------------------------------------


def test_every_fixture_track_listed(mdb: MDBDrums) -> None:
    ids = sorted(t for s in SPLITS for t in mdb.track_ids(s))
    assert ids == FIXTURE_TRACKS


@pytest.mark.parametrize("track_id", FIXTURE_TRACKS)
def test_track_contract(tracks: dict, track_id: str) -> None:
    tr = tracks[track_id]
    assert tr.name == track_id
    assert tr.sr == 22050
    assert tr.audio.dtype == np.float32
    assert tr.audio.ndim == 1
    assert tr.duration > 10
    assert set(tr.get("onsets")) == set(CLASS_MAP.values())
    for times in tr.get("onsets").values():
        assert np.all(np.diff(times) >= 0)
        assert np.all((times >= 0) & (times <= tr.duration))
    assert sum(len(v) for v in tr.get("onsets").values()) > 0
    assert tr.has("beats")
    assert np.all(np.diff(tr.get("beats")) > 0)
    assert np.all(tr.get("beats") <= tr.duration)
    assert set(tr.get("downbeats")) <= set(tr.get("beats"))
    assert 0 < len(tr.get("downbeats")) < len(tr.get("beats"))
    assert not tr.has("tags")
    assert tr.meta["audio_source"] == "drum_only"
    # the drum-only stem has no vocals; it is all accompaniment (remix material)
    assert sorted(tr.get("stems")) == ["accompaniment", "vocals"]
    assert not np.any(tr.get("stems")["vocals"])
    np.testing.assert_array_equal(tr.get("stems")["accompaniment"], tr.audio)


# golden ---------------------------------------------------------------------------------


@pytest.mark.parametrize("track_id", FIXTURE_TRACKS)
def test_class_counts_match_plain_parse(mdb_root: Path, tracks: dict, track_id: str) -> None:
    rows = _plain_parse(mdb_root / "annotations" / "class" / f"{track_id}_class.txt")
    counts = Counter(label for _, label in rows)
    tr = tracks[track_id]
    for label, key in CLASS_MAP.items():
        assert len(tr.get("onsets")[key]) == counts.get(label, 0), label
        expected = sorted(t for t, lab in rows if lab == label)
        np.testing.assert_allclose(tr.get("onsets")[key][:5], expected[:5])
    assert sum(len(v) for v in tr.get("onsets").values()) == len(rows)


def test_known_values(tracks: dict) -> None:
    reggae = tracks["MusicDelta_Reggae"]
    np.testing.assert_allclose(reggae.get("onsets")["kick"][:3], [0.055147, 0.597914, 1.14068])
    assert len(reggae.get("onsets")["kick"]) == 31
    assert len(reggae.get("onsets")["snare"]) == 10
    assert len(reggae.get("onsets")["hihat"]) == 34
    np.testing.assert_allclose(reggae.get("beats")[:5], [0.01, 0.58, 1.13, 1.68, 2.24])
    np.testing.assert_allclose(reggae.get("downbeats")[:2], [0.01, 2.24])
    assert len(reggae.get("beats")) == 32
    assert len(reggae.get("downbeats")) == 8


def test_subclass_groups(mdb_root: Path) -> None:
    ds = MDBDrums(mdb_root, audio_source="drum_only", classes="subclass")
    assert ds.class_names == [
        "kick", "snare", "hihat_closed", "hihat_open", "tom", "crash", "ride", "other",
    ]  # fmt: skip
    for track_id in FIXTURE_TRACKS:
        tr = ds.load(track_id)
        rows = _plain_parse(mdb_root / "annotations" / "subclass" / f"{track_id}_subclass.txt")
        counts = Counter(SUBCLASS_TO_8[label] for _, label in rows)
        assert {k: len(v) for k, v in tr.get("onsets").items()} == {
            k: counts.get(k, 0) for k in tr.get("onsets")
        }
        # a subclass group never straddles two MDB classes
        cls = MDBDrums(mdb_root, audio_source="drum_only").load(track_id).get("onsets")
        assert len(tr.get("onsets")["hihat_closed"]) + len(tr.get("onsets")["hihat_open"]) == len(
            cls["hihat"]
        )
        assert len(tr.get("onsets")["kick"]) == len(cls["kick"])


# physics --------------------------------------------------------------------------------


def _energy_rise(x: np.ndarray, sr: int, hop_s: float = 0.005) -> tuple[np.ndarray, int]:
    """Rise of frame log-energy over 10 ms, in dB, one value per 5 ms frame."""
    hop = int(hop_s * sr)
    n = len(x) // hop
    e = 10 * np.log10(np.add.reduceat(x[: n * hop] ** 2, np.arange(0, n * hop, hop)) + 1e-10)
    rise = np.zeros_like(e)
    rise[2:] = e[2:] - e[:-2]
    return rise, hop


def _burst_fraction(rise: np.ndarray, hop: int, sr: int, times: np.ndarray) -> float:
    hits = []
    for t in times:
        a, b = max(0, int((t - 0.03) * sr / hop)), int((t + 0.03) * sr / hop) + 1
        hits.append(rise[a:b].max() > 10.0)
    return float(np.mean(hits))


@pytest.mark.parametrize("track_id", FIXTURE_TRACKS)
def test_kick_onsets_sit_on_energy_bursts(tracks: dict, track_id: str) -> None:
    tr = tracks[track_id]
    rise, hop = _energy_rise(tr.audio, tr.sr)
    kicks = tr.get("onsets")["kick"]
    assert _burst_fraction(rise, hop, tr.sr, kicks) >= 0.9
    # the criterion discriminates: the same pattern shifted by 137 ms mostly misses
    shifted = kicks[kicks + 0.137 < tr.duration] + 0.137
    assert _burst_fraction(rise, hop, tr.sr, shifted) < 0.8


# splits ---------------------------------------------------------------------------------


def test_fold_splits_partition() -> None:
    ids = [f"T{i:02d}" for i in range(23)]
    tests = []
    for fold in range(3):
        s = fold_splits(ids, fold)
        for a, b in itertools.combinations(SPLITS, 2):
            assert not set(s[a]) & set(s[b])
        assert sorted(s["train"] + s["validation"] + s["test"]) == ids
        assert sorted(len(v) for v in s.values()) == [7, 8, 8]
        tests.append(set(s["test"]))
        assert s["validation"] == fold_splits(ids, (fold + 1) % 3)["test"]
    assert set().union(*tests) == set(ids)  # every track is tested exactly once
    assert fold_splits(ids, 1) == fold_splits(list(reversed(ids)), 1)  # deterministic
    with pytest.raises(DatasetError, match="fold"):
        fold_splits(ids, 3)


def test_fixture_folds_disjoint(mdb_root: Path) -> None:
    for fold in range(3):
        ds = MDBDrums(mdb_root, audio_source="drum_only", fold=fold)
        ids = {s: set(ds.track_ids(s)) for s in SPLITS}
        for a, b in itertools.combinations(SPLITS, 2):
            assert not ids[a] & ids[b]
        assert set().union(*ids.values()) == set(FIXTURE_TRACKS)


# errors ---------------------------------------------------------------------------------


def _mdb_layout(
    root: Path, class_text: str = "0.5\tKD\n1.0\tSD\n", beats: str | None = None
) -> Path:
    (root / "annotations" / "class").mkdir(parents=True)
    (root / "audio" / "drum_only").mkdir(parents=True)
    (root / "annotations" / "class" / "Song_class.txt").write_text(class_text)
    sf.write(root / "audio" / "drum_only" / "Song_Drum.wav", np.zeros(44100, np.float32), 44100)
    if beats is not None:
        (root / "annotations" / "beats").mkdir(parents=True)
        (root / "annotations" / "beats" / "Song_MIX.beats").write_text(beats)
    return root


def test_synthetic_track_loads(tmp_path: Path) -> None:
    ds = MDBDrums(_mdb_layout(tmp_path, beats="0.1 1\n0.6 2\n1.1\t1\n"), audio_source="drum_only")
    tr = ds.load("Song")
    np.testing.assert_allclose(tr.get("onsets")["kick"], [0.5])
    np.testing.assert_allclose(tr.get("onsets")["snare"], [1.0])
    assert len(tr.get("onsets")["hihat"]) == 0
    np.testing.assert_allclose(tr.get("downbeats"), [0.1, 1.1])


def test_nonexistent_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        MDBDrums(tmp_path / "nope")


def test_root_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MDB_DRUMS_PATH", str(_mdb_layout(tmp_path)))
    assert MDBDrums(audio_source="drum_only").track_ids("test") == ["Song"]


def test_missing_full_mix_suggests_drum_only(tmp_path: Path) -> None:
    ds = MDBDrums(_mdb_layout(tmp_path))
    with pytest.raises(DatasetError, match=r"Song_MIX\.wav does not exist.*drum_only"):
        ds.load("Song")


@pytest.mark.parametrize(
    ("text", "line", "why"),
    [
        ("0.5\tKD\n1.0 SD extra\n", 2, "expected 'time label'"),
        ("0.5\tKD\n\nabc\tSD\n", 3, "time .abc. is not a number"),
        ("0.5\tKD\n1.0\tXX\n", 2, "unknown label 'XX'"),
        ("-1.0\tKD\n", 1, "time .-1.0. is not a non-negative"),
    ],
)
def test_malformed_annotation_names_file_and_line(
    tmp_path: Path, text: str, line: int, why: str
) -> None:
    ds = MDBDrums(_mdb_layout(tmp_path, class_text=text), audio_source="drum_only")
    with pytest.raises(DatasetError, match=rf"Song_class\.txt, line {line}: {why}"):
        ds.load("Song")


def test_malformed_beats_names_file_and_line(tmp_path: Path) -> None:
    ds = MDBDrums(_mdb_layout(tmp_path, beats="0.1 1\n0.6 two\n"), audio_source="drum_only")
    with pytest.raises(DatasetError, match=r"Song_MIX\.beats, line 2: beat position"):
        ds.load("Song")


def test_bad_options(tmp_path: Path) -> None:
    root = _mdb_layout(tmp_path)
    with pytest.raises(DatasetError, match="audio_source"):
        MDBDrums(root, audio_source="stems")
    with pytest.raises(DatasetError, match="classes"):
        MDBDrums(root, classes="fine")
    with pytest.raises(DatasetError, match="fold"):
        MDBDrums(root, fold=5)
    with pytest.raises(DatasetError, match="unknown track"):
        MDBDrums(root, audio_source="drum_only").load("Other")


# ENST-Drums -------------------------------------------------------------------------------


def _enst_layout(root: Path) -> Path:
    rows = "0.100 bd\n0.350 chh\n0.600 sd\n0.600 ohh\n0.850 rc3\n1.000 lmt\n1.200 cb\n"
    for k in (1, 2, 3):
        for name in (f"00{k}_hits", f"01{k}_phrase"):
            ann = root / f"drummer_{k}" / "annotation"
            audio = root / f"drummer_{k}" / "audio" / "wet_mix"
            ann.mkdir(parents=True, exist_ok=True)
            audio.mkdir(parents=True, exist_ok=True)
            (ann / f"{name}.txt").write_text(rows)
            sf.write(audio / f"{name}.wav", np.zeros(2 * 44100, np.float32), 44100)
    return root


def test_enst_loads_and_maps_labels(tmp_path: Path) -> None:
    ds = ENSTDrums(_enst_layout(tmp_path), sr=16000)
    tr = ds.load("drummer_1/001_hits")
    assert tr.sr == 16000
    assert tr.audio.shape == (32000,)
    assert set(tr.get("onsets")) == set(ENST_CLASSES)
    np.testing.assert_allclose(tr.get("onsets")["kick"], [0.1])
    np.testing.assert_allclose(tr.get("onsets")["snare"], [0.6])
    np.testing.assert_allclose(tr.get("onsets")["hihat"], [0.35, 0.6])
    np.testing.assert_allclose(tr.get("onsets")["cymbal"], [0.85])
    np.testing.assert_allclose(tr.get("onsets")["tom"], [1.0])
    np.testing.assert_allclose(tr.get("onsets")["other"], [1.2])


def test_enst_folds_by_drummer(tmp_path: Path) -> None:
    root = _enst_layout(tmp_path)
    for fold in range(3):
        ds = ENSTDrums(root, fold=fold)
        ids = {s: ds.track_ids(s) for s in SPLITS}
        drummers = {s: {t.split("/")[0] for t in v} for s, v in ids.items()}
        assert drummers["test"] == {f"drummer_{fold + 1}"}
        assert drummers["validation"] == {f"drummer_{(fold + 1) % 3 + 1}"}
        for a, b in itertools.combinations(SPLITS, 2):
            assert not drummers[a] & drummers[b]
        assert sum(len(v) for v in ids.values()) == 6


def test_enst_errors(tmp_path: Path) -> None:
    root = _enst_layout(tmp_path / "enst")
    (root / "drummer_2" / "annotation" / "012_phrase.txt").write_text("0.1 bd\nbad\n")
    with pytest.raises(DatasetError, match=r"012_phrase\.txt, line 2"):
        ENSTDrums(root).load("drummer_2/012_phrase")
    with pytest.raises(DatasetError, match="mix"):
        ENSTDrums(root, mix="wet")
    with pytest.raises(DatasetError, match="no drummer"):
        ENSTDrums(tmp_path / "enst" / "drummer_1")
    with pytest.raises(DatasetError, match="dry_mix.*does not exist"):
        ENSTDrums(root, mix="dry_mix").load("drummer_1/001_hits")
