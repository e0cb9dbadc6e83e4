"""Shared test fixtures.

Real-audio fixtures live outside the repository (``../shared/fixtures`` beside the clone,
or the folder named by ``MIR_FIXTURES``); tests that need them skip with a reason when
they are absent, as in a user's clone.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _fixtures_root() -> Path | None:
    env = os.environ.get("MIR_FIXTURES")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "fixtures")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Root of the real-audio fixtures; skips the test when absent."""
    root = _fixtures_root()
    if root is None:
        pytest.skip("real-audio fixtures not found (set MIR_FIXTURES or add ../shared/fixtures)")
    return root


CONF = REPO / "conf"
# The registry: every task YAML. Contract, smoke and learning tests iterate over it and ask
# each task what to expect (`Task.expectations`), so a new YAML is tested everywhere.
TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))
# datasets with a root; `shards` streams what `mir.data.shard` wrote (tests/test_shards.py)
DATASETS = sorted(
    p.stem
    for p in (CONF / "data").glob("*.yaml")
    if not p.stem.startswith("_") and p.stem != "shards"
)

# Small settings that keep every test on 2 CPU cores fast.
SMALL = [
    "frontend=tiny",
    "model=tiny",
    "logger=[csv]",
    "data.crop_seconds=2.0",
    "data.batch_size=4",
]
SMALL_EMBEDDED = [
    "data.datasets.embedded.n_pieces=6",
    "data.datasets.embedded.max_duration=8.0",
]


@pytest.fixture(scope="session")
def embedded_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide render cache for the embedded dataset (rendered once)."""
    return tmp_path_factory.mktemp("embedded")


@pytest.fixture(scope="session")
def compose(embedded_root: Path):
    """Compose the project config with overrides, on the small test settings."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    def _compose(overrides: list[str], output_dir: Path, small: bool = True):
        extra = list(SMALL) if small else []
        if not any(o.startswith("data=") and o != "data=embedded" for o in overrides):
            extra += [*SMALL_EMBEDDED, f"data.datasets.embedded.root={embedded_root}"]
        over = [*extra, *overrides]
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = hydra_compose("config", overrides=over)
        with open_dict(cfg):
            cfg.output_dir = str(output_dir)
        OmegaConf.resolve(cfg)
        return cfg

    return _compose
