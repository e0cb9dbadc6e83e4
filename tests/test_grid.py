"""The one grid: a frozen value the front end defines, read by tasks and data; the data
package does not depend on the tasks."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mir.frontend import HarmonicCQT
from mir.grid import Grid

REPO = Path(__file__).resolve().parents[1]


def test_grid_is_the_front_ends():
    fe = HarmonicCQT(sr=16000, hop=160, fmin=40.0, bins_per_octave=24, n_octaves=5, n_fft=512)
    grid = fe.grid
    assert grid == Grid(16000, 160, 24, 120, 40.0, (0.5, 1.0, 2.0, 3.0, 4.0, 5.0), 512)
    np.testing.assert_array_equal(grid.freqs, fe.freqs)
    np.testing.assert_array_equal(grid.frame_times(37), fe.frame_times(37))
    for n in (1, 159, 160, 161, 16000):
        assert grid.n_frames(n) == fe.n_frames(n)
    assert grid.frames_per_second == fe.frames_per_second == 100.0
    assert grid.frame_to_sample(7) == 7 * 160
    np.testing.assert_array_equal(grid.frame_of(np.array([0.004, 0.006, 1.0])), [0, 1, 100])
    np.testing.assert_allclose(grid.bin_of(grid.freqs), np.arange(120), atol=1e-9)
    with pytest.raises(ValueError, match="need at least 1"):
        grid.n_frames(0)


def test_grid_is_frozen_and_hashable():
    grid = Grid(22050, 256, 12, 72, 32.7, (1.0,), 1024)
    with pytest.raises(dataclasses.FrozenInstanceError):
        grid.hop = 512  # type: ignore[misc]
    assert len({grid, Grid(22050, 256, 12, 72, 32.7, (1.0,), 1024)}) == 1


def test_tasks_and_data_share_the_grid():
    from mir.data.datamodule import MirDataModule
    from mir.tasks.salience import SingleF0Task

    a, b = SingleF0Task("melody"), SingleF0Task("bass")
    a.bind(HarmonicCQT(bins_per_octave=12))
    b.bind(HarmonicCQT(bins_per_octave=12, hop=512))
    dm = MirDataModule(datasets={"x": object()})  # type: ignore[dict-item]
    dm.bind({"melody": a})
    assert dm.grid == a.grid
    with pytest.raises(ValueError, match="different grids"):
        dm.bind({"melody": a, "bass": b})
    with pytest.raises(ValueError, match="different grids"):
        dm.bind({"melody": a}, b.grid)


def _imported_modules(path: Path) -> set[str]:
    """Every module an `import` or `from ... import` in `path` names, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_data_does_not_import_tasks():
    """mir/data/ is below the tasks: none of its files imports mir.tasks (even lazily), and
    importing every data module loads no task module."""
    files = sorted((REPO / "mir" / "data").rglob("*.py"))
    assert files
    offenders = {
        str(f.relative_to(REPO)): found
        for f in files
        if (found := sorted(m for m in _imported_modules(f) if m.startswith("mir.tasks")))
    }
    assert not offenders
    modules = [
        ".".join(f.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__") for f in files
    ]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.startswith('mir.tasks')))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]", r.stdout
