"""Beat tracking: targets on a click grid, decoding ideal activations, per-channel
downbeat masking, the 120 BPM baseline, and joint training with drums."""

from __future__ import annotations

import mir_eval
import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from mir.data.track import Track
from mir.tasks.base import Window
from mir.tasks.beats import BeatEstimate, BeatsTask, snap_to_beats
from mir.tasks.drums import onset_targets
from mir.train import run
from tests.conftest import SMOKE


@pytest.fixture(scope="module")
def task(compose, tmp_path_factory) -> BeatsTask:
    cfg = compose(["task=beats"], tmp_path_factory.mktemp("beats"))
    t = instantiate(cfg.task.beats)
    t.bind(instantiate(cfg.frontend))
    return t


def click_track(task: BeatsTask, duration: float, period: float, downbeats: bool = True):
    """A click train at `period` s from `period / 2` s, its beats and (every 4th) downbeats."""
    sr = task.fe.sr
    beats = np.arange(period / 2, duration - 0.1, period)
    audio = np.zeros(int(duration * sr), dtype=np.float32)
    click = np.hanning(64).astype(np.float32)
    for b in beats:
        i = int(round(b * sr))
        audio[i : i + 64] += click[: len(audio) - i]
    return Track(
        name="clicks",
        audio=audio,
        sr=sr,
        annotations={"beats": beats, "downbeats": beats[::4].copy() if downbeats else None},
    )


def full_window(task: BeatsTask, track: Track) -> Window:
    n = task.fe.n_frames(len(track.audio))
    return Window(0, n, 0, (n - 1) * task.fe.hop)


def ideal_logits(task: BeatsTask, track: Track, noise: float, seed: int = 0) -> np.ndarray:
    """(2, T) logits of activations that pulse at the annotations, plus uniform noise."""
    w = full_window(task, track)
    assert track.has("beats")
    assert track.has("downbeats")
    pulses = onset_targets(
        [track.get("beats"), track.get("downbeats")], task.fe.frames_per_second, w, 0.5
    )
    rng = np.random.default_rng(seed)
    act = np.clip(0.85 * pulses + noise * rng.random(pulses.shape), 1e-4, 1 - 1e-4)
    return np.log(act / (1 - act))


def test_targets_on_click_grid(task):
    track = click_track(task, 6.0, 0.5)
    fps = task.fe.frames_per_second
    start = 10
    n = task.fe.n_frames(task.fe.sr * 4)
    w = Window(start, n, start * task.fe.hop, (n - 1) * task.fe.hop)
    y = task.targets(track, w)
    assert y.shape == (2, n)
    for row, times in ((0, track.get("beats")), (1, track.get("downbeats"))):
        idx = np.rint(np.asarray(times) * fps).astype(int) - start
        idx = idx[(idx >= 0) & (idx < n)]
        assert len(idx) > 0
        np.testing.assert_array_equal(np.flatnonzero(y[row] == 1.0), idx)
        beside = np.concatenate([idx - 1, idx + 1])
        beside = beside[(beside >= 0) & (beside < n)]
        np.testing.assert_array_equal(y[row, beside], 0.5)
        assert np.count_nonzero(y[row]) == len(np.union1d(idx, beside))


def test_targets_unknown_downbeats_are_minus_one(task):
    track = click_track(task, 4.0, 0.5, downbeats=False)
    y = task.targets(track, full_window(task, track))
    assert np.all(y[1] == -1.0)
    assert np.count_nonzero(y[0] == 1.0) == len(track.get("beats"))


@pytest.mark.parametrize("decoder", ["dp", "peaks"])
def test_decoding_ideal_activation_recovers_beats(task, decoder):
    track = click_track(task, 20.0, 0.5)
    dec = BeatsTask(decoder=decoder)
    dec.bind(task.fe)
    est = dec.decode(ideal_logits(task, track, noise=0.1), track)
    assert mir_eval.beat.evaluate(track.get("beats"), est.beats)["F-measure"] == pytest.approx(1.0)
    scores = dec.evaluate_track(track, est)
    assert scores["F-measure"] == pytest.approx(1.0)
    assert scores["downbeat/F-measure"] == pytest.approx(1.0)
    # every decoded downbeat is one of the decoded beats
    assert np.isin(est.downbeats, est.beats).all()


def test_dp_decoder_gives_no_beats_on_silence(task):
    logits = np.full((2, 500), -8.0)
    est = task.decode(logits, click_track(task, 6.0, 0.5))
    assert len(est.beats) == 0
    assert len(est.downbeats) == 0


def test_downbeat_loss_masked_per_channel(task):
    """Beats but no downbeats: finite loss, no gradient on the downbeat channel."""
    labelled = click_track(task, 4.0, 0.5)
    no_db = click_track(task, 4.0, 0.5, downbeats=False)
    w = full_window(task, labelled)
    target = torch.from_numpy(np.stack([task.targets(no_db, w), task.targets(labelled, w)]))
    logits = torch.randn(target.shape, requires_grad=True)  # (B, 2, T)
    loss = task.loss(logits, target, torch.tensor([True, True]), None)  # type: ignore[arg-type]
    assert torch.isfinite(loss)
    loss.backward()
    assert logits.grad is not None
    assert torch.all(logits.grad[0, 1] == 0)  # unknown downbeats: no gradient
    assert torch.any(logits.grad[0, 0] != 0)  # its beats still train
    assert torch.any(logits.grad[1, 1] != 0)  # known downbeats train


def test_snap_to_beats():
    beats = np.array([1.0, 1.5, 2.0, 2.5])
    snapped = snap_to_beats(np.array([0.2, 1.6, 1.9, 3.0]), beats)
    np.testing.assert_allclose(snapped, [1.0, 1.5, 2.0, 2.5])
    assert len(snap_to_beats(np.array([1.0]), np.zeros(0))) == 0


def test_baseline_is_a_120_bpm_grid(task):
    track = click_track(task, 12.0, 0.5)
    base = task.baseline(track)
    np.testing.assert_allclose(np.diff(base.beats), 0.5)
    assert base.beats[0] == 0.0
    # off by a quarter period from beats at 0.25 + k/2 s: outside mir_eval's 70 ms window
    assert task.evaluate_track(track, base)["F-measure"] == 0.0
    on_grid = Track("grid", track.audio, track.sr, {"beats": np.arange(0, 12, 0.5)})
    scores = task.evaluate_track(on_grid, task.baseline(on_grid))
    assert scores["F-measure"] == pytest.approx(1.0)
    assert np.isnan(scores["downbeat/F-measure"])
    with pytest.warns(UserWarning, match="empty"):
        empty = task.evaluate_track(track, BeatEstimate(np.zeros(0), np.zeros(0)))
    assert empty["F-measure"] == 0.0


def test_unknown_decoder_is_rejected():
    with pytest.raises(ValueError, match="decoder"):
        BeatsTask(decoder="dbn")  # type: ignore[arg-type]


def test_joint_drums_and_beats_smoke(compose, tmp_path):
    cfg = compose(
        [
            "task=[drums,beats]",
            *SMOKE,
        ],
        tmp_path,
    )
    result = run(cfg)
    assert result["monitor"] == "val/drums/mean/F-measure"
    assert set(result["test"]) == {"drums", "beats"}
    metrics = pd.read_csv(next(tmp_path.glob("csv/version_*/metrics.csv")))
    for key in (
        "train/drums/loss",
        "train/beats/loss",
        "val/drums/mean/F-measure",
        "val/beats/F-measure",
    ):
        assert key in metrics.columns, key
    assert "F-measure" in result["test_baseline"]["beats"]
