"""End-to-end training through the one loop: smoke runs for every task, a joint run,
the real CLI, and (slow) learning that beats each task's trivial baseline."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mir.train import run
from tests.conftest import TASKS

SMOKE = [
    "trainer=smoke",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
]


@pytest.mark.parametrize("task", TASKS)
def test_smoke_each_task(compose, tmp_path, task):
    cfg = compose([f"task={task}", *SMOKE], tmp_path)
    result = run(cfg)
    monitor_key = result["monitor"].split("/", 2)[2]
    assert monitor_key in result["val"][task]
    assert result["test"][task], "test scores printed and saved"
    from mir.checkpoint import load_module

    module, _ = load_module(tmp_path / "checkpoints" / "last.ckpt")
    expect = module.tasks[task].expectations()
    assert expect.keys <= set(result["test"][task]), sorted(expect.keys - set(result["test"][task]))
    saved = json.loads((tmp_path / "scores.json").read_text())
    assert saved["test"][task] == pytest.approx(result["test"][task], nan_ok=True)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_joint_two_tasks_share_one_front_end(compose, tmp_path):
    cfg = compose(["task=[melody,bass]", *SMOKE], tmp_path)
    result = run(cfg)
    assert set(result["test"]) == {"melody", "bass"}
    metrics = pd.read_csv(next(tmp_path.glob("csv/version_*/metrics.csv")))
    for key in (
        "train/melody/loss",
        "train/bass/loss",
        "val/melody/Overall Accuracy",
        "val/bass/Overall Accuracy",
    ):
        assert key in metrics.columns, key


def test_cli_prints_full_track_table(embedded_root, tmp_path):
    env = dict(os.environ)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mir.train",
            "task=[melody,drums]",
            *SMOKE,
            "frontend=tiny",
            "model=tiny",
            "logger=[csv]",
            f"data.datasets.embedded.root={embedded_root}",
            "data.datasets.embedded.n_pieces=6",
            "data.datasets.embedded.max_duration=8.0",
            "data.crop_seconds=2.0",
            "data.batch_size=4",
            f"hydra.run.dir={tmp_path}/run",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Full-track test scores" in r.stdout
    assert "Overall Accuracy" in r.stdout
    assert "mean/F-measure" in r.stdout
    assert (tmp_path / "run" / "scores.json").is_file()


def test_resume_from_last_checkpoint(compose, tmp_path):
    cfg = compose(["task=melody", *SMOKE, "trainer.max_epochs=1"], tmp_path)
    run(cfg)
    cfg2 = compose(["task=melody", *SMOKE, "trainer.max_epochs=2", "ckpt_path=last"], tmp_path)
    run(cfg2)
    second = pd.read_csv(tmp_path / "csv" / "version_1" / "metrics.csv")
    trained = second.dropna(subset=["train/loss"])
    assert len(trained) > 0
    assert set(trained["epoch"]) == {1}, "the second run resumed at epoch 1, not from scratch"
    assert trained["step"].min() >= 3, "the global step continued (epoch 0 had 3 steps)"


LEARN = [
    "data.datasets.embedded.n_pieces=40",
    "data.datasets.embedded.max_duration=8.0",
    "data.crop_seconds=2.0",
    "data.batch_size=8",
    "data.steps_per_epoch=30",
    "trainer.max_epochs=8",
    "trainer.enable_progress_bar=false",
    "trainer.check_val_every_n_epoch=4",
    "model.optimizer.lr=0.003",
    "task.separation.channels=[8,16,32]",
]


@pytest.mark.slow
def test_learning_beats_trivial_baselines(compose, tmp_path):
    """Joint training of every head on one trunk: each task's metric (its
    `Task.expectations`) beats its trivial baseline on held-out pieces, and the training
    loss falls.

    A set-level metric (``held_out``, tagging's ROC-AUC) is too noisy on the 4 test pieces
    to judge, so it is measured on all held-out pieces (validation and test, 9 tracks) with
    the best checkpoint.
    """
    from hydra.utils import instantiate

    from mir.checkpoint import load_module

    cfg = compose([f"task=[{','.join(TASKS)}]", *LEARN], tmp_path)
    result = run(cfg)
    test, base = result["test"], result["test_baseline"]
    module, _ = load_module(next((tmp_path / "checkpoints").glob("epoch*.ckpt")))
    dm = instantiate(cfg.data)
    dm.bind(module.tasks, module.grid)
    held_out = dm.tracks("validation") + dm.tracks("test")
    result["held_out"] = {}
    for name, task in module.tasks.items():
        expect = task.expectations()
        key = expect.metric
        if expect.held_out:
            _, scores = task.evaluate(held_out, [module.predict_track(t)[name] for t in held_out])
            _, trivial_scores = task.evaluate(held_out, [task.baseline(t) for t in held_out])
            model, trivial = scores[key], trivial_scores[key]
            result["held_out"][name] = scores
        else:
            model, trivial = test[name][key], base[name][key]
        assert math.isfinite(model), (name, key)
        better = model > trivial if expect.higher_is_better else model < trivial
        assert better, f"{name} {key}: model {model:.3f}, baseline {trivial:.3f}"

    metrics = pd.read_csv(next(tmp_path.glob("csv/version_*/metrics.csv")))
    loss = metrics["train/loss"].dropna().to_numpy()
    assert loss[-3:].mean() < loss[:3].mean(), "training loss falls"
    Path(os.environ.get("MIR_LEARNING_JSON", tmp_path / "learning.json")).write_text(
        json.dumps(result, default=float, indent=1)
    )
