"""The tasks' shared helpers give exactly what the per-task copies they replaced gave."""

from __future__ import annotations

import numpy as np
import pytest

from mir.data.track import Track
from mir.grid import Grid, Window
from mir.tasks.base import frame_values, nearest_index
from mir.tasks.beats import snap_to_beats
from mir.tasks.salience import MultiF0Task, SingleF0Task


# -- the replaced copies, verbatim ---------------------------------------------------------
def _old_frame_values(times, values, frame_times):
    out = np.zeros(len(frame_times), dtype=np.float64)
    if len(times) == 0:
        return out
    idx = np.searchsorted(times, frame_times)
    idx = np.clip(idx, 1, len(times) - 1) if len(times) > 1 else np.zeros_like(idx)
    left = np.maximum(idx - 1, 0)
    choose_left = np.abs(frame_times - times[left]) <= np.abs(times[idx] - frame_times)
    nearest = np.where(choose_left, left, idx)
    out[:] = values[nearest]
    step = np.median(np.diff(times)) if len(times) > 1 else 0.0
    outside = (frame_times < times[0] - step) | (frame_times > times[-1] + step)
    out[outside] = 0.0
    return out


def _old_multif0_voices(times, freqs, frame_times):
    idx = np.clip(np.searchsorted(times, frame_times), 0, len(times) - 1)
    if len(times) > 1:
        left = np.maximum(idx - 1, 0)
        idx = np.where(
            np.abs(frame_times - times[left]) <= np.abs(times[idx] - frame_times), left, idx
        )
    step = np.median(np.diff(times)) if len(times) > 1 else np.inf
    n_voices = max((len(f) for f in freqs), default=0)
    voices = np.zeros((n_voices, len(frame_times)))
    for j, i in enumerate(idx):
        if abs(times[i] - frame_times[j]) > step:
            continue
        f = np.asarray(freqs[i], dtype=np.float64)
        voices[: len(f), j] = f
    return list(voices)


def _old_snap_to_beats(times, beats):
    if len(times) == 0 or len(beats) == 0:
        return np.zeros(0)
    idx = np.searchsorted(beats, times)
    left = beats[np.clip(idx - 1, 0, len(beats) - 1)]
    right = beats[np.clip(idx, 0, len(beats) - 1)]
    nearest = np.where(np.abs(times - left) <= np.abs(right - times), left, right)
    return np.unique(nearest)


def _series(rng: np.random.Generator, k: int) -> np.ndarray:
    """Sorted times: a regular grid (exact midpoint ties), jittered, with a duplicate."""
    t = np.round(0.3 + np.arange(k) * 0.01, 6)
    if k > 3:
        t[1:-1] += rng.uniform(-0.004, 0.004, k - 2) * (rng.random() < 0.5)
        t[2] = t[1]  # a duplicate time
    return np.sort(t)


def _queries(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    mids = (t[1:] + t[:-1]) / 2 if len(t) > 1 else t
    q = np.concatenate([t, mids, rng.uniform(t[0] - 0.1, t[-1] + 0.1, 200), [t[0] - 1.0]])
    return np.sort(q)


@pytest.mark.parametrize("k", [1, 2, 3, 50, 400])
def test_nearest_lookups_equal_the_copies_they_replaced(k):
    rng = np.random.default_rng(k)
    for _ in range(20):
        t = _series(rng, k)
        q = _queries(rng, t)
        v = np.where(rng.random(k) < 0.3, 0.0, rng.uniform(80, 800, k))
        np.testing.assert_array_equal(frame_values(t, v, q), _old_frame_values(t, v, q))
        np.testing.assert_array_equal(snap_to_beats(q, t), _old_snap_to_beats(q, t))
        idx = nearest_index(t, q)
        dist = np.abs(t[idx] - q)
        assert np.all(dist <= np.abs(t[:, None] - q[None, :]).min(axis=0) + 1e-12)


def test_salience_targets_are_unchanged():
    """Single- and multi-f0 targets on the tiny grid equal those of the replaced lookups."""
    rng = np.random.default_rng(0)
    grid = Grid(22050, 256, 12, 72, 32.7, (0.5, 1.0, 2.0), 512)

    class _FrontEnd:
        pass

    fe = _FrontEnd()
    fe.grid = grid  # type: ignore[attr-defined]
    n = 3 * grid.sr
    window = Window(5, 200, 5 * grid.hop, 199 * grid.hop)
    frame_times = grid.frame_times(window.start_frame + window.n_frames)[window.start_frame :]
    # a vocadito-like series (5.8 ms hop, gaps) and a Bach10-like one (10 ms)
    for hop in (0.0058, 0.01):
        t = np.arange(0.05, 2.9, hop)
        t = t[(t < 1.0) | (t > 1.2)]  # an unannotated gap
        f0 = np.where(rng.random(len(t)) < 0.2, 0.0, rng.uniform(60, 900, len(t)))
        freqs = [f0[i : i + rng.integers(0, 4)] for i in range(len(t))]
        track = Track(
            "x", np.zeros(n, np.float32), grid.sr, {"melody": (t, f0), "multif0": (t, freqs)}
        )

        single = SingleF0Task("melody")
        single.bind(fe)  # type: ignore[arg-type]
        want = _old_frame_values(t, f0, frame_times)
        np.testing.assert_array_equal(single._voices(track, frame_times)[0], want)

        multi = MultiF0Task()
        multi.bind(fe)  # type: ignore[arg-type]
        got = multi._voices(track, frame_times)
        ref = _old_multif0_voices(t, freqs, frame_times)
        assert len(got) == len(ref)
        for a, b in zip(got, ref, strict=True):
            np.testing.assert_array_equal(a, b)
        assert multi.targets(track, window).any()
        assert single.targets(track, window).any()


def test_score_summaries_share_one_helper():
    """Means for validation, medians for the README's tables and mir.evaluate's mean/median/n
    all come from `score_stats`: NaN and infinite scores are left out, names ignored."""
    from mir.evaluate import summarise
    from mir.report import median_scores
    from mir.tasks.base import mean_scores, score_stats

    nan, inf = float("nan"), float("inf")
    rows = [
        {"track": "a", "SDR": 1.0, "SIR": nan, "F": 0.5},
        {"track": "b", "SDR": 5.0, "SIR": 2.0, "F": inf},
        {"track": "c", "SDR": 3.0, "SIR": 4.0, "F": nan},
        {"track": "d", "SDR": 100.0},
    ]
    stats = score_stats(rows)
    assert list(stats) == ["SDR", "SIR", "F"]
    assert stats["SDR"] == {"mean": 27.25, "median": 4.0, "n": 4}
    assert stats["SIR"] == {"mean": 3.0, "median": 3.0, "n": 2}
    assert stats["F"] == {"mean": 0.5, "median": 0.5, "n": 1}
    assert mean_scores(rows) == {"SDR": 27.25, "SIR": 3.0, "F": 0.5}
    assert median_scores({"t": rows}) == {"t": {"SDR": 4.0, "SIR": 3.0, "F": 0.5}}
    assert summarise(rows, {"ROC-AUC": 0.75, "SDR": nan}) == {
        "ROC-AUC": {"value": 0.75},
        "SDR": stats["SDR"],
        "SIR": stats["SIR"],
        "F": stats["F"],
    }
    only_nan = score_stats([{"x": nan}])["x"]
    assert only_nan["n"] == 0
    assert np.isnan(only_nan["mean"])
    assert np.isnan(only_nan["median"])
    assert mean_scores([]) == {}
