"""MTG-Jamendo loader on a synthetic layout in the real split-file format (no fixture)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from mir.data.base import SPLITS
from mir.data.mtg_jamendo import MTGJamendo
from mir.data.track import F0_KINDS
from mir.errors import DatasetError

REPO = Path(__file__).resolve().parents[1]
HEADER = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"
# split -> (track number, artist, tags)
TRACKS = {
    "train": [
        (214, 14, ["genre---punkrock", "instrument---drums"]),
        (1041, 22, ["genre---rock", "instrument---guitar", "mood/theme---happy"]),
        (30317, 22, ["genre---rock"]),
    ],
    "validation": [(1311544, 341, ["genre---ambient", "instrument---drums"])],
    "test": [
        (87483, 3177, ["genre---dance"]),
        (655974, 354, ["genre---ambient", "mood/theme---happy"]),
    ],
}


def _mp3_supported() -> bool:
    return "MP3" in sf.available_formats()


def _rel(num: int) -> str:
    return f"{num % 100:02d}/{num}.mp3"


def _write_layout(
    root: Path, subset: str = "top50tags", low: tuple[int, ...] = (), sr: int = 16000
) -> Path:
    """Split files in the repository's format and short mp3s (wav bytes if no mp3 codec)."""
    split_dir = root / "data" / "splits" / "split-0"
    split_dir.mkdir(parents=True, exist_ok=True)
    t = np.arange(sr // 2) / sr
    fmt = "MP3" if _mp3_supported() else "WAV"
    for split, rows in TRACKS.items():
        lines = [HEADER]
        for i, (num, artist, tags) in enumerate(rows):
            lines.append(
                "\t".join(
                    [
                        f"track_{num:07d}",
                        f"artist_{artist:06d}",
                        f"album_{artist:06d}",
                        _rel(num),
                        f"{120.5 + i:.1f}",
                        *tags,
                    ]
                )
            )
            path = root / "audio" / _rel(num)
            if num in low:
                path = path.with_name(f"{num}.low.mp3")
            path.parent.mkdir(parents=True, exist_ok=True)
            x = (0.3 * np.sin(2 * np.pi * (220 + 30 * i) * t)).astype(np.float32)
            sf.write(path, x, sr, format=fmt)
        (split_dir / f"autotagging_{subset}-{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return _write_layout(tmp_path / "mtg-jamendo-dataset")


def test_splits_and_vocabulary(root: Path) -> None:
    ds = MTGJamendo(root)
    ids = {s: ds.track_ids(s) for s in SPLITS}
    assert ids == {
        "train": ["track_0000214", "track_0001041", "track_0030317"],
        "validation": ["track_1311544"],
        "test": ["track_0087483", "track_0655974"],
    }
    for a, b in itertools.combinations(SPLITS, 2):
        assert not set(ids[a]) & set(ids[b])
    # no explicit vocabulary: every tag of the three files, sorted
    assert ds.tags == sorted({t for rows in TRACKS.values() for _, _, ts in rows for t in ts})
    assert ds.tag_counts["genre---rock"] == 2
    assert ds.tag_counts["instrument---drums"] == 2


def test_track_contract(root: Path) -> None:
    vocab = ["genre---rock", "mood/theme---happy", "instrument---voice"]
    ds = MTGJamendo(root, sr=22050, tags=vocab)
    track = ds.load("track_0001041")
    assert track.sr == 22050
    assert track.audio.dtype == np.float32
    assert track.audio.ndim == 1
    assert abs(len(track.audio) - 22050 // 2) < 22050 * 0.1  # 0.5 s (mp3 adds padding)
    # vocabulary order; tags outside the vocabulary dropped but kept in meta
    assert track.get("tags") == ["genre---rock", "mood/theme---happy"]
    assert "instrument---guitar" in track.meta["all_tags"]
    assert track.meta["split"] == "train"
    assert track.meta["artist_id"] == "artist_000022"
    assert track.meta["duration"] == pytest.approx(121.5)
    assert not track.has("onsets")
    assert not any(track.has(k) for k in F0_KINDS)
    assert not track.has("beats")
    assert ds.load("track_0087483").get("tags") == []


def test_low_quality_audio(tmp_path: Path) -> None:
    root = _write_layout(tmp_path / "mtg", low=(214,))
    ds = MTGJamendo(root)  # auto: falls back to <id>.low.mp3
    assert ds.audio_path("track_0000214").name == "214.low.mp3"
    assert len(ds.load("track_0000214").audio) > 0
    assert ds.audio_path("track_0001041").name == "1041.mp3"
    with pytest.raises(DatasetError, match=r"214\.mp3"):
        MTGJamendo(root, audio_format="mp3").load("track_0000214")


def test_moodtheme_subset(tmp_path: Path) -> None:
    root = _write_layout(tmp_path / "mtg", subset="moodtheme")
    assert MTGJamendo(root, subset="moodtheme").track_ids("validation") == ["track_1311544"]
    with pytest.raises(DatasetError, match="autotagging_top50tags-train.tsv does not exist"):
        MTGJamendo(root)


@pytest.mark.parametrize(
    ("bad_line", "match"),
    [
        ("track_0000009\tartist_000001\talbum_000001\t09/9.mp3", "line 5: 4 tab-separated"),
        ("track_0000009\tartist_000001\talbum_000001\t09/9.mp3\tlong\tgenre---rock", "DURATION"),
        ("track_0000009\tartist_000001\talbum_000001\t09/9.mp3\t10.0\trock", "'rock' is not"),
        ("track_0000214\tartist_000001\talbum_000001\t14/214.mp3\t1.0\tgenre---rock", "line 2"),
    ],
)
def test_malformed_tsv_names_file_and_line(root: Path, bad_line: str, match: str) -> None:
    path = root / "data" / "splits" / "split-0" / "autotagging_top50tags-train.tsv"
    path.write_text(path.read_text() + bad_line + "\n")
    with pytest.raises(DatasetError, match=match) as info:
        MTGJamendo(root)
    assert "autotagging_top50tags-train.tsv" in str(info.value)


def test_track_in_two_splits(root: Path) -> None:
    path = root / "data" / "splits" / "split-0" / "autotagging_top50tags-test.tsv"
    path.write_text(path.read_text() + f"track_0000214\ta\tb\t{_rel(214)}\t1.0\tgenre---rock\n")
    with pytest.raises(DatasetError, match="already listed in .*train.tsv, line 2"):
        MTGJamendo(root)


def test_wrong_root_and_options(tmp_path: Path, root: Path) -> None:
    with pytest.raises(DatasetError, match="split folder .*split-0 does not exist"):
        MTGJamendo(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="data/splits"):
        MTGJamendo(tmp_path / "empty")
    with pytest.raises(DatasetError, match="subset"):
        MTGJamendo(root, subset="jazz")
    with pytest.raises(DatasetError, match="split_index"):
        MTGJamendo(root, split_index=5)
    with pytest.raises(DatasetError, match="audio_format"):
        MTGJamendo(root, audio_format="flac")
    header = root / "data" / "splits" / "split-0" / "autotagging_top50tags-validation.tsv"
    header.write_text("TRACK\tPATH\n")
    with pytest.raises(DatasetError, match="validation.tsv, line 1: expected the tab-separated"):
        MTGJamendo(root)


def test_missing_audio_is_clear(root: Path) -> None:
    (root / "audio" / _rel(87483)).unlink()
    with pytest.raises(DatasetError, match=r"track_0087483 not found at .*83/87483\.mp3"):
        MTGJamendo(root).load("track_0087483")


@pytest.mark.parametrize(("name", "n_tags"), [("mtg_jamendo", 50), ("mtg_jamendo_moodtheme", 59)])
def test_config_vocabulary(compose, tmp_path: Path, root: Path, name: str, n_tags: int) -> None:
    cfg = compose(
        [f"data={name}", "task=tagging", f"data.datasets.mtg_jamendo.root={root}"], tmp_path
    )
    tags = list(cfg.data.tags)
    assert len(tags) == len(set(tags)) == n_tags
    assert all("---" in t for t in tags)
    assert list(cfg.task.tagging.tags) == tags
    ds_cfg = cfg.data.datasets.mtg_jamendo
    assert ds_cfg.subset == ("top50tags" if n_tags == 50 else "moodtheme")
    # the yaml is plain data (no Python objects), as Hydra reads it
    raw = yaml.safe_load((REPO / "conf" / "data" / f"{name}.yaml").read_text())
    assert raw["tags"] == tags


def test_trains_tagging_from_config(compose, tmp_path: Path, root: Path) -> None:
    """A tagging model composes over the loader and yields batches with the vocabulary."""
    from hydra.utils import instantiate

    cfg = compose(
        [
            "data=mtg_jamendo",
            "task=tagging",
            f"data.datasets.mtg_jamendo.root={root}",
            "data.datasets.mtg_jamendo.tags=[genre---rock,genre---ambient,mood/theme---happy]",
            "data.tags=[genre---rock,genre---ambient,mood/theme---happy]",
        ],
        tmp_path,
    )
    module = instantiate(cfg.model)
    dm = instantiate(cfg.data)
    dm.bind(module.tasks)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["targets"]["tagging"].shape == (cfg.data.batch_size, 3)
    assert bool(batch["mask"]["tagging"].all())
