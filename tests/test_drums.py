"""Drum transcription task: scores at 50 and 20 ms, the 8-class option, and classes a
dataset does not annotate (masked in the loss, NaN in the scores, never faked)."""

from __future__ import annotations

import math

import mir_eval
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from mir.data.mdb_drums import SUBCLASS_TO_8, MDBDrums
from mir.data.track import Track
from mir.tasks.base import Window, mean_scores
from mir.tasks.drums import CLASS_SETS, DrumsTask, window_suffix

KSH = ("kick", "snare", "hihat")


@pytest.fixture(scope="module")
def fe(compose, tmp_path_factory):
    cfg = compose(["task=drums"], tmp_path_factory.mktemp("drums"))
    return instantiate(cfg.frontend)


def make_task(fe, **kwargs) -> DrumsTask:
    task = DrumsTask(**kwargs)
    task.bind(fe)
    return task


def onset_track(sr: int, onsets: dict[str, np.ndarray], duration: float = 6.0) -> Track:
    return Track("t", np.zeros(int(duration * sr), np.float32), sr, {"onsets": onsets})


def test_scores_at_50_and_20_ms(fe):
    task = make_task(fe)
    ref = {c: np.arange(0.5, 5.0, 0.5) + 0.01 * i for i, c in enumerate(KSH)}
    track = onset_track(fe.sr, ref)
    # kick 30 ms late (inside 50 ms, outside 20 ms); snare exact; hi-hat 10 ms early
    est = [ref["kick"] + 0.03, ref["snare"].copy(), ref["hihat"] - 0.01]
    s = task.evaluate_track(track, est)
    assert s["kick/F-measure"] == 1.0
    assert s["kick/F-measure@20ms"] == 0.0
    assert s["snare/F-measure"] == 1.0
    assert s["snare/F-measure@20ms"] == 1.0
    assert s["hihat/F-measure@20ms"] == 1.0
    assert s["mean/F-measure"] == 1.0
    assert s["mean/F-measure@20ms"] == pytest.approx(2 / 3)
    # the keys are mir_eval's, and the values its own at each window
    for w, sfx in ((0.05, ""), (0.02, "@20ms")):
        f = mir_eval.onset.f_measure(ref["kick"], est[0], window=w)[0]
        assert s[f"kick/F-measure{sfx}"] == pytest.approx(f)
    assert {"kick/Precision", "kick/Recall"} <= set(s)
    assert task.monitor in s


def test_window_suffix_and_no_duplicate_window(fe):
    assert window_suffix(0.02) == "@20ms"
    assert window_suffix(0.0125) == "@12.5ms"
    task = make_task(fe, window=0.02, extra_windows=[0.02, 0.05])
    s = task.evaluate_track(onset_track(fe.sr, {c: np.array([1.0]) for c in KSH}), [[1.0]] * 3)
    assert "kick/F-measure@50ms" in s
    assert "kick/F-measure@20ms" not in s


def test_class_sets(fe):
    assert make_task(fe).classes == KSH
    task = make_task(fe, classes="8class")
    assert task.classes == CLASS_SETS["8class"]
    assert len(task.build_head(4).out.weight) == 8
    with pytest.raises(ValueError, match="9class"):
        DrumsTask(classes="9class")
    # the 8-class set is MDB Drums' subclass grouping, in the loader's order
    assert list(CLASS_SETS["8class"]) == list(dict.fromkeys(SUBCLASS_TO_8.values()))


def test_unknown_classes_are_masked_not_faked(fe):
    """8 classes on a track that only annotates kick/snare/hihat (the embedded set)."""
    task = make_task(fe, classes="8class")
    ref = {"kick": np.array([1.0, 2.0]), "snare": np.zeros(0), "hihat": np.array([1.5])}
    track = onset_track(fe.sr, ref)
    assert task.known(track) == [True, True] + [False] * 6
    assert task.has_labels(track)
    assert not task.has_labels(onset_track(fe.sr, {"cowbell": np.array([1.0])}))

    n = fe.n_frames(fe.sr * 3)
    y = task.targets(track, Window(0, n, 0, (n - 1) * fe.hop))
    assert np.all(y[2:] == -1.0)
    assert y[0].max() == 1.0
    assert not y[1].any()

    # the loss gives unknown rows no gradient, known rows some
    target = torch.from_numpy(y)[None]
    logits = torch.randn(target.shape, requires_grad=True)
    task.loss(logits, target, torch.tensor([True]), None).backward()  # type: ignore[arg-type]
    assert logits.grad is not None
    assert torch.all(logits.grad[0, 2:] == 0)
    assert torch.all(logits.grad[0, :2] != 0)

    # scores: NaN for unknown classes (left out of the means), even with estimates there
    est = [ref["kick"], np.zeros(0)] + [np.array([3.0])] * 6
    s = task.evaluate_track(track, est)
    assert s["kick/F-measure"] == 1.0
    assert s["snare/F-measure"] == 1.0  # nothing played, nothing found
    for cls in CLASS_SETS["8class"][2:]:
        assert math.isnan(s[f"{cls}/F-measure"])
        assert math.isnan(s[f"{cls}/F-measure@20ms"])
    assert s["mean/F-measure"] == 1.0
    # a second track that knows toms: the set mean of tom/F-measure is over it alone
    other = onset_track(fe.sr, {"kick": np.zeros(0), "tom": np.array([1.0])})
    s2 = task.evaluate_track(other, [np.zeros(0), np.zeros(0), *[np.zeros(0)] * 6])
    assert s2["tom/F-measure"] == 0.0
    mean = mean_scores([s, s2])
    assert mean["tom/F-measure"] == 0.0
    assert math.isnan(mean["ride/F-measure"])


def test_bare_track_is_unlabelled(fe):
    task = make_task(fe, classes="8class")
    bare = Track("bare", np.zeros(100, np.float32), fe.sr)
    n = fe.n_frames(fe.sr)
    assert not task.has_labels(bare)
    assert not np.any(task.targets(bare, Window(0, n, 0, (n - 1) * fe.hop)))


def test_8class_on_mdb_subclass_fixtures(fe, fixtures_dir):
    """MDB Drums' subclass mode annotates all 8 classes: every one is known and scored."""
    ds = MDBDrums(
        fixtures_dir / "mdb_drums", sr=fe.sr, audio_source="drum_only", classes="subclass"
    )
    task = make_task(fe, classes="8class")
    track = ds.load("MusicDelta_Reggae")
    assert all(task.known(track))
    est = [track.get("onsets")[c] for c in task.classes]
    s = task.evaluate_track(track, est)
    assert all(s[f"{c}/F-measure"] == 1.0 for c in task.classes)
    assert s["mean/F-measure@20ms"] == 1.0
    # in class mode only kick, snare, tom and other are the same classes as the 8
    ds_class = MDBDrums(fixtures_dir / "mdb_drums", sr=fe.sr, audio_source="drum_only")
    known = task.known(ds_class.load("MusicDelta_Reggae"))
    assert [c for c, k in zip(task.classes, known, strict=True) if k] == [
        "kick",
        "snare",
        "tom",
        "other",
    ]


def test_8class_config_trains_on_embedded(compose, tmp_path):
    """task.drums.classes=8class composes and trains; unknown classes are NaN, not 0."""
    from mir.train import run

    cfg = compose(
        [
            "task=drums",
            "task.drums.classes=8class",
            "trainer=smoke",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1",
            "trainer.enable_progress_bar=false",
        ],
        tmp_path,
    )
    result = run(cfg)
    test = result["test"]["drums"]
    assert math.isfinite(test["mean/F-measure"])
    assert math.isfinite(test["kick/F-measure@20ms"])
    assert "ride/F-measure" not in test or math.isnan(test["ride/F-measure"])


def test_classes_absent_from_a_track_are_counted_and_scored_apart(fe):
    """The no-onset baseline scores F = 1 for hi-hat on tracks without hi-hat (the
    empty-equals-perfect convention); the ``(present)`` keys and the per-class track
    counts show that it found none of the hi-hats that were played."""
    task = make_task(fe)
    beat = np.arange(0.5, 5.0, 0.5)
    tracks = [
        onset_track(fe.sr, {"kick": beat, "snare": beat + 0.25, "hihat": np.zeros(0)}),
        onset_track(fe.sr, {"kick": beat, "snare": np.zeros(0), "hihat": np.zeros(0)}),
        onset_track(fe.sr, {"kick": beat, "snare": beat + 0.25, "hihat": beat + 0.1}),
    ]
    per_track, summary = task.evaluate(tracks, [task.baseline(t) for t in tracks])
    assert [s["hihat/F-measure"] for s in per_track] == [1.0, 1.0, 0.0]
    assert summary["hihat/F-measure"] == pytest.approx(2 / 3)  # mir_eval-style convention
    assert [math.isnan(s["hihat/F-measure (present)"]) for s in per_track] == [True, True, False]
    assert summary["hihat/F-measure (present)"] == 0.0  # over the one track with hi-hat
    assert summary["snare/F-measure (present)"] == 0.0
    assert summary["mean/F-measure (present)"] == 0.0
    assert summary["mean/F-measure"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    counts = [summary[f"{c}/tracks with onsets"] for c in KSH]
    assert counts == [3.0, 2.0, 1.0]
