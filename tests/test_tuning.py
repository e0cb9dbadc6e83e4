"""Threshold tuning on validation keeps per-track statistics, never raw outputs, and picks
the thresholds that tuning on the kept raw outputs picked."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from tests._ckpt import TASKS, embedded_overrides, trained_ckpt, trained_module  # noqa: F401

TUNED = ("melody", "multif0")


def _tune_on_raw_outputs(task, tracks, outputs):
    """Tuning as it was before statistics: every labelled track's raw output is decoded at
    each threshold of the grid, the best mean monitor wins; then the set is scored."""
    from mir.tasks.salience import THRESHOLD_GRID

    pairs = [(t, o) for t, o in zip(tracks, outputs, strict=True) if task.has_labels(t)]
    best, best_score = task.threshold, -np.inf
    for th in THRESHOLD_GRID:
        task._threshold_buffer().fill_(th)
        _, summary = task.evaluate([t for t, _ in pairs], [task.decode(o, t) for t, o in pairs])
        score = summary.get(task.monitor, -np.inf)
        if np.isfinite(score) and score > best_score:
            best, best_score = th, score
    task._threshold_buffer().fill_(best)
    return best, *task.evaluate(
        tracks, [task.decode(o, t) for t, o in zip(tracks, outputs, strict=True)]
    )


@pytest.fixture(scope="module")
def embedded_tracks(trained_module, embedded_root, compose, tmp_path_factory):  # noqa: F811
    from mir.train import instantiate

    module, _ = trained_module
    cfg = compose([f"task={TASKS}"], tmp_path_factory.mktemp("tune"))
    dm = instantiate(cfg.data)
    dm.bind(module.tasks)
    return [dm.load(d, t) for d, t in dm.track_ids("all")]


def test_tuning_statistics_pick_the_thresholds_raw_outputs_picked(trained_module, embedded_tracks):  # noqa: F811
    module, _ = trained_module
    tracks = embedded_tracks
    start = {n: module.tasks[n].threshold for n in TUNED}
    outputs = [module.infer(t) for t in tracks]
    want = {}
    try:
        for name in TUNED:
            task = module.tasks[name]
            # the scores differ between thresholds, so the choice means something
            means = set()
            for th in (0.05, 0.3, 0.7):
                task._threshold_buffer().fill_(th)
                est = [task.decode(o[name], t) for o, t in zip(outputs, tracks, strict=True)]
                means.add(task.evaluate(tracks, est)[1][task.monitor])
            assert len(means) > 1, name
            task._threshold_buffer().fill_(start[name])
            raw = [o[name] for o in outputs]
            want[name] = _tune_on_raw_outputs(task, tracks, raw)
            # raw outputs kept as float16, as validation used to: the same threshold
            task._threshold_buffer().fill_(start[name])
            f16 = [r.astype(np.float16).astype(np.float32) for r in raw]
            assert _tune_on_raw_outputs(task, tracks, f16)[0] == want[name][0], name
            task._threshold_buffer().fill_(start[name])

        for track in tracks:
            module._eval_step("val", [track])
        for _, item in module._eval["val"]:
            for name in TUNED:
                kind, stats, labelled = item[name]
                assert kind == "tuning"
                assert (len(stats) > 0) == labelled
                assert not any(
                    isinstance(v, np.ndarray) for s in stats.values() for v in s.values()
                )
        module._eval_end("val")
        for name in TUNED:
            best, per_track, summary = want[name]
            assert module.tasks[name].threshold == pytest.approx(best), name
            got = [
                {k: v for k, v in s.items() if k != "track"} for s in module.per_track["val"][name]
            ]
            assert got == per_track, name
            assert module.results["val"][name] == summary, name
    finally:
        for name, th in start.items():
            module.tasks[name]._threshold_buffer().fill_(th)


def _synthetic(name: str, seconds: float, sr: int):
    from mir.data.track import Track

    t = np.arange(int(seconds * sr)) / sr
    audio = (0.5 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
    times = np.arange(0.0, seconds, 0.01)
    f0 = np.where((times % 2.0) < 1.5, 220.0, 0.0)
    return Track(
        name=name,
        audio=audio,
        sr=sr,
        annotations={
            "melody": (times, f0),
            "multif0": (times, [np.array([f]) if f > 0 else np.zeros(0) for f in f0]),
        },
    )


def test_what_validation_keeps_does_not_grow_with_track_length(compose, tmp_path):
    from mir.train import instantiate

    cfg = compose(["task=[melody,multif0]", "frontend=tiny", "model=tiny"], tmp_path)
    module = instantiate(cfg.model).eval()
    sr = module.model.frontend.sr
    sizes = {}
    for seconds in (4.0, 40.0):
        module._eval_step("val", [_synthetic("x", seconds, sr)])
        _, item = module._eval["val"][-1]
        sizes[seconds] = {n: len(pickle.dumps(item[n])) for n in ("melody", "multif0")}
        raw = module.infer(_synthetic("x", seconds, sr))
        sizes[seconds]["raw"] = raw["melody"].nbytes + raw["multif0"].nbytes
    # the raw outputs grow tenfold; the statistics kept per track do not grow at all
    assert sizes[40.0]["raw"] > 9 * sizes[4.0]["raw"]
    for name in ("melody", "multif0"):
        assert abs(sizes[40.0][name] - sizes[4.0][name]) < 64, (name, sizes)
        assert sizes[40.0][name] < 8192, (name, sizes)
