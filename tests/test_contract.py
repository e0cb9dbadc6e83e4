"""Contract tests over every task and dataset config: each composes, instantiates,
yields the right shapes, and its evaluation returns mir_eval's keys."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from mir.errors import DatasetError
from mir.grid import Window
from mir.tasks import all_tasks, registered
from mir.tasks.base import Task
from mir.train import instantiate as mir_instantiate
from tests.conftest import CONF, DATASETS, TASKS


def test_registry_is_the_task_yamls():
    """Every conf/task YAML names a Task class, and all_tasks trains every one of them."""
    classes = registered()
    assert set(classes) == set(TASKS)
    for name, cls in classes.items():
        assert issubclass(cls, Task), name
    assert sorted(all_tasks()) == sorted(TASKS), "list every task in experiment/all_tasks.yaml"
    for path in (CONF / "task").glob("*.yaml"):
        head = path.read_text().splitlines()[0]
        assert head == f"# @package task.{path.stem}", path.name


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
    expect = task.expectations()
    assert expect.keys, f"{name}: expectations() names no mir_eval key"
    assert expect.keys <= set(summary), sorted(expect.keys - set(summary))
    assert task.monitor in summary
    assert expect.metric in summary
    assert set(task.report_columns) <= set(summary)
    base_per_track, base = task.evaluate([track], [task.baseline(track)])
    assert set(base) <= set(summary) | {"ROC-AUC", "PR-AUC"}
    # a summary that is more than the per-track mean says so (validation and mir.evaluate
    # then keep every estimate for it)
    if type(task).summarise is not Task.summarise:
        assert task.set_level_summary, f"{name} overrides summarise: set set_level_summary"


@pytest.mark.parametrize("name", TASKS)
def test_task_owns_its_figure_and_export_shape(all_tasks_module, name):
    """Each task draws its figure (or says it draws none) and describes its export output
    with as many axes as its head's output has."""
    from mir.callbacks import to_image

    _, module, dm = all_tasks_module
    task = module.tasks[name]
    track = dm.tracks("validation")[0]
    module.model.eval()
    raw = module.analyse(track, raw=[name], decode=())[0][name]
    n_frames = min(task.grid.n_frames(len(track.audio)), 200)
    fig = task.figure(track, raw, n_frames)
    if fig is not None:
        image = np.asarray(to_image(fig))
        assert image.shape[0] > 50, name
        assert image.std() > 0, f"{name}: blank figure"
    shape = task.output_shape()
    assert shape.startswith("(B, "), shape
    axes = shape[1 : shape.index(")")].split(", ")
    assert len(axes) == raw.ndim + 1, (shape, raw.shape)
    assert json.loads(json.dumps(task.export_labels())) == task.export_labels()


def test_predict_writes_every_tasks_outputs(all_tasks_module, tmp_path):
    """`mir.predict` writes, for every registered task, the files and JAMS annotations that
    the task's own `write_outputs` gives on the same estimate."""
    import jams

    from mir.audio import write_wav
    from mir.predict import predict_file
    from mir.tasks.base import OutputContext

    _, module, dm = all_tasks_module
    module.model.eval()
    track = dm.tracks("validation")[0]
    audio = track.audio[: 6 * track.sr]
    wav = write_wav(tmp_path / "clip.wav", audio, track.sr)
    out = tmp_path / "out"
    predict_file(module, wav, out)
    written = {p.name for p in out.iterdir()}
    predicted = jams.load(str(out / "clip.jams"))
    clip = type(track)(name="clip", audio=audio, sr=track.sr)
    raw, estimates = module.analyse(clip, raw=list(module.tasks))
    for name, task in module.tasks.items():
        alone = tmp_path / f"alone-{name}"
        alone.mkdir()
        ctx = OutputContext(
            alone, len(audio) / track.sr, track.sr, audio[None], len(audio), raw, 5, 0.05
        )
        annotations = task.write_outputs(ctx, estimates[name])
        files = {p.name for p in alone.iterdir()}
        assert files or annotations, f"{name} writes nothing"
        assert files <= written, (name, sorted(files - written))
        ours = [a for a in predicted.annotations if a.sandbox.task == name]
        assert [a.namespace for a in ours] == [a.namespace for a in annotations], name
    assert "DONE" in written


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
