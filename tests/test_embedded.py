"""The embedded dataset: rendered audio agrees with its own annotations, and the cache is safe.

Three short pieces are rendered once per module (a few seconds); every check reads them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from mir.data import embedded as E
from mir.data.base import SPLITS
from mir.data.embedded import synth
from mir.data.track import Track

REPO = Path(__file__).resolve().parents[1]
SR, HOP, DUR, N = 22050, 256, 6.0, 3


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedded")


@pytest.fixture(scope="module")
def dataset(root: Path) -> E.EmbeddedDataset:
    ds = E.EmbeddedDataset(sr=SR, root=str(root), n_pieces=N, max_duration=DUR, seed=0, hop=HOP)
    ds.prepare()
    return ds


@pytest.fixture(scope="module")
def tracks(dataset: E.EmbeddedDataset) -> list[Track]:
    ids = [t for s in SPLITS for t in dataset.track_ids(s)]
    return [dataset.load(t) for t in ids]


# --- selection -------------------------------------------------------------------------------


def test_tags_vocabulary_equals_yaml() -> None:
    cfg = OmegaConf.load(REPO / "conf" / "data" / "embedded.yaml")
    assert tuple(cfg.tags) == E.EMBEDDED_TAGS
    assert cfg.datasets.embedded._target_ == "mir.data.embedded.EmbeddedDataset"
    assert set(cfg.datasets.embedded) == {
        "_target_", "root", "sr", "hop", "n_pieces", "max_duration", "seed", "voice",
    }  # fmt: skip


def test_bach10_chorales_are_never_eligible() -> None:
    candidates = E.all_candidates()
    assert len(candidates) > 300
    keys = [E.normalise_title(t) for t in E.BACH10_TITLES]
    for cand in candidates:
        stem = cand.corpus_path.rsplit(".", 1)[0]
        assert stem not in E.BACH10_OTHER_SETTINGS
        if "." not in stem.split("/")[-1]:
            assert E.bwv_number(cand.corpus_path) not in E.BACH10_BWV
        for title in (cand.title, *cand.titles):
            assert not any(k in E.normalise_title(title) for k in keys), cand
    # the Bach10 settings are in the corpus, so the exclusion is doing the work
    from music21 import corpus

    present = {p.name for p in corpus.getComposer("bach")}
    assert {f"bwv{b}.mxl" for b in E.BACH10_BWV} <= present


@pytest.mark.parametrize(
    "title",
    [
        "Die Sonn' hat sich mit ihrem Glanz",
        "Vor deinen Thron tret' ich hiermit",
        "FÜR DEINEN THRON TRET ICH",
        "Christe, du Beistand deiner Kreuzgemeine",
        "Ach lieben Christen, seid getrost",
    ],
)
def test_title_matching_ignores_case_punctuation_umlauts(title: str) -> None:
    assert E.is_excluded("palestrina/x.krn", [title])


def test_other_titles_are_not_excluded() -> None:
    assert not E.is_excluded("bach/bwv273.mxl", ["Christ, der du bist der helle Tag"])
    assert not E.is_excluded("bach/bwv10.7.mxl", [])
    assert E.is_excluded("bach/bwv255.mxl", [])
    assert E.is_excluded("bach/bwv48.3.mxl", [])


def test_order_is_seeded_and_deterministic() -> None:
    a, b, c = E.piece_order(0), E.piece_order(0), E.piece_order(1)
    assert [x.corpus_path for x in a] == [x.corpus_path for x in b]
    assert [x.corpus_path for x in a[:20]] != [x.corpus_path for x in c[:20]]
    assert len({x.corpus_path for x in a}) == len(a)


@pytest.mark.parametrize("n", [3, 4, 5, 10, 40])
def test_splits_are_nonempty_and_stable(n: int) -> None:
    paths = [c.corpus_path for c in E.piece_order(0)[:n]]
    split = E.assign_splits(paths)
    assert set(split.values()) == set(SPLITS)
    if n >= 40:  # no fix-up needed here: a piece keeps its split as n grows
        bigger = E.assign_splits([c.corpus_path for c in E.piece_order(0)[: n + 20]])
        assert all(bigger[p] == s for p, s in split.items())


def test_dataset_splits_disjoint(dataset: E.EmbeddedDataset) -> None:
    ids = [set(dataset.track_ids(s)) for s in SPLITS]
    assert all(ids)
    assert sum(len(s) for s in ids) == len(set().union(*ids)) == N


# --- audio and annotations agree -------------------------------------------------------------


def test_shapes_and_sums(tracks: list[Track]) -> None:
    for tr in tracks:
        assert tr.sr == SR
        assert tr.audio.dtype == np.float32
        assert tr.audio.ndim == 1
        assert 0 < tr.duration <= DUR + 1e-6
        assert set(tr.get("stems")) == {*E.STEMS, "vocals", "accompaniment"}
        for x in tr.get("stems").values():
            assert x.shape == tr.audio.shape
            assert x.dtype == np.float32
        parts = sum(tr.get("stems")[s] for s in E.STEMS)
        np.testing.assert_allclose(parts, tr.audio, atol=1e-5)
        np.testing.assert_array_equal(
            tr.get("stems")["vocals"] + tr.get("stems")["accompaniment"], tr.audio
        )
        assert 0.85 < np.max(np.abs(tr.audio)) <= 0.9 + 1e-4
        assert np.any(tr.get("stems")["vocals"])
        assert np.any(tr.get("stems")["bass"])
        times, f0 = tr.get("melody")
        assert len(times) == len(tr.audio) // HOP + 1
        np.testing.assert_allclose(times, np.arange(len(times)) * HOP / SR)
        for name in ("vocal", "bass"):
            np.testing.assert_array_equal(tr.get(name)[0], times)
        np.testing.assert_array_equal(tr.get("vocal")[1], f0)
        assert tr.has("multif0")
        assert len(tr.get("multif0")[1]) == len(times)


def _salience(x: np.ndarray, center: int, f: float, sr: int) -> float:
    """Harmonic sum of the magnitude spectrum around frame `center` at f0 = `f` Hz."""
    seg = x[max(center - 1024, 0) : center + 1024]
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), 16384))
    freqs = np.fft.rfftfreq(16384, 1 / sr)
    total = 0.0
    for h in range(1, 6):
        band = (freqs > h * f * 0.985) & (freqs < h * f * 1.015)
        total += spec[band].max(initial=0.0)
    return total


@pytest.mark.parametrize(("voice", "stem"), [("melody", "vocals"), ("bass", "bass")])
def test_f0_matches_rendered_pitch(tracks: list[Track], voice: str, stem: str) -> None:
    """On steady voiced frames the stem's harmonics sit on the annotated f0, not a semitone
    or a whole tone away."""
    wins, total = 0, 0
    for tr in tracks:
        times, f0 = tr.get(voice)
        steady = [
            k for k in range(8, len(f0) - 8) if f0[k] > 0 and np.all(f0[k - 8 : k + 8] == f0[k])
        ]
        for k in steady[:: max(len(steady) // 15, 1)]:
            x, c, f = tr.get("stems")[stem], int(times[k] * SR), f0[k]
            s = _salience(x, c, f, SR)
            rivals = [_salience(x, c, f * 2 ** (d / 12), SR) for d in (-2, -1, 1, 2)]
            wins += s > max(rivals)
            total += 1
    assert total >= 20
    assert wins / total >= 0.85, f"{wins}/{total}"


def test_multif0_holds_melody_and_bass(tracks: list[Track]) -> None:
    for tr in tracks:
        _, melody = tr.get("melody")
        _, bass = tr.get("bass")
        for k, active in enumerate(tr.get("multif0")[1]):
            if melody[k] > 0:
                assert np.isclose(active, melody[k]).any()
                assert melody[k] >= active.max() - 1e-9
            if bass[k] > 0:
                assert np.isclose(active, bass[k]).any()


def test_drum_onsets_fall_on_energy_bursts(tracks: list[Track]) -> None:
    with_drums = [tr for tr in tracks if tr.meta["drums"]]
    assert with_drums, "seed 0 should give drums to one of the first three pieces"
    rises, total = 0, 0
    win = int(0.02 * SR)
    for tr in with_drums:
        onsets = np.unique(np.concatenate(list(tr.get("onsets").values())))
        assert len(onsets) > 5
        first = int(onsets[0] * SR)
        assert np.max(np.abs(tr.get("stems")["drums"][: max(first - win, 0)]), initial=0.0) < 1e-3
        for name, times in tr.get("onsets").items():
            assert len(times) > 0
            # snares and hats ride on the previous hit's decay: compare their highs
            x = (
                tr.get("stems")["drums"]
                if name == "kick"
                else np.diff(tr.get("stems")["drums"], prepend=0)
            )
            for t in times:
                i = int(round(t * SR))
                pre = np.sqrt(np.mean(x[max(i - win, 0) : i] ** 2)) if i > 0 else 0.0
                post = np.sqrt(np.mean(x[i : i + win] ** 2))
                rises += post > 1.5 * pre
                total += 1
    assert rises / total >= 0.9, f"{rises}/{total}"


def test_piece_without_drums() -> None:
    cand = next(c for c in E.piece_order(0) if not E.has_drum_part(c.corpus_path, 0))
    piece = E.render_piece(cand, 0, 0, SR, HOP, 3.0)
    assert all(len(v) == 0 for v in piece.annotations["onsets"].values())
    assert set(piece.annotations["onsets"]) == {"kick", "snare", "hihat"}
    assert not np.any(piece.stems["drums"])
    assert "drums" not in piece.annotations["tags"]
    no_drums = sum(not E.has_drum_part(c.corpus_path, 0) for c in E.piece_order(0))
    assert 0.1 < no_drums / len(E.piece_order(0)) < 0.3


@pytest.mark.parametrize(("sig", "beat_ql"), [("4/4", 1.0), ("3/4", 1.0), ("6/8", 1.5)])
def test_tempo_phase_rotates_classes_and_counts_the_metres_beat(sig: str, beat_ql: float) -> None:
    from music21 import meter

    ts = meter.TimeSignature(sig)
    rng = np.random.default_rng(0)
    tempi = [synth.choose_tempo(ts, rank, 0, rng) for rank in range(6)]
    assert [t.tempo_class for t in tempi] == [*E.TEMPO_CLASSES] * 2
    for t in tempi:
        lo, hi = E.TEMPO_CLASSES[t.tempo_class]
        assert lo - 0.01 <= t.bpm <= hi + 0.01  # quantised to whole microseconds
        assert t.beat_ql == beat_ql
        # one beat of the metre lasts 60 / bpm s
        assert t.sec_per_tick * beat_ql * E.TPQ == pytest.approx(60.0 / t.bpm)


def test_transposition_phase_keeps_parts_in_range() -> None:
    rng = np.random.default_rng(0)
    lo, hi = synth.PITCH_RANGE
    low_piece = [[(0, 480, lo - 3), (480, 960, lo + 10)], [(0, 960, lo)]]
    for _ in range(50):  # a piece that fits is moved inside the range
        shift = synth.choose_transposition(low_piece, rng)
        assert shift >= 3
        assert shift <= synth.TRANSPOSE_RANGE[1]
    wide = [[(0, 480, lo - 5)], [(0, 480, hi + 5)]]  # wider than the range: stays between
    assert all(-5 <= synth.choose_transposition(wide, rng) <= 5 for _ in range(50))


def test_crop_phase_and_master_phase() -> None:
    tempo = synth.Tempo("medium", 500_000, 1.0)  # 120 quarter notes per minute
    parts = [[(0, 4 * E.TPQ, 60)], [(0, 4 * E.TPQ, 48)]]  # 2 s of notes
    whole = synth.choose_crop(parts, tempo, 10.0, 10 * 2 * E.TPQ, SR)
    assert whole.duration == pytest.approx(2.0 + synth.TAIL_S)
    assert not whole.mid_note
    cut = synth.choose_crop(parts, tempo, 1.0, 2 * E.TPQ, SR)
    assert cut.duration == 1.0
    assert cut.n_samples == SR
    assert cut.mid_note
    assert cut.crop_tick == 2 * E.TPQ

    stems = {name: np.full(cut.n_samples, 0.1, np.float32) for name in E.STEMS}
    mastered, gain = synth.master(stems, cut, SR)
    mix = synth.mix(mastered)
    assert np.max(np.abs(mix)) == pytest.approx(synth.PEAK, rel=1e-6)
    assert gain == pytest.approx(synth.PEAK / 0.5)
    fade = round(synth.FADE_S * SR)
    assert mix[-1] == 0.0
    assert np.all(np.diff(mix[-fade:]) <= 0)
    assert mix[-fade - 1] == pytest.approx(synth.PEAK)


def test_beats_follow_tempo_and_metre(tracks: list[Track]) -> None:
    for tr in tracks:
        period = 60.0 / float(tr.meta["tempo"])
        assert len(tr.get("beats")) >= 3
        np.testing.assert_allclose(np.diff(tr.get("beats")), period, rtol=1e-6)
        assert np.all(np.isin(tr.get("downbeats"), tr.get("beats")))
        per_bar = 3 if "triple" in tr.get("tags") else None
        if len(tr.get("downbeats")) >= 2 and per_bar:
            np.testing.assert_allclose(
                np.diff(tr.get("downbeats")) % (per_bar * period), 0, atol=1e-6
            )
        assert tr.get("beats").max() < tr.duration


def test_tags(tracks: list[Track]) -> None:
    for tr in tracks:
        assert set(tr.get("tags")) <= set(E.EMBEDDED_TAGS)
        assert "voice" in tr.get("tags")
        assert sum(t in tr.get("tags") for t in ("major", "minor")) == 1
        assert sum(t in tr.get("tags") for t in E.TEMPO_CLASSES) == 1
        assert sum(t in tr.get("tags") for t in ("duple", "triple")) == 1
        assert ("drums" in tr.get("tags")) == bool(tr.meta["drums"])
        lo, hi = E.TEMPO_CLASSES[tr.meta["tempo_class"]]
        assert lo <= tr.meta["tempo"] < hi + 1e-6
    # the three pieces draw three different tempo classes
    assert len({tr.meta["tempo_class"] for tr in tracks}) == 3


def test_meta(tracks: list[Track]) -> None:
    for tr in tracks:
        for key in ("corpus_path", "title", "bwv", "transposition", "tempo", "programs", "split"):
            assert key in tr.meta
        assert tr.meta["programs"]["soprano"] in ("choir aahs", "voice oohs", "synth voice")
        assert tr.name == E.track_id_of(tr.meta["corpus_path"])


# --- determinism and cache -------------------------------------------------------------------


def test_same_seed_same_piece_other_seed_differs(dataset: E.EmbeddedDataset) -> None:
    order = E.piece_order(0)
    folder = dataset.cache_dir / E.track_id_of(order[0].corpus_path)
    stored = json.loads((folder / "annotations.json").read_text())
    assert set(stored.pop("stems")) >= {"soprano", "bass"}
    again = E.render_piece(order[0], 0, 0, SR, HOP, DUR)
    assert json.loads(json.dumps(again.annotations)) == stored
    tr = dataset.load(E.track_id_of(order[0].corpus_path))
    np.testing.assert_array_equal(again.stems["soprano"], tr.get("stems")["soprano"])
    other = E.render_piece(order[0], 0, 1, SR, HOP, DUR).annotations
    assert other["meta"]["tempo"] != stored["meta"]["tempo"]
    assert other["f0"] != stored["f0"] or other["onsets"] != stored["onsets"]


def test_settings_never_share_a_cache_folder(root: Path) -> None:
    folders = {
        E.EmbeddedDataset(root=str(root), **kw).cache_dir
        for kw in ({}, {"seed": 1}, {"hop": 512}, {"max_duration": 10.0}, {"sr": 16000})
    }
    assert len(folders) == 5
    assert E.EmbeddedDataset(root=str(root), n_pieces=3).cache_dir in folders


def test_cache_is_reused(dataset: E.EmbeddedDataset, root: Path) -> None:
    mix = dataset.cache_dir / dataset.track_ids("train")[0] / "mix.wav"
    before = mix.stat().st_mtime_ns
    t0 = time.perf_counter()
    again = E.EmbeddedDataset(sr=SR, root=str(root), n_pieces=N, max_duration=DUR, seed=0, hop=HOP)
    assert again.track_ids("train") == dataset.track_ids("train")
    assert time.perf_counter() - t0 < 1.0
    assert mix.stat().st_mtime_ns == before
    t0 = time.perf_counter()
    again.load(again.track_ids("train")[0])
    assert time.perf_counter() - t0 < 0.2


def test_partial_piece_is_rendered_again(dataset: E.EmbeddedDataset, root: Path) -> None:
    tid = dataset.track_ids("test")[0]
    folder = dataset.cache_dir / tid
    good = dataset.load(tid)
    os.unlink(folder / E.MARKER)  # as if the process died before the marker
    (folder / "mix.wav").write_bytes(b"truncated")
    again = E.EmbeddedDataset(sr=SR, root=str(root), n_pieces=N, max_duration=DUR, seed=0, hop=HOP)
    reports = {r.track_id: r for r in again.prepare()}
    assert reports[tid].rendered
    assert sum(r.rendered for r in reports.values()) == 1
    assert (folder / E.MARKER).exists()
    np.testing.assert_array_equal(again.load(tid).audio, good.audio)


def test_render_cli_uses_cache(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mir.data.render import main

    args = ["--n", str(N), "--out", str(root), "--max-duration", str(DUR), "--seed", "0"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"{N} pieces" in out
    assert "0 rendered now" in out
    assert "train" in out


def test_second_writer_of_a_piece_is_harmless(dataset: E.EmbeddedDataset) -> None:
    """Two processes rendering the same piece: the loser's folder is dropped, the winner's
    complete piece stays, and no temporary folder is left behind."""
    order = E.piece_order(0)
    tid = E.track_id_of(order[0].corpus_path)
    folder = dataset.cache_dir / tid
    before = dataset.load(tid)
    piece = E.render_piece(order[0], 0, 0, SR, HOP, DUR)
    E.write_piece(folder, piece, SR)
    np.testing.assert_array_equal(dataset.load(tid).audio, before.audio)
    assert not [p for p in dataset.cache_dir.iterdir() if p.name.startswith(f".{tid}.")]
