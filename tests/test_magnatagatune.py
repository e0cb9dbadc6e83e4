"""MagnaTagATune loader on synthetic layouts in the real CSV format (no fixture exists)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from mir.data.base import SPLITS
from mir.data.magnatagatune import SPLIT_OF_FOLDER, MagnaTagATune
from mir.errors import DatasetError

REPO = Path(__file__).resolve().parents[1]
TAGS = ["no voice", "guitar", "classical", "slow", "techno", "rock"]
# clip_id, folder, tags present
CLIPS = [
    ("2", "0", ["guitar", "slow", "rock"]),
    ("6", "3", ["guitar", "classical"]),
    ("10", "a", ["guitar", "techno"]),
    ("11", "b", ["no voice"]),
    ("15", "c", ["guitar", "slow"]),
    ("20", "d", ["classical", "slow"]),
    ("31", "e", []),
    ("43", "f", ["rock"]),
]
# frequencies: guitar 4, slow 3, classical 2, rock 2, no voice 1, techno 1


def _mp3_supported() -> bool:
    return "MP3" in sf.available_formats()


def _write_layout(root: Path, ext: str = "mp3", sr: int = 16000, rows: list | None = None) -> Path:
    """The real ``annotations_final.csv`` format (tab separated, every field quoted)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(f'"{c}"' for c in ["clip_id", *TAGS, "mp3_path"])]
    t = np.arange(sr // 2) / sr
    for i, (clip_id, folder, tags) in enumerate(rows or CLIPS):
        rel = f"{folder}/artist-album-{clip_id:0>2}-title-0-29.{ext}"
        values = ["1" if tag in tags else "0" for tag in TAGS]
        lines.append("\t".join(f'"{v}"' for v in [clip_id, *values, rel]))
        path = root / "mp3" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        x = (0.3 * np.sin(2 * np.pi * (220 + 20 * i) * t)).astype(np.float32)
        sf.write(path, x, sr, format="MP3" if ext == "mp3" else "WAV")
    (root / "annotations_final.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def mtat_root(tmp_path: Path) -> Path:
    return _write_layout(tmp_path / "mtat", ext="mp3" if _mp3_supported() else "wav")


def test_vocabulary_by_frequency(mtat_root: Path) -> None:
    ds = MagnaTagATune(mtat_root, n_tags=4)
    # ties (classical, rock: 2 each) keep CSV column order
    assert ds.tags == ["guitar", "slow", "classical", "rock"]
    assert ds.tag_counts == {"guitar": 4, "slow": 3, "classical": 2, "rock": 2}


def test_splits_by_folder(mtat_root: Path) -> None:
    ds = MagnaTagATune(mtat_root, n_tags=6)
    ids = {s: ds.track_ids(s) for s in SPLITS}
    assert ids == {
        "train": ["10", "11", "2", "6"],
        "validation": ["15"],
        "test": ["20", "31", "43"],
    }
    for a, b in itertools.combinations(SPLITS, 2):
        assert not set(ids[a]) & set(ids[b])
    assert sorted(SPLIT_OF_FOLDER) == list("0123456789abcdef")
    assert [SPLIT_OF_FOLDER[d] for d in "0123456789abcdef"].count("train") == 12


def test_track_contract(mtat_root: Path) -> None:
    ds = MagnaTagATune(mtat_root, sr=22050, n_tags=3)
    tr = ds.load("2")
    assert tr.sr == 22050
    assert tr.audio.dtype == np.float32
    assert tr.audio.ndim == 1
    assert tr.duration == pytest.approx(0.5, abs=0.06)  # mp3 adds encoder padding
    assert tr.get("tags") == ["guitar", "slow"]  # rock is not in the top 3
    assert not tr.has("onsets")
    assert not tr.has("stems")
    assert tr.meta["split"] == "train"
    assert ds.load("31").get("tags") == []  # no tag at all: kept, labelled none present
    assert ds.load("43").get("tags") == []  # only a tag outside the vocabulary


def test_explicit_vocabulary(mtat_root: Path) -> None:
    ds = MagnaTagATune(mtat_root, tags=["rock", "techno"])
    assert ds.tags == ["rock", "techno"]
    assert ds.load("2").get("tags") == ["rock"]
    with pytest.raises(DatasetError, match="tags not in"):
        MagnaTagATune(mtat_root, tags=["rock", "polka"])


def test_path_column_taken_as_given(tmp_path: Path) -> None:
    root = _write_layout(tmp_path / "mtat", ext="wav")
    ds = MagnaTagATune(root, sr=16000, n_tags=6)
    assert ds.load("20").audio.shape == (8000,)
    # audio directly under the root, without the mp3/ folder
    flat = tmp_path / "flat"
    (root / "mp3").rename(flat)
    (root / "annotations_final.csv").rename(flat / "annotations_final.csv")
    assert MagnaTagATune(flat, sr=16000, n_tags=6).load("20").audio.shape == (8000,)


def test_config_lists_standard_top50() -> None:
    cfg = yaml.safe_load((REPO / "conf" / "data" / "magnatagatune.yaml").read_text())
    tags = cfg["tags"]
    assert len(tags) == 50
    assert len(set(tags)) == 50
    assert tags[:3] == ["guitar", "classical", "slow"]
    assert {"no vocals", "no vocal", "no voice", "female voice", "choral"} <= set(tags)
    assert cfg["datasets"]["magnatagatune"]["_target_"] == "mir.data.magnatagatune.MagnaTagATune"


# errors ---------------------------------------------------------------------------------


def test_nonexistent_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        MagnaTagATune(tmp_path / "nope")


def test_root_from_env(mtat_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTAT_PATH", str(mtat_root))
    assert MagnaTagATune(n_tags=6).track_ids("validation") == ["15"]


def test_missing_csv(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"annotations_final\.csv does not exist"):
        MagnaTagATune(tmp_path)


def test_malformed_rows_name_line(mtat_root: Path) -> None:
    csv_path = mtat_root / "annotations_final.csv"
    lines = csv_path.read_text().splitlines()
    good = list(lines)
    lines[3] = lines[3].replace('"1"', '"x"', 1)
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"annotations_final\.csv, line 4: tag value 'x'"):
        MagnaTagATune(mtat_root, n_tags=6)
    lines = list(good)
    lines[2] = lines[2].rsplit("\t", 1)[0]
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"line 3: 7 fields, expected 8"):
        MagnaTagATune(mtat_root, n_tags=6)
    csv_path.write_text("clip_id,guitar,mp3_path\n")
    with pytest.raises(DatasetError, match="line 1: expected a tab-separated header"):
        MagnaTagATune(mtat_root, n_tags=6)


def test_bad_folder_and_options(tmp_path: Path) -> None:
    root = _write_layout(tmp_path / "mtat", ext="wav", rows=[("1", "g", ["rock"])])
    with pytest.raises(DatasetError, match="not one of 0..9, a..f"):
        MagnaTagATune(root, n_tags=1)
    root = _write_layout(tmp_path / "ok", ext="wav", rows=CLIPS[:2])
    for n in (0, 7):
        with pytest.raises(DatasetError, match=r"n_tags must be in 1\.\.6"):
            MagnaTagATune(root, n_tags=n)
    ds = MagnaTagATune(root, n_tags=6)
    with pytest.raises(DatasetError, match="unknown clip"):
        ds.load("999")


def test_missing_and_corrupt_audio(mtat_root: Path) -> None:
    ds = MagnaTagATune(mtat_root, n_tags=6)
    path = ds.audio_path("6")
    path.write_bytes(b"")  # a few real MTAT mp3s are empty
    with pytest.raises(DatasetError, match=r"MagnaTagATune: .*artist-album-06"):
        ds.load("6")
    path.unlink()
    with pytest.raises(DatasetError, match="audio for clip 6 not found"):
        ds.load("6")
