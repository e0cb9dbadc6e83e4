"""`mir.evaluate`: per-track files, mean/median summary, mir_eval keys, baselines."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict

import numpy as np
import pytest

from mir.evaluate import summarise
from tests._ckpt import embedded_overrides, trained_ckpt, trained_module  # noqa: F401


def test_summarise_mean_median_and_set_level():
    rows = [
        {"track": "a", "x": 1.0},
        {"track": "b", "x": 2.0},
        {"track": "c", "x": 9.0},
        {"track": "d", "x": math.nan},
    ]
    out = summarise(rows, {"x": 0.0, "AUC": 0.75})
    assert out == {"x": {"mean": 4.0, "median": 2.0, "n": 3}, "AUC": {"value": 0.75}}


@pytest.fixture(scope="module")
def evaluated(trained_ckpt, embedded_root, tmp_path_factory):  # noqa: F811
    from mir.evaluate import run

    out = tmp_path_factory.mktemp("eval")
    overrides = [*embedded_overrides(embedded_root), "data.max_eval_tracks=3"]
    result = run(
        str(trained_ckpt), "embedded", split="train", output=str(out), data_overrides=overrides
    )
    return out, result


def test_summary_keys_are_the_tasks_mir_eval_keys(evaluated, trained_module):  # noqa: F811
    module, _ = trained_module
    out, result = evaluated
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tracks"] == 3
    assert set(summary["model"]) == set(module.tasks)
    # every task says how many of the 3 tracks it scored and why it skipped the others
    for name in module.tasks:
        cov = summary["coverage"][name]
        assert cov["scored"] + len(cov["skipped"]) == 3, name
        assert cov["scored"] == len({r["track"] for r in result_rows(out, name)}), name
    assert summary["seed"] == module.run_config["seed"]
    for name in module.tasks:
        assert module.tasks[name].expectations().keys <= set(summary["model"][name]), name
        assert set(summary["baseline"][name]) == set(summary["model"][name])
    # melody's keys are exactly mir_eval.melody.evaluate's
    import mir_eval

    t = np.arange(10) * 0.01
    ref = mir_eval.melody.evaluate(t, np.full(10, 220.0), t, np.full(10, 220.0))
    assert list(summary["model"]["melody"]) == list(ref)


def result_rows(out, task):
    return json.loads((out / "per_track.json").read_text())["model"][task]


def test_summary_is_mean_and_median_of_per_track_csv(evaluated):
    out, _ = evaluated
    values = defaultdict(list)
    tracks = set()
    with open(out / "per_track.csv", newline="") as f:
        for row in csv.DictReader(f):
            values[row["system"], row["task"], row["metric"]].append(float(row["value"]))
            tracks.add(row["track"])
    assert len(tracks) == 3
    summary = json.loads((out / "summary.json").read_text())
    per_track = json.loads((out / "per_track.json").read_text())
    checked = 0
    for (system, task, metric), vals in values.items():
        v = np.array(vals)
        v = v[np.isfinite(v)]
        stats = summary[system][task][metric]
        assert stats["n"] == len(v)
        if len(v):
            assert stats["mean"] == pytest.approx(v.mean(), rel=1e-9, abs=1e-12)
            assert stats["median"] == pytest.approx(np.median(v), rel=1e-9, abs=1e-12)
            checked += 1
        assert len(per_track[system][task]) == len(vals)
    assert checked > 40
    # a set-level metric has a value and no median
    assert set(summary["model"]["tagging"]["ROC-AUC"]) == {"value"}


def test_model_and_baseline_differ_where_baseline_is_trivial(evaluated):
    _, result = evaluated
    # the all-unvoiced melody baseline recalls no voiced frame; the model's masks differ
    assert result["baseline"]["melody"]["Voicing Recall"]["mean"] == 0.0
    assert result["baseline"]["separation"]["vocals/NSDR"]["mean"] == pytest.approx(0.0, abs=1e-6)


def test_bad_checkpoint_and_data_are_one_line(trained_ckpt, tmp_path, capsys):  # noqa: F811
    from mir.evaluate import main

    assert main([f"ckpt={tmp_path / 'missing.ckpt'}", "data=embedded"]) == 2
    assert main([f"ckpt={trained_ckpt}", "data=no_such_set"]) == 2
    assert main([f"ckpt={trained_ckpt}", "data=embedded", "split=dev"]) == 2
    assert main([f"ckpt={trained_ckpt}", "data=embedded", "threads=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if line.startswith("error:")]
    assert len(err) == 4
    assert "checkpoint file does not exist" in err[0]
    assert "no such dataset config" in err[1]
    assert "unknown split" in err[2]
    assert "threads=0 must be an integer >= 1" in err[3]


def test_split_all_and_ids_pick_the_tracks_scored(trained_ckpt, embedded_root, tmp_path):  # noqa: F811
    """`split=all` reaches every split, `data.ids=[...]` exactly the tracks named, and an id
    that is not there is one error naming it."""
    from mir.data.embedded import EmbeddedDataset
    from mir.errors import ConfigError
    from mir.evaluate import run
    from tests.conftest import SMALL_EMBEDDED

    sizes = {o.split("=")[0].rsplit(".", 1)[1]: o.split("=")[1] for o in SMALL_EMBEDDED}
    ds = EmbeddedDataset(
        root=str(embedded_root),
        n_pieces=int(sizes["n_pieces"]),
        max_duration=float(sizes["max_duration"]),
    )
    test_id, train_id = ds.track_ids("test")[0], ds.track_ids("train")[0]
    overrides = [*embedded_overrides(embedded_root), f"data.ids=[{test_id},embedded/{train_id}]"]
    result = run(
        str(trained_ckpt), "embedded", split="all", output=str(tmp_path / "a"),
        data_overrides=overrides, baselines=False,
    )  # fmt: skip
    assert result["tracks"] == 2
    scored = json.loads((tmp_path / "a" / "per_track.json").read_text())
    names = {row["track"] for rows in scored["model"].values() for row in rows}
    assert names == {f"embedded/{test_id}", f"embedded/{train_id}"}
    with pytest.raises(ConfigError, match="data.ids: embedded/nope not in the test split"):
        run(
            str(trained_ckpt), "embedded", split="test", output=str(tmp_path / "b"),
            data_overrides=[*embedded_overrides(embedded_root), "data.ids=[embedded/nope]"],
        )  # fmt: skip


def test_train_scores_test_baselines_one_track_at_a_time(trained_module, compose, tmp_path):  # noqa: F811
    # mir.train's baseline and coverage of the test split, streamed, equal those computed
    # on the whole split in memory, and no split is left loaded
    from mir.report import baseline_scores, coverage
    from mir.train import baseline_and_coverage, instantiate

    module, _ = trained_module
    cfg = compose(["task=[separation,melody,multif0,drums,tagging]"], tmp_path)
    dm = instantiate(cfg.data)
    dm.bind(module.tasks)
    base, cov, n = baseline_and_coverage(module.tasks, dm, True, split="all")
    assert dm._tracks == {}
    tracks = dm.tracks("all")
    assert n == len(tracks) > 1
    assert cov == coverage(module.tasks, tracks)
    want = baseline_scores(module.tasks, tracks)
    assert set(base) == set(want) == set(module.tasks)
    for name in want:
        assert list(base[name]) == list(want[name]), name
        for key, value in want[name].items():
            assert base[name][key] == value or (np.isnan(value) and np.isnan(base[name][key])), (
                name,
                key,
            )
    assert baseline_and_coverage(module.tasks, dm, False, split="all")[::2] == (None, n)


def test_precision_int8_reaches_inference_and_is_recorded(
    trained_ckpt,  # noqa: F811
    embedded_root,
    tmp_path,
    monkeypatch,
    capsys,
):
    """`precision=int8` runs the int8 inference copy (torch.qint8 reaches `inference_model`),
    scores the same tracks and metrics as float32, close to them, and `summary.json` says which
    precision it was; a bad precision is a one-line error before the model is loaded."""
    import torch

    import mir.models.fused as fused
    from mir.evaluate import main, run

    seen = []
    real = fused.inference_model

    def spy(model, dtype=torch.float32, calibration=None):
        seen.append(dtype)
        return real(model, dtype, calibration)

    monkeypatch.setattr(fused, "inference_model", spy)
    overrides = [*embedded_overrides(embedded_root), "data.max_eval_tracks=1"]
    rows = {}
    for precision in ("float32", "int8"):
        out = tmp_path / precision
        result = run(
            str(trained_ckpt), "embedded", split="test", output=str(out),
            data_overrides=overrides, baselines=False, precision=precision,
        )  # fmt: skip
        assert json.loads((out / "summary.json").read_text())["precision"] == precision
        assert result["precision"] == precision
        rows[precision] = json.loads((out / "per_track.json").read_text())["model"]
    assert torch.qint8 in seen
    assert torch.float32 in seen
    assert rows["int8"].keys() == rows["float32"].keys()
    for task, scored in rows["float32"].items():
        for r32, r8 in zip(scored, rows["int8"][task], strict=True):
            assert r32.keys() == r8.keys()
            assert r32["track"] == r8["track"]
            if task == "multif0":  # int8 moves a score by a little, not by a lot
                assert abs(r32["Accuracy"] - r8["Accuracy"]) < 0.2
    assert main([f"ckpt={trained_ckpt}", "data=embedded", "precision=fp8"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert err == ["error: precision='fp8' must be one of float32, bf16, int8"]
