"""The paper-reproduction notebooks: committed without outputs, naming experiment files that
exist, and each executing end to end at smoke scale with its paper-vs-ours table printed."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import nbformat
import pytest

from tests.conftest import CONF, REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]
EXPERIMENT = re.compile(r"""ex\.overrides\(\s*["'](\w+)["']""")
METRIC_KEY = re.compile(r"""["']([a-z0-9_]+/[^"']+)["']\s*:""")


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code(nb: nbformat.NotebookNode) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def test_one_notebook_per_seed_paper():
    assert len(NOTEBOOKS) >= 5, IDS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_without_outputs(path):
    nb = _read(path)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a cell has outputs (strip them)"
            assert cell.execution_count is None, f"{path.name}: execution counts left"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_names_existing_experiments_and_a_scale_parameter(path):
    nb = _read(path)
    names = EXPERIMENT.findall(_code(nb))
    assert names, f"{path.name}: runs no experiment through mir.experiment.overrides"
    for name in names:
        assert (CONF / "experiment" / f"{name}.yaml").is_file(), f"{path.name}: {name}"
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", []), "first code cell is the parameters"
    assert re.search(r"^SCALE = ", first.source, re.MULTILINE)


@pytest.fixture(scope="session")
def mir_cache(tmp_path_factory, embedded_root) -> Path:
    """A MIR_CACHE whose embedded renders are the other tests' (rendered once a session)."""
    cache = tmp_path_factory.mktemp("mir-cache")
    (cache / "embedded").symlink_to(embedded_root, target_is_directory=True)
    return cache


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_executes_at_smoke_scale(path, tmp_path, mir_cache, monkeypatch):
    from nbclient import NotebookClient

    nb = _read(path)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source = 'SCALE = "smoke"'
    monkeypatch.setenv("MIR_CACHE", str(mir_cache))  # the kernel inherits the environment
    monkeypatch.setenv("WANDB_MODE", "disabled")
    # "python3" runs this interpreter: jupyter_client swaps the spec's "python" for it
    client = NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()

    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    text = "".join(o.get("text", "") for o in last.outputs if o.output_type == "stream")
    assert "| metric | paper | ours (smoke) |" in text, text
    assert "NOT comparable" in text
    for key in METRIC_KEY.findall(last.source):
        assert f"| {key} |" in text, key
    runs = list(tmp_path.glob("outputs/*/*/scores.json"))
    assert len(runs) == len(EXPERIMENT.findall(_code(nb))), runs
    for scores in runs:
        test = json.loads(scores.read_text())["test"]
        assert any(math.isfinite(v) for m in test.values() for v in m.values()), test
