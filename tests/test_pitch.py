"""Pitch family: the f0 subset sweep's contract, and salience decoding."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from mir.grid import Grid
from mir.tasks.salience import MultiF0Task, SingleF0Task
from tests.conftest import CONF

F0_TASKS = ("multif0", "melody", "bass", "vocal")


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The jobs Hydra's basic sweeper launches for ``python -m mir.train -m <overrides>``:
    `hydra.sweeper.params` of the composed config, then the command line, split as
    `BasicSweeper.sweep` does."""
    parser = OverridesParser.create()
    plain = [o.input_line for o in parser.parse_overrides(overrides) if not o.is_sweep_override()]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=plain, return_hydra_config=True)
    params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.params or {}).items()]
    parsed = parser.parse_overrides([*params, *overrides])
    (batch,) = BasicSweeper.split_arguments(parsed, None)
    return batch


def test_f0_subsets_sweep_is_every_nonempty_subset():
    jobs = sweep_jobs(["experiment=f0_subsets"])
    assert len(jobs) == 15
    subsets = []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for job in jobs:
            task_override = [o for o in job if o.startswith("task=")]
            assert len(task_override) == 1, job
            cfg = compose("config", overrides=[*job])
            subsets.append(tuple(cfg.task))
            # every job keeps the multitask_f0 trunk
            assert list(cfg.model.trunk.channels) == [32, 32, 32]
    expected = {c for k in range(1, 5) for c in combinations(F0_TASKS, k)}
    assert set(subsets) == expected
    assert len(set(subsets)) == 15


def test_f0_subsets_without_multirun_trains_all_four_heads():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=f0_subsets"])
    assert tuple(cfg.task) == F0_TASKS


def test_a_command_line_task_sweep_replaces_the_configured_one():
    """How the sweep is run in chunks: a `task=` sweep on the command line wins."""
    jobs = sweep_jobs(["experiment=f0_subsets", "task=[melody],[bass,vocal]"])
    assert [sorted(j) for j in jobs] == [
        ["experiment=f0_subsets", "task=[melody]"],
        ["experiment=f0_subsets", "task=[bass,vocal]"],
    ]


class _FrontEnd:
    """What salience decoding reads from the front end: its grid (72 semitone bins)."""

    grid = Grid(22050, 256, 12, 72, 32.7, (1.0,), 1024)


def _reference_multif0(logits: np.ndarray, threshold: float) -> list[np.ndarray]:
    """The published decoding, on the sigmoid salience."""
    sal = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    peaks = np.zeros_like(sal, dtype=bool)
    peaks[1:-1] = (sal[1:-1] >= sal[:-2]) & (sal[1:-1] > sal[2:])
    peaks &= sal >= threshold
    return [_FrontEnd.grid.freqs[peaks[:, t]] for t in range(sal.shape[1])]


@pytest.mark.parametrize("threshold", [0.05, 0.3, 0.7])
def test_salience_decoding_on_logits_matches_the_sigmoid_salience(threshold):
    rng = np.random.default_rng(0)
    logits = (3 * rng.standard_normal((72, 500))).astype(np.float32)
    logits[:, 7] = -20.0  # a silent frame: no f0
    multi = MultiF0Task(threshold=threshold)
    multi.bind(_FrontEnd())
    times, freqs = multi.decode(logits, None)
    ref = _reference_multif0(logits, threshold)
    assert len(freqs) == len(ref) == len(times) == 500
    for est, want in zip(freqs, ref, strict=True):
        np.testing.assert_array_equal(est, want)
    assert len(freqs[7]) == 0

    single = SingleF0Task("melody", threshold=threshold)
    single.bind(_FrontEnd())
    _, f0 = single.decode(logits, None)
    sal = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    want = np.where(sal.max(0) >= threshold, _FrontEnd.grid.freqs[sal.argmax(0)], 0.0)
    np.testing.assert_array_equal(f0, want)
    assert f0[7] == 0.0
