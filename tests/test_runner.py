"""The experiment runner around the one loop: W&B media, Optuna and W&B sweeps, DDP,
SLURM launcher config, torch.compile, exact resume after SIGKILL, checkpoint checks."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mir.errors import ConfigError
from mir.train import instantiate, run
from tests.conftest import CONF, REPO, SMALL, SMALL_EMBEDDED

SMOKE = [
    "trainer=smoke",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
]


def cli(embedded_root: Path, *overrides: str) -> list[str]:
    """`python -m mir.train` on the small test settings."""
    return [
        sys.executable,
        "-m",
        "mir.train",
        *SMALL,
        *SMALL_EMBEDDED,
        f"data.datasets.embedded.root={embedded_root}",
        *overrides,
    ]


def run_cli(cmd: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env, check=False
    )


# -- W&B media -------------------------------------------------------------------------------
@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """Keep W&B's staging, cache and settings inside the test's folder."""
    for var, sub in [
        ("WANDB_DATA_DIR", "wandb_data"),
        ("WANDB_CACHE_DIR", "wandb_cache"),
        ("WANDB_CONFIG_DIR", "wandb_config"),
    ]:
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return tmp_path


@pytest.mark.slow
def test_wandb_offline_run_has_tables_figures_audio_and_checkpoint(compose, wandb_env):
    out = wandb_env / "run"
    cfg = compose(["task=[separation,melody]", *SMOKE, "logger=[csv,wandb]"], out)
    assert cfg.logger.wandb.offline is True, "W&B is offline by default"
    run(cfg)

    (run_dir,) = (out / "wandb").glob("offline-run-*")
    media = run_dir / "files" / "media"
    for stage in ("val", "test"):
        (table,) = (media / "table" / stage / "melody").glob("per_track_*.table.json")
        content = json.loads(table.read_text())
        assert content["columns"][:1] == ["track"]
        assert "Overall Accuracy" in content["columns"]
        assert len(content["data"]) == 1
        assert content["data"][0][0].startswith("embedded/")
        assert list((media / "table" / stage / "separation").glob("*.table.json"))
        assert list((media / "images" / stage).glob("hcqt_*.png"))
        for task in ("melody", "separation"):
            assert list((media / "images" / stage / task).glob("figure_*.png")), (stage, task)
        wavs = list((media / "audio" / stage / "separation").glob("audio_*.wav"))
        assert len(wavs) == 3, "mixture and two estimated stems"

    # The best checkpoint is logged as a `model` artifact (in the run's record file) and
    # its bytes are staged for upload.
    run_id = run_dir.name.rsplit("-", 1)[1]
    record = next(run_dir.glob("*.wandb")).read_bytes()
    assert f"model-{run_id}".encode() in record
    assert b"model.ckpt" in record
    best = next((out / "checkpoints").glob("epoch*.ckpt")).read_bytes()
    staged = [p for p in (wandb_env / "wandb_data").rglob("*") if p.is_file()]
    assert any(p.stat().st_size == len(best) and p.read_bytes() == best for p in staged)


def test_figures_for_every_kind_of_task(compose, tmp_path):
    from mir.callbacks import hcqt_figure, to_image
    from tests.conftest import TASKS

    cfg = compose([f"task=[{','.join(TASKS)}]"], tmp_path)
    module = instantiate(cfg.model).eval()
    dm = instantiate(cfg.data)
    dm.bind(module.tasks)
    track = dm.tracks("validation")[0]
    raw = module.infer(track)
    fe = module.model.frontend
    n_frames = fe.n_frames(len(track.audio))
    hcqt = fe(torch.from_numpy(track.audio[None]))[0].numpy()
    assert to_image(hcqt_figure(fe, hcqt)).size[0] > 100
    for name, task in module.tasks.items():
        fig = task.figure(track, raw[name], n_frames)
        assert fig is not None, f"no figure for {type(task).__name__}"
        image = np.asarray(to_image(fig))
        assert image.shape[0] > 50, name
        assert image.std() > 0, f"{name}: blank figure"


# -- sweeps ----------------------------------------------------------------------------------
needs_optuna = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
    reason="hydra-optuna-sweeper not installed (pip install -e '.[sweep]')",
)


@needs_optuna
@pytest.mark.slow
def test_optuna_sweep_two_trials(embedded_root, tmp_path):
    sweep_dir = tmp_path / "sweep"
    r = run_cli(
        cli(
            embedded_root,
            "hparams_search=melody_optuna",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=2",
            *SMOKE,
            "trainer.limit_train_batches=2",
            f"hydra.sweep.dir={sweep_dir}",
        )
    )
    assert r.returncode == 0, r.stderr[-3000:]
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    # data.batch_size is fixed by the command line (SMALL), so it is not searched
    assert set(results["best_params"]) == {
        "model.optimizer.lr",
        "model.optimizer.weight_decay",
        "task.melody.sigma_cents",
        "task.melody.head_channels",
    }
    trials = [json.loads((sweep_dir / str(i) / "scores.json").read_text()) for i in (0, 1)]
    values = [t["val"]["melody"]["Overall Accuracy"] for t in trials]
    assert results["best_value"] == pytest.approx(max(values)), "the monitored val metric"


@needs_optuna
@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "hparams_search").glob("*.yaml")))
def test_hparams_search_configs_compose(name):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"hparams_search={name}"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper.direction == "maximize"
    assert "OptunaSweeper" in sweeper._target_
    for key in sweeper.params:
        assert OmegaConf.select(cfg, key) is not None, f"{name}: {key} is not a config key"


SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))


def _samples(spec: dict) -> list:
    if "values" in spec:
        return list(spec["values"])
    if "value" in spec:
        return [spec["value"]]
    assert {"min", "max"} <= set(spec), spec
    return [spec["min"], spec["max"]]


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_wandb_sweep_is_valid_and_composes(compose, tmp_path, path):
    from omegaconf import OmegaConf
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    sweep = yaml.safe_load(path.read_text())
    assert sweep["method"] in {"grid", "random", "bayes"}
    assert sweep["metric"]["goal"] in {"maximize", "minimize"}
    command = create_sweep_command(list(sweep["command"]))
    assert command[-1] == "${args_no_hyphens}"
    assert "mir.train" in command
    fixed = [c for c in command[command.index("mir.train") + 1 : -1]]
    distributions = {
        "uniform",
        "log_uniform_values",
        "int_uniform",
        "q_uniform",
        "q_log_uniform_values",
        "normal",
        "categorical",
    }
    for spec in sweep["parameters"].values():
        assert "values" in spec or "value" in spec or spec.get("distribution") in distributions
    # every sampled value, written as the agent writes it, is a Hydra override that composes
    n = max(len(_samples(s)) for s in sweep["parameters"].values())
    for i in range(n):
        values = {
            k: _samples(s)[min(i, len(_samples(s)) - 1)] for k, s in sweep["parameters"].items()
        }
        args = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
        cfg = compose([*fixed, *args["args_no_hyphens"]], tmp_path, small=False)
        for key, value in values.items():
            assert OmegaConf.select(cfg, key) == pytest.approx(value), key
    # the metric is a monitored key the runs log: val/<task>/<mir_eval key> of a selected task
    stage, task, key = sweep["metric"]["name"].split("/", 2)
    assert stage == "val"
    assert task in cfg.task
    from hydra.utils import get_class

    assert key == get_class(cfg.task[task]._target_).monitor


# -- scale -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_ddp_two_cpu_processes(embedded_root, tmp_path):
    out = tmp_path / "run"
    r = run_cli(
        cli(
            embedded_root,
            "task=melody",
            "trainer=ddp",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "trainer.enable_progress_bar=false",
            "trainer.devices=2",
            "trainer.accelerator=cpu",
            "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=2",
            f"hydra.run.dir={out}",
        ),
        timeout=400,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    scores = json.loads((out / "scores.json").read_text())
    # the ranks' outputs are gathered: every test track scored once (a DistributedSampler
    # pads the shorter rank with a repeated track, which is dropped)
    n_tracks = int(re.search(r"Full-track test scores \((\d+) tracks\)", r.stdout).group(1))
    names = [row["track"] for row in scores["test_per_track"]["melody"]]
    assert len(names) == len(set(names)) == min(n_tracks, 2 * 2)
    assert "Overall Accuracy" in scores["val"]["melody"]
    assert (out / "checkpoints" / "last.ckpt").is_file()


needs_submitit = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
    reason="hydra-submitit-launcher not installed (pip install -e '.[slurm]')",
)


@needs_submitit
def test_slurm_launcher_composes():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "task=melody"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu"
    assert launcher.gpus_per_node == 1
    assert launcher.submitit_folder.endswith(".submitit/%j")


@needs_submitit
@pytest.mark.slow
def test_submitit_local_runs_one_job(embedded_root, tmp_path):
    sweep_dir = tmp_path / "multirun"
    r = run_cli(
        cli(
            embedded_root,
            "hydra.mode=MULTIRUN",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=10",
            "task=melody",
            *SMOKE,
            "test=false",
            f"hydra.sweep.dir={sweep_dir}",
        )
    )
    assert r.returncode == 0, r.stderr[-3000:]
    scores = json.loads((sweep_dir / "0" / "scores.json").read_text())
    assert "Overall Accuracy" in scores["val"]["melody"]


@pytest.mark.slow
def test_compile_matches_eager(compose, tmp_path):
    cfg = compose(["task=[melody,drums]"], tmp_path)
    eager = instantiate(cfg.model).eval()
    compiled = instantiate(cfg.model, compile=True).eval()
    assert set(compiled.state_dict()) == set(eager.state_dict()), "same parameter names"
    compiled.load_state_dict(eager.state_dict())
    audio = 0.1 * torch.randn(
        1, int(1.5 * cfg.frontend.sr), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        ref = eager(audio)
        try:
            out = compiled(audio)
        except Exception as exc:  # no C++ toolchain for inductor, for instance
            pytest.skip(f"torch.compile cannot compile here: {type(exc).__name__}: {exc}"[:300])
    for name in ref:
        torch.testing.assert_close(out[name], ref[name], rtol=1e-4, atol=1e-5)


# -- exact resume after SIGKILL ------------------------------------------------------------
RESUME = [
    "task=melody",
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "data.steps_per_epoch=4",
    "trainer.log_every_n_steps=1",
    "seed=7",
]


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_run(embedded_root, tmp_path):
    """Kill a seeded run with SIGKILL after its first epoch-end checkpoint, resume it with
    ckpt_path=last in the same run dir, and get exactly the scores of a run never stopped.

    Resuming is exact from epoch-end checkpoints (last.ckpt is written after each
    validation): model, optimizer, tuned thresholds and loop state are restored, and each
    epoch's excerpts are a function of (seed, epoch, index). The run kills itself (a
    test-only callback, `tests/_killer.py`) as its second epoch starts, so the crash lands
    at the same point however fast the machine is.
    """
    ref_dir, kill_dir = tmp_path / "ref", tmp_path / "killed"
    r = run_cli(cli(embedded_root, *RESUME, f"hydra.run.dir={ref_dir}"))
    assert r.returncode == 0, r.stderr[-3000:]

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killer = ["+callbacks.kill._target_=tests._killer.KillAtEpochStart", "+callbacks.kill.epoch=1"]
    cmd = cli(embedded_root, *RESUME, *killer, f"hydra.run.dir={kill_dir}")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not (kill_dir / "scores.json").exists()
    last = kill_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0, "killed after epoch 0's checkpoint"

    r = run_cli(cli(embedded_root, *RESUME, "ckpt_path=last", f"hydra.run.dir={kill_dir}"))
    assert r.returncode == 0, r.stderr[-3000:]
    ref = json.loads((ref_dir / "scores.json").read_text())
    resumed = json.loads((kill_dir / "scores.json").read_text())
    assert resumed["val"] == ref["val"]
    assert resumed["test"] == ref["test"]
    # every training step after the resume has exactly the loss of the same step in the
    # uninterrupted run
    import pandas as pd

    def losses(path: Path) -> dict[int, float]:
        m = pd.read_csv(path).dropna(subset=["train/loss"])
        return dict(zip(m["step"].astype(int), m["train/loss"], strict=True))

    ref_loss = losses(ref_dir / "csv" / "version_0" / "metrics.csv")
    after = losses(kill_dir / "csv" / "version_1" / "metrics.csv")
    assert after, "the resumed run trained"
    assert min(after) > 0, "the resumed run continued, not restarted"
    assert after == {k: ref_loss[k] for k in after}


# -- checkpoints -----------------------------------------------------------------------------
def test_checkpoint_errors_name_the_problem(tmp_path):
    from mir.checkpoint import load_module, read_checkpoint

    with pytest.raises(ConfigError, match="does not exist"):
        load_module(tmp_path / "missing.ckpt")
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="notes.ckpt: not a mir checkpoint, or it contains"):
        load_module(text)
    plain = tmp_path / "plain.ckpt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(ConfigError, match="not a Lightning checkpoint"):
        read_checkpoint(plain)
    bare = tmp_path / "bare.ckpt"
    torch.save({"state_dict": {}}, bare)
    with pytest.raises(ConfigError, match="no mir run config"):
        read_checkpoint(bare)
    config = {"model": {}, "frontend": {}, "task": {"chords": {"_target_": "mir.tasks.Chords"}}}
    unknown = tmp_path / "unknown.ckpt"
    torch.save({"state_dict": {}, "mir_config": config}, unknown)
    with pytest.raises(ConfigError, match="unknown task 'chords'"):
        read_checkpoint(unknown)
    torch.save({"state_dict": {}, "mir_config": {"model": {}}}, bare)
    with pytest.raises(ConfigError, match="no 'frontend' section"):
        read_checkpoint(bare)


def test_checkpoint_loads_weights_only(compose, tmp_path):
    from mir.checkpoint import load_module

    cfg = compose(["task=melody", *SMOKE, "test=false"], tmp_path)
    run(cfg)
    path = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, weights_only=True)  # no pickled code needed
    assert ckpt["mir_config"]["model"]["compile"] is False
    module, _ = load_module(path)
    assert set(module.tasks) == {"melody"}
