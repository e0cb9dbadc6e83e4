"""`benchmarks/bench_train.py`: the stage-by-stage training benchmark, run on the CPU with every
precision its GPU pass checks (CPU autocast), so that code is exercised without a GPU."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from tests.conftest import SMALL, SMALL_EMBEDDED

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_precision_times_each_stage_and_checks_losses_and_hcqt(embedded_root, tmp_path):
    bench = _bench()
    out = tmp_path / "train.json"
    overrides = [*SMALL, *SMALL_EMBEDDED, f"data.datasets.embedded.root={embedded_root}"]
    args = ["--experiments", "multitask_f0", "--steps", "2", "--warmup", "1", "--threads", "1"]
    args += ["--precisions", "32,bf16-mixed,16-mixed", "--out", str(out), *overrides]
    result = bench.main(args)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    entry = result["experiments"]["multitask_f0"]
    assert "error" not in entry
    assert "skipped" not in entry
    assert list(entry["runs"]) == ["32", "bf16-mixed", "16-mixed"]
    for precision, r in entry["runs"].items():
        assert (r["precision"], r["steps"], r["warmup"]) == (precision, 2, 1)
        assert len(r["losses"]) == 3
        assert r["finite_losses"]
        assert set(r["stage_mean_s"]) == set(bench.STAGES)
        assert all(v >= 0 for v in r["stage_mean_s"].values())
        assert sum(r["stage_share"].values()) == pytest.approx(1.0, abs=0.2)  # stages ~ a step
        assert r["steps_per_s"] > 0
        assert r["excerpts_per_s"] == pytest.approx(r["steps_per_s"] * r["batch_size"])
        assert r["peak_rss_mib"] > 0
        if precision == "32":
            assert "hcqt_rel_error_vs_fp32" not in r
        else:  # the front end switches autocast off: the HCQT is float32 under every precision
            assert math.isfinite(r["hcqt_rel_error_vs_fp32"])
            assert r["hcqt_agrees"]
    assert result["config"]["precisions"] == ["32", "bf16-mixed", "16-mixed"]


def test_bad_arguments_are_one_line(capsys):
    import torch

    bench = _bench()
    with pytest.raises(SystemExit):
        bench.main(["--precisions", "32,fp8"])
    assert "--precisions: unknown fp8" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA device is visible"):
            bench.main(["--trainer", "gpu"])
    with pytest.raises(SystemExit, match="unknown experiment"):
        bench.main(["--experiments", "no_such_experiment"])


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux /proc only")
def test_peak_rss_is_reset_per_experiment():
    """Each experiment's peak RSS is its own: a 400 MB buffer freed before the reset does not
    count in the peak read after it."""
    import numpy as np

    bench = _bench()
    block = np.ones(50_000_000)  # 400 MB, touched
    high = bench.peak_rss_mib()
    del block
    assert bench.reset_peak_rss()
    assert bench.peak_rss_mib() < high - 300
