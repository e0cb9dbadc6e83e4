"""Contract tests over every task and dataset config: each composes, instantiates,
yields the right shapes, and its evaluation returns mir_eval's keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from mir.errors import DatasetError
from mir.tasks.base import Window
from mir.train import instantiate as mir_instantiate
from tests.conftest import DATASETS, EXPECTED_KEYS, TASKS


def test_every_task_has_expected_keys():
    assert set(TASKS) == set(EXPECTED_KEYS), "add the new task's mir_eval keys here"


@pytest.fixture(scope="module")
def all_tasks_module(compose, tmp_path_factory):
    cfg = compose([f"task=[{','.join(TASKS)}]"], tmp_path_factory.mktemp("out"))
    module = instantiate(cfg.model)
    dm = instantiate(cfg.data)
    dm.bind(module.tasks)
    return cfg, module, dm


@pytest.mark.parametrize("name", TASKS)
def test_task_contract(all_tasks_module, name):
    cfg, module, dm = all_tasks_module
    task = module.tasks[name]
    fe = module.model.frontend
    track = dm.tracks("validation")[0]
    assert task.has_labels(track), f"embedded data must label {name}"

    # targets for a window, on the front end's grid
    n_frames = fe.n_frames(fe.sr * 2)
    window = Window(3, n_frames, 3 * fe.hop, (n_frames - 1) * fe.hop)
    y = task.targets(track, window)
    if task.target_kind == "frames":
        assert y.shape[-1] == n_frames
    elif task.target_kind == "samples":
        assert y.shape[-1] == window.n_samples
    assert np.isfinite(y).all()

    # the head's output shape, and a finite loss with gradient
    module.model.train()
    audio = torch.from_numpy(track.audio[: window.n_samples].copy())[None].repeat(2, 1)
    outputs, feats = module.model(audio)
    out = outputs[name]
    if task.output_kind == "frames":
        assert out.shape[-1] == n_frames
    target = torch.from_numpy(y)[None].repeat(2, *([1] * y.ndim))
    loss = task.loss(out, target, torch.tensor([True, False]), feats)
    assert torch.isfinite(loss)
    loss.backward()
    # a fully masked batch contributes nothing
    zero = task.loss(out, target, torch.tensor([False, False]), feats)
    assert float(zero.detach()) == 0.0

    # full-track inference, decoding and mir_eval keys
    module.model.eval()
    est = module.predict_track(track)[name]
    per_track, summary = task.evaluate(
        dm.tracks("validation"),
        [module.predict_track(t)[name] if t is not track else est for t in dm.tracks("validation")],
    )
    assert EXPECTED_KEYS[name] <= set(summary), sorted(summary)
    assert task.monitor in summary
    base_per_track, base = task.evaluate([track], [task.baseline(track)])
    assert set(base) <= set(summary) | {"ROC-AUC", "PR-AUC"}


def test_masking_tracks_without_labels(all_tasks_module):
    """A track missing a task's labels gets zero targets and a False mask."""
    _, module, dm = all_tasks_module
    track = dm.tracks("validation")[0]
    bare = type(track)(name="bare", audio=track.audio, sr=track.sr)
    fe = module.model.frontend
    n = fe.n_frames(fe.sr)
    w = Window(0, n, 0, (n - 1) * fe.hop)
    for name, task in module.tasks.items():
        assert not task.has_labels(bare), name
        assert not np.any(task.targets(bare, w)), name


@pytest.mark.parametrize("name", DATASETS)
def test_data_config_composes(compose, tmp_path, name):
    """Every data config composes and names an importable Dataset class."""
    cfg = compose([f"data={name}", "task=melody"], tmp_path)
    assert cfg.data.datasets, name
    for ds_cfg in cfg.data.datasets.values():
        module_name, cls_name = ds_cfg._target_.rsplit(".", 1)
        mod = __import__(module_name, fromlist=[cls_name])
        assert hasattr(mod, cls_name)
        assert ds_cfg.sr == cfg.frontend.sr


@pytest.mark.parametrize("name", [d for d in DATASETS if d != "embedded"])
def test_data_config_missing_root_is_clear(compose, tmp_path, name):
    cfg = compose([f"data={name}", "task=melody"], tmp_path)
    missing = tmp_path / "does-not-exist"
    for ds_cfg in cfg.data.datasets.values():
        ds_cfg.root = str(missing)
        with pytest.raises(DatasetError, match="does-not-exist"):
            mir_instantiate(ds_cfg).track_ids("train")


def test_checkpoint_monitor_is_first_task(compose, tmp_path):
    cfg = compose(["task=[melody,bass]"], tmp_path)
    module = instantiate(cfg.model)
    assert module.monitor == "val/melody/Overall Accuracy"
    assert list(module.tasks) == ["melody", "bass"]
    assert Path(cfg.output_dir) == tmp_path


EXPERIMENTS = sorted(
    p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "experiment").glob("*.yaml")
)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_config_builds(compose, tmp_path, name):
    """Every experiment file composes and builds its model with one head per task."""
    cfg = compose([f"experiment={name}"], tmp_path, small=False)
    module = instantiate(cfg.model)
    assert set(module.model.heads) == set(cfg.task)
    assert module.monitor.startswith(f"val/{next(iter(cfg.task))}/")


def test_deep_salience_is_the_published_size(compose, tmp_path):
    cfg = compose(["experiment=deep_salience"], tmp_path, small=False)
    module = instantiate(cfg.model)
    n = sum(p.numel() for p in module.parameters())
    assert 400_000 < n < 410_000, n  # ~406k in Bittner et al. 2017
