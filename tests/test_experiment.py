"""mir.experiment: scales, overrides, composing, running, and the paper-vs-ours table."""

from __future__ import annotations

import json
import math

import pytest

import mir.experiment as ex
from mir.errors import ConfigError
from tests.conftest import DATASETS


@pytest.mark.parametrize("data", DATASETS)
def test_dataset_env_is_the_variable_the_data_config_reads(data):
    env = ex.dataset_env(data)
    if data == "embedded":
        assert env is None
    else:
        assert env
        assert env.endswith("_PATH")
        # in its own file, or in the data config it extends
        texts = [p.read_text() for p in (ex.CONF / "data").glob("*.yaml")]
        assert any(f"${{oc.env:{env}," in t for t in texts)
        own = (ex.CONF / "data" / f"{data}.yaml").read_text()
        assert env in own or "defaults:\n  - _datamodule" not in own


def test_unknown_dataset_and_scale_are_config_errors():
    with pytest.raises(ConfigError, match="no_such_set"):
        ex.dataset_env("no_such_set")
    with pytest.raises(ConfigError, match="scale"):
        ex.resolve_scale("huge", "medleydb")
    with pytest.raises(ConfigError, match="no_such_experiment"):
        ex.overrides("no_such_experiment", data="medleydb", scale="smoke")


def test_auto_scale_follows_the_dataset_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("MEDLEYDB_PATH", raising=False)
    assert ex.resolve_scale("auto", "medleydb") == "smoke"
    with pytest.raises(ConfigError, match=r"\$MEDLEYDB_PATH"):
        ex.resolve_scale("full", "medleydb")
    monkeypatch.setenv("MEDLEYDB_PATH", str(tmp_path))
    assert ex.resolve_scale("auto", "medleydb") == "full"
    assert ex.resolve_scale("smoke", "medleydb") == "smoke"
    assert ex.overrides("deep_salience", "medleydb", "auto", smoke=["model=tiny"]) == [
        "experiment=deep_salience",
        "data=medleydb",
    ]
    assert ex.resolve_scale("auto", "embedded") == "smoke"  # no dataset path to find


def test_smoke_overrides_compose_to_the_experiment_on_small_embedded_data(tmp_path):
    over = ex.overrides(
        "deep_salience", "medleydb", "smoke", extra=["seed=3"], smoke=["model.trunk.channels=[9]"]
    )
    assert over[0] == "experiment=deep_salience"
    assert over[-2:] == [
        "model.trunk.channels=[9]",
        "seed=3",
    ]
    over = over[:-2] + over[-1:]
    cfg = ex.compose(over, tmp_path)
    assert cfg.output_dir == str(tmp_path.resolve())
    assert list(cfg.task) == ["multif0"]
    assert list(cfg.model.trunk.channels) == [128, 64, 64, 64]  # the experiment's model
    assert cfg.frontend.bins_per_octave == 12  # the smoke front end
    assert list(cfg.data.datasets) == ["embedded"]
    assert cfg.data.datasets.embedded.n_pieces == 6
    assert cfg.trainer.limit_train_batches == 3
    assert list(cfg.logger) == ["csv"]


def test_run_trains_tests_and_writes_scores(tmp_path, embedded_root, monkeypatch):
    monkeypatch.chdir(tmp_path)
    over = ex.overrides(
        "melody_bass",
        "medleydb",
        "smoke",
        extra=[f"data.datasets.embedded.root={embedded_root}", "model.trunk.channels=[4,4]"],
    )
    result = ex.run(over)
    out = tmp_path / "outputs"
    (run_dir,) = out.glob("*/*-melody_bass")  # default: outputs/<date>/<time>-<experiment>
    assert result["output_dir"] == str(run_dir.resolve())
    assert set(result["test"]) == {"melody", "bass"}
    saved = json.loads((run_dir / "scores.json").read_text())
    assert saved["test"]["melody"]["Overall Accuracy"] == pytest.approx(
        result["test"]["melody"]["Overall Accuracy"]
    )

    table = ex.compare(
        {"melody/Overall Accuracy": 0.7, "bass/Raw Pitch Accuracy": "see paper, Table 3"},
        result,
        scale="smoke",
        title="t",
    )
    ours = result["test"]["melody"]["Overall Accuracy"]
    base = result["test_baseline"]["melody"]["Overall Accuracy"]
    assert f"| melody/Overall Accuracy | 0.7 | {ours:.3f} | {base:.3f} |" in table
    assert "| bass/Raw Pitch Accuracy | see paper, Table 3 |" in table
    assert "NOT comparable" in table


def test_compare_marks_missing_and_undefined_values():
    result = {"test": {"tagging": {"ROC-AUC": math.nan}}, "test_baseline": None}
    table = ex.compare({"tagging/ROC-AUC": 0.9129, "tagging/PR-AUC": "n/a"}, result, "full")
    lines = table.splitlines()
    assert lines[0] == "| metric | paper | ours (full) | trivial baseline |"
    assert "| tagging/ROC-AUC | 0.9129 | - | - |" in lines
    assert "| tagging/PR-AUC | n/a | - | - |" in lines
    assert "NOT comparable" not in table
    with pytest.raises(ConfigError, match="scale"):
        ex.compare({}, result, "auto")


def test_lookup_splits_the_task_at_the_first_slash():
    scores = {"separation": {"vocals/SDR": 2.5}}
    assert ex.lookup(scores, "separation/vocals/SDR") == 2.5
    assert ex.lookup(scores, "separation/accompaniment/SDR") is None
    assert ex.lookup(None, "separation/vocals/SDR") is None
