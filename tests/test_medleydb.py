"""MedleyDB loader and the shared annotation parsers.

Contract and golden tests read the real fixture (``fixtures/medleydb``: MusicDelta_Reggae)
and skip without it; error cases and split logic run on tiny synthetic layouts.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from mir.data.annotations import (
    read_f0_csv,
    read_numeric_table,
    read_split_file,
    read_time_value_csv,
    resample_f0,
    select_voice,
    union_multif0,
)
from mir.data.medleydb import OFFICIAL_SPLIT, MedleyDB, artist_conditional_split
from mir.data.track import F0_KINDS
from mir.errors import ConfigError, DatasetError

SR = 22050
HOP = 256 / 44100
REGGAE = "MusicDelta_Reggae"


# ---- real fixture ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def mdb_root(fixtures_dir: Path) -> Path:
    root = fixtures_dir / "medleydb"
    if not root.is_dir():
        pytest.skip("MedleyDB fixture not found")
    return root


@pytest.fixture(scope="module")
def reggae(mdb_root: Path):
    return MedleyDB(mdb_root, sr=SR).load(REGGAE)


def _raw_csv(path: Path) -> np.ndarray:
    with path.open(newline="") as f:
        return np.array([[float(r[0]), float(r[1])] for r in csv.reader(f) if r], dtype=float)


def test_loads_every_fixture_track(mdb_root: Path) -> None:
    ds = MedleyDB(mdb_root, sr=SR)
    assert ds.all_track_ids == [REGGAE]
    for track_id in ds.all_track_ids:
        track = ds.load(track_id)
        assert track.name == track_id
        assert track.sr == SR
        assert track.audio.dtype == np.float32
        assert track.audio.ndim == 1
        info = sf.info(str(mdb_root / "Audio" / track_id / f"{track_id}_MIX.wav"))
        assert abs(track.duration - info.duration) < 1e-3
        assert track.has("stems")
        for name, stem in track.get("stems").items():
            assert stem.shape == track.audio.shape, name
            assert stem.dtype == np.float32
        for voice in [k for k in F0_KINDS if track.has(k)]:
            times, freqs = track.get(voice)
            assert times.shape == freqs.shape, voice
            assert np.all(np.diff(times) > 0), voice
            assert np.all(freqs >= 0), voice
            voiced = freqs[freqs > 0]
            assert voiced.size > 0, voice
            assert voiced.min() > 30, voice
            assert voiced.max() < 2000, voice
            assert times[-1] <= track.duration + HOP
        times, frames = track.get("multif0")
        assert len(frames) == len(times)
        assert np.all(np.diff(times) > 0)
        assert all(np.all(f > 30) and np.all(f < 4000) for f in frames)
        assert max(len(f) for f in frames) <= len(track.meta["multif0_stems"])


def test_fixture_stems_and_metadata(reggae) -> None:
    assert sorted(reggae.get("stems")) == [
        "accompaniment", "stem_01", "stem_02", "stem_03", "stem_04", "vocals"
    ]  # fmt: skip
    assert reggae.meta["vocal_stems"] == ["stem_04"]  # male singer
    assert reggae.meta["bass_stems"] == ["stem_02"]  # component: bass
    assert reggae.meta["artist"] == "Music Delta Multitracks"
    assert reggae.meta["split"] == "train"
    assert reggae.meta["instrumental"] is False


def test_vocals_plus_accompaniment_is_the_stem_sum_and_close_to_the_mix(reggae) -> None:
    stems = reggae.get("stems")
    total = sum(stems[f"stem_0{i}"].astype(np.float64) for i in range(1, 5))
    np.testing.assert_allclose(stems["vocals"], stems["stem_04"], atol=1e-6)
    np.testing.assert_allclose(stems["vocals"] + stems["accompaniment"], total, atol=1e-5)
    # The released MIX is the plain stem sum up to mastering: residual below -30 dB
    # (measured -42.6 dB at 22.05 kHz).
    mix = reggae.audio.astype(np.float64)
    residual_db = 10 * np.log10(np.sum((mix - total) ** 2) / np.sum(mix**2))
    assert residual_db < -30
    assert reggae.meta["stem_sum_residual_db"] == pytest.approx(residual_db, abs=0.01)


def test_golden_melody_matches_raw_csv(mdb_root: Path, reggae) -> None:
    raw = _raw_csv(mdb_root / "Annotations/Melody/Melody2" / f"{REGGAE}_MELODY2.csv")
    times, freqs = reggae.get("melody")
    np.testing.assert_allclose(times, raw[:, 0])
    np.testing.assert_allclose(freqs, raw[:, 1])
    voiced = raw[:, 1] > 0
    assert int(np.sum(freqs > 0)) == int(voiced.sum()) == 1154
    np.testing.assert_allclose(freqs[freqs > 0][:5], [189.187, 191.782, 200.344, 207.163, 211.034])
    assert times[np.argmax(freqs > 0)] == pytest.approx(0.023219954, abs=1e-6)


def test_melody1_option(mdb_root: Path) -> None:
    track = MedleyDB(mdb_root, sr=SR, melody="melody1").load(REGGAE)
    raw = _raw_csv(mdb_root / "Annotations/Melody/Melody1" / f"{REGGAE}_MELODY1.csv")
    np.testing.assert_allclose(track.get("melody")[1], raw[:, 1])
    assert track.meta["f0_sources"]["melody"].endswith("_MELODY1.csv")
    with pytest.raises(ConfigError, match="melody3"):
        MedleyDB(mdb_root, melody="melody3")


def test_golden_vocal_f0_matches_stem_pitch_file(mdb_root: Path, reggae) -> None:
    # The raw file has a stray third column ("[2]") on 75 rows; only time,f0 are read.
    path = mdb_root / "Annotations/Pitch" / f"{REGGAE}_STEM_04.csv"
    with path.open(newline="") as f:
        raw = np.array([[float(r[0]), float(r[1])] for r in csv.reader(f) if r])
    times, freqs = reggae.get("vocal")
    assert np.all(np.abs(np.diff(times) - HOP) < 1e-9)
    voiced = freqs > 0
    assert int(voiced.sum()) == len(raw) == 1154
    np.testing.assert_allclose(times[voiced], raw[:, 0], atol=1e-6)
    np.testing.assert_allclose(freqs[voiced], raw[:, 1])
    # Here MELODY2 is the singer's line, so it equals the vocal pitch frame for frame.
    np.testing.assert_allclose(reggae.get("melody")[1], freqs, atol=1e-9)
    np.testing.assert_allclose(reggae.get("multif0")[0], times)
    assert [len(f) for f in reggae.get("multif0")[1]] == voiced.astype(int).tolist()


def test_bass_needs_a_manual_annotation_or_pyin_fallback(mdb_root: Path, reggae) -> None:
    # The fixture has only a pYIN estimate for the bass stem: no manual bass f0.
    assert not reggae.has("bass")
    track = MedleyDB(mdb_root, sr=SR, pyin_fallback=True).load(REGGAE)
    times, freqs = track.get("bass")
    assert "Pitch_Pyin" in track.meta["f0_sources"]["stem_pitch"]["stem_02"]
    voiced = freqs[freqs > 0]
    assert voiced.min() > 30
    assert voiced.max() < 300
    assert 900 < voiced.size <= 1007  # 1007 pYIN frames, a few gated off by activation
    assert track.meta["multif0_stems"] == ["stem_02", "stem_04"]
    assert max(len(f) for f in track.get("multif0")[1]) == 2


def test_annotations_root_and_metadata_dir(mdb_root: Path, tmp_path: Path) -> None:
    # Audio without annotations or per-track metadata; the package data folder elsewhere.
    audio_root = tmp_path / "audio_only"
    (audio_root / "Audio" / REGGAE).mkdir(parents=True)
    src = mdb_root / "Audio" / REGGAE
    (audio_root / "Audio" / REGGAE / f"{REGGAE}_MIX.wav").symlink_to(src / f"{REGGAE}_MIX.wav")
    with pytest.raises(DatasetError, match="METADATA"):
        MedleyDB(audio_root).load(REGGAE)
    track = MedleyDB(audio_root, annotations_root=mdb_root).load(REGGAE)
    assert not track.has("stems")  # no _STEMS folder: mix-only
    assert int(np.sum(track.get("melody")[1] > 0)) == 1154


def test_official_split_is_disjoint_and_artist_conditional() -> None:
    splits = {k: set(v) for k, v in OFFICIAL_SPLIT.items()}
    assert set(splits) == {"train", "validation", "test"}
    assert [len(OFFICIAL_SPLIT[s]) for s in ("train", "validation", "test")] == [184, 28, 28]
    assert not (splits["train"] & splits["validation"])
    assert not (splits["train"] & splits["test"])
    assert not (splits["validation"] & splits["test"])
    # Artist = id prefix, except where the medleydb artist index differs: every MusicDelta
    # piece has its own session artist (the Chinese ones share one), and Mozart_* are two
    # different NYU singers.
    artist_split: dict[str, str] = {}
    for split, ids in splits.items():
        for track_id in ids:
            artist = track_id.split("_")[0]
            if artist == "MusicDelta":
                artist = "MusicDeltaChinese" if "_Chinese" in track_id else track_id
            if artist == "Mozart":
                artist = track_id
            assert artist_split.setdefault(artist, split) == split, track_id


def test_split_of_fixture_and_custom_split_file(mdb_root: Path, tmp_path: Path) -> None:
    ds = MedleyDB(mdb_root)
    assert ds.track_ids("train") == [REGGAE]
    assert ds.track_ids("test") == []
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": [], "validate": [], "test": [REGGAE, "Absent_Track"]}))
    ds = MedleyDB(mdb_root, split_file=split)
    assert ds.track_ids("test") == [REGGAE]  # ids not on disk are dropped
    assert ds.track_ids("validation") == []
    with pytest.raises(DatasetError, match="unknown split"):
        ds.track_ids("dev")


# ---- synthetic layouts -----------------------------------------------------------------

NATIVE_SR = 8000


def _tone(f0: float, n: int, sr: int = NATIVE_SR, amp: float = 0.2) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * f0 * np.arange(n) / sr)).astype(np.float32)


def make_medleydb(
    root: Path,
    track: str = "Artist_Song",
    stems: dict[str, tuple[str, float]] | None = None,
    n: int = NATIVE_SR,
    stem_sr: dict[str, int] | None = None,
    stem_len: dict[str, int] | None = None,
    pitch: dict[str, list[tuple[float, float]]] | None = None,
    activation: str | None = None,
) -> Path:
    """Write Audio/<track>/ with a mix = sum of sine stems, metadata, and annotations."""
    stems = stems or {"S01": ("male singer", 220.0), "S02": ("electric bass", 55.0)}
    folder = root / "Audio" / track
    stem_dir = folder / f"{track}_STEMS"
    stem_dir.mkdir(parents=True)
    mix = np.zeros(n, dtype=np.float32)
    meta_stems = {}
    for key, (instrument, f0) in stems.items():
        fname = f"{track}_STEM_{key[1:]}.wav"
        rate = (stem_sr or {}).get(key, NATIVE_SR)
        length = (stem_len or {}).get(key, n)
        x = _tone(f0, length, rate)
        sf.write(stem_dir / fname, x, rate)
        mix += _tone(f0, n)
        meta_stems[key] = {"component": "", "filename": fname, "instrument": instrument}
    sf.write(folder / f"{track}_MIX.wav", mix, NATIVE_SR)
    meta = {
        "artist": track.split("_")[0],
        "title": track.split("_")[1],
        "mix_filename": f"{track}_MIX.wav",
        "stem_dir": f"{track}_STEMS",
        "instrumental": "no",
        "stems": meta_stems,
    }
    (folder / f"{track}_METADATA.yaml").write_text(yaml.safe_dump(meta))
    grid = HOP * np.arange(int(n / NATIVE_SR / HOP) + 1)
    melody = root / "Annotations/Melody/Melody2"
    melody.mkdir(parents=True)
    rows = [f"{t:.12f},{220.0 if 0.1 <= t < 0.5 else 0.0}" for t in grid]
    (melody / f"{track}_MELODY2.csv").write_text("\n".join(rows) + "\n")
    pitch_dir = root / "Annotations/Pitch"
    pitch_dir.mkdir(parents=True)
    for key, series in (pitch or {}).items():
        text = "".join(f"{t:.9f},{f}\n" for t, f in series)
        (pitch_dir / f"{track}_STEM_{key[1:]}.csv").write_text(text)
    if activation is not None:
        act = root / "Annotations/Activation_Confidence/v2"
        act.mkdir(parents=True)
        (act / f"{track}_ACTIVATION_CONF.lab").write_text(activation)
    return root


def test_synthetic_track_loads(tmp_path: Path) -> None:
    pitch = {"S01": [(k * HOP, 220.0) for k in range(10, 20)]}
    root = make_medleydb(tmp_path, pitch=pitch)
    track = MedleyDB(root, sr=NATIVE_SR).load("Artist_Song")
    # Stems and mix were each quantized to 16 bits: equal to a few LSBs.
    np.testing.assert_allclose(
        track.get("stems")["vocals"] + track.get("stems")["accompaniment"], track.audio, atol=2e-4
    )
    times, freqs = track.get("vocal")
    assert np.flatnonzero(freqs).tolist() == list(range(10, 20))
    assert track.meta["stem_sum_residual_db"] < -60
    assert track.meta["split"] is None  # not in the official split
    assert not track.has("bass")  # bass stem has no pitch file: absent, not faked


def test_instrumental_track_has_no_vocals(tmp_path: Path) -> None:
    stems = {"S01": ("violin", 440.0), "S02": ("double bass", 55.0)}
    pitch = {"S02": [(k * HOP, 55.0) for k in range(5)]}
    root = make_medleydb(tmp_path, stems=stems, pitch=pitch)
    track = MedleyDB(root, sr=NATIVE_SR).load("Artist_Song")
    assert "vocals" not in track.get("stems")
    assert "accompaniment" not in track.get("stems")
    assert not track.has("vocal")
    assert track.meta["instrumental"] is True
    assert np.count_nonzero(track.get("bass")[1]) == 5  # bass from the instrument label


def test_two_vocal_stems_pick_the_more_active(tmp_path: Path) -> None:
    stems = {"S01": ("male singer", 200.0), "S02": ("female singer", 400.0)}
    frames = range(0, 100)
    pitch = {"S01": [(k * HOP, 200.0) for k in frames], "S02": [(k * HOP, 400.0) for k in frames]}
    # S01 more active in the first 0.25 s, S02 after.
    act = "time,S01,S02\n0.0,0.9,0.1\n0.25,0.9,0.1\n0.2501,0.1,0.9\n1.0,0.1,0.9\n"
    root = make_medleydb(tmp_path, stems=stems, pitch=pitch, activation=act)
    times, freqs = MedleyDB(root, sr=NATIVE_SR).load("Artist_Song").get("vocal")
    assert np.all(freqs[(times < 0.24) & (freqs > 0)] == 200.0)
    assert np.all(freqs[(times > 0.26) & (freqs > 0)] == 400.0)
    assert np.count_nonzero(freqs) == 100


def test_nonexistent_root(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError, match=str(missing)):
        MedleyDB(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="Audio"):
        MedleyDB(tmp_path / "empty")


def test_env_var_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_medleydb(tmp_path / "mdb")
    monkeypatch.setenv("MEDLEYDB_PATH", str(root))
    assert MedleyDB().all_track_ids == ["Artist_Song"]
    monkeypatch.delenv("MEDLEYDB_PATH")
    with pytest.raises(DatasetError, match="MEDLEYDB_PATH"):
        MedleyDB()


def test_missing_track(tmp_path: Path) -> None:
    root = make_medleydb(tmp_path)
    with pytest.raises(DatasetError, match="Other_Track"):
        MedleyDB(root).load("Other_Track")
    with pytest.raises(DatasetError, match="Other_Track"):
        MedleyDB(root, tracks=["Artist_Song", "Other_Track"])
    assert MedleyDB(root, tracks=["Artist_Song"]).all_track_ids == ["Artist_Song"]


def test_missing_metadata(tmp_path: Path) -> None:
    root = make_medleydb(tmp_path)
    meta = root / "Audio/Artist_Song/Artist_Song_METADATA.yaml"
    meta.unlink()
    with pytest.raises(DatasetError, match="Artist_Song_METADATA.yaml"):
        MedleyDB(root).load("Artist_Song")


def test_unparsable_metadata(tmp_path: Path) -> None:
    root = make_medleydb(tmp_path)
    meta = root / "Audio/Artist_Song/Artist_Song_METADATA.yaml"
    meta.write_text("stems: {S01: [unclosed\n")
    with pytest.raises(DatasetError, match="cannot parse metadata .*METADATA.yaml"):
        MedleyDB(root).load("Artist_Song")
    meta.write_text("stems: [1, 2]\n")
    with pytest.raises(DatasetError, match="stems"):
        MedleyDB(root).load("Artist_Song")


def test_malformed_csv_line_names_file_and_line(tmp_path: Path) -> None:
    root = make_medleydb(tmp_path)
    path = root / "Annotations/Melody/Melody2/Artist_Song_MELODY2.csv"
    lines = path.read_text().splitlines()
    lines[3] = "0.017,abc"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"Artist_Song_MELODY2\.csv, line 4: not a number"):
        MedleyDB(root).load("Artist_Song")


def test_stem_sample_rate_mismatch(tmp_path: Path) -> None:
    root = make_medleydb(tmp_path, stem_sr={"S02": 16000})
    with pytest.raises(DatasetError, match=r"STEM_02\.wav is at 16000 Hz but the mix is at 8000"):
        MedleyDB(root).load("Artist_Song")


def test_stem_length_mismatch(tmp_path: Path) -> None:
    root = make_medleydb(tmp_path / "a", stem_len={"S01": NATIVE_SR - 100})
    with pytest.raises(DatasetError, match=r"STEM_01\.wav has 7900 samples but the mix has 8000"):
        MedleyDB(root).load("Artist_Song")
    # A few samples off is tolerated (padded to the mix length).
    root = make_medleydb(tmp_path / "b", stem_len={"S01": NATIVE_SR - 3})
    track = MedleyDB(root, sr=NATIVE_SR).load("Artist_Song")
    assert track.get("stems")["stem_01"].shape == track.audio.shape


def test_missing_stem_file(tmp_path: Path) -> None:
    root = make_medleydb(tmp_path)
    (root / "Audio/Artist_Song/Artist_Song_STEMS/Artist_Song_STEM_02.wav").unlink()
    with pytest.raises(DatasetError, match="STEM_02.wav"):
        MedleyDB(root).load("Artist_Song")


def test_artist_conditional_split() -> None:
    artists = {f"A{a}_Song{s}": f"A{a}" for a in range(30) for s in range(1 + a % 4)}
    split = artist_conditional_split(artists, seed=3)
    assert split == artist_conditional_split(artists, seed=3)  # deterministic
    assert split != artist_conditional_split(artists, seed=4)
    ids = [t for v in split.values() for t in v]
    assert sorted(ids) == sorted(artists)  # disjoint and complete
    where = {t: s for s, v in split.items() for t in v}
    for track, artist in artists.items():
        same = [t for t, a in artists.items() if a == artist]
        assert {where[t] for t in same} == {where[track]}
    share = len(split["train"]) / len(artists)
    assert 0.5 < share < 0.7
    with pytest.raises(ValueError, match="fractions"):
        artist_conditional_split(artists, fractions=(0.5, 0.5, 0.5))


def test_split_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"train": ["a"], "test": ["a"]}))
    with pytest.raises(DatasetError, match="'a' is in both"):
        read_split_file(path)
    path.write_text("{not json")
    with pytest.raises(DatasetError, match="s.json"):
        read_split_file(path)
    path.write_text(json.dumps({"dev": []}))
    with pytest.raises(DatasetError, match="unknown split 'dev'"):
        read_split_file(path)


# ---- shared annotation parsers ---------------------------------------------------------


def test_read_time_value_csv_formats(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"0.0,0.0\r\n0.01,100.5,[2] \r\n\r\n0.02,-50\r\n")  # CRLF, extra column
    times, values = read_time_value_csv(path)
    np.testing.assert_allclose(times, [0.0, 0.01, 0.02])
    np.testing.assert_allclose(values, [0.0, 100.5, -50.0])
    np.testing.assert_allclose(read_f0_csv(path)[1], [0.0, 100.5, 0.0])  # negative: unvoiced
    tsv = tmp_path / "b.txt"
    tsv.write_text("time\tf0\n0.5\t1\n1.5\t2\n")  # header auto-detected, tab separated
    np.testing.assert_allclose(read_time_value_csv(tsv)[0], [0.5, 1.5])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.0,1\n0.1\n", r"line 2: expected at least 2 fields"),
        ("0.0,1\n0.1,nan\n", r"line 2: NaN"),
        ("0.0,1\n0.2,1\n0.1,1\n", r"times decrease at row 3"),
        ("0.0,1\n\n0.1,x\n", r"line 3: not a number"),
    ],
)
def test_read_time_value_csv_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DatasetError, match=rf"bad\.csv.*{message}"):
        read_time_value_csv(path)
    with pytest.raises(DatasetError, match="does not exist"):
        read_numeric_table(tmp_path / "missing.csv")


def test_resample_f0_keeps_gaps_unvoiced() -> None:
    grid = 0.01 * np.arange(10)
    # Voiced-only input with a gap at frames 4-5, on a slightly jittered grid.
    times = np.array([0.0, 0.01, 0.02, 0.03, 0.06, 0.07]) + 1e-9
    freqs = np.array([100.0, 110, 120, 130, 200, 0])
    out = resample_f0(times, freqs, grid)
    np.testing.assert_allclose(out, [100, 110, 120, 130, 0, 0, 200, 0, 0, 0])
    fine = 0.005 * np.arange(10)
    lin = resample_f0(times[:4], freqs[:4], fine, max_gap=0.005, method="linear")
    assert lin[1] == pytest.approx(np.sqrt(100 * 110), rel=1e-6)  # log-frequency midpoint
    assert lin[7] == 130.0  # within max_gap of the last sample
    assert lin[9] == 0.0  # past the end: unvoiced
    assert resample_f0(np.zeros(0), np.zeros(0), grid).tolist() == [0.0] * 10


def test_union_and_select_voice() -> None:
    grid = 0.01 * np.arange(4)
    a = (grid, np.array([100.0, 0, 100, 0]))
    b = (grid[1:], np.array([300.0, 50, 0]))
    times, frames = union_multif0([a, b], grid)
    assert [f.tolist() for f in frames] == [[100.0], [300.0], [50.0, 100.0], []]
    picked = select_voice([a[1], np.array([0.0, 0, 200, 200])], [np.zeros(4), np.ones(4)])
    np.testing.assert_allclose(picked, [100, 0, 200, 200])
