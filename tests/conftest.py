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


def _smoke_overrides() -> list[str]:
    """``conf/debug/smoke.yaml`` (the one definition of the smoke scale) as command-line
    overrides: its group choices (``frontend=tiny``) and its values, flattened
    (``trainer.limit_train_batches=3``)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(CONF / "debug" / "smoke.yaml")
    out = []
    for entry in cfg.get("defaults", []):
        ((key, value),) = entry.items()
        value = f"[{','.join(value)}]" if OmegaConf.is_list(value) else value
        out.append(f"{key.removeprefix('override /')}={value}")

    def flatten(node, prefix: str) -> None:
        for k, v in node.items():
            if OmegaConf.is_dict(v):
                flatten(v, f"{prefix}{k}.")
            else:
                out.append(f"{prefix}{k}={str(v).lower() if isinstance(v, bool) else v}")

    flatten({k: v for k, v in cfg.items() if k != "defaults"}, "")
    return out


SMOKE_SCALE = _smoke_overrides()
# The smoke scale split by what it sets, for tests that take only a part of it: the small
# front end, model, logger and excerpts of every composed config (SMALL), the embedded set's
# size when the data is embedded (SMALL_EMBEDDED), and the short training loop (SMOKE).
SMALL = [
    o
    for o in SMOKE_SCALE
    if o.split("=")[0] in ("frontend", "model", "logger", "data.crop_seconds", "data.batch_size")
]
SMALL_EMBEDDED = [o for o in SMOKE_SCALE if o.startswith("data.datasets.embedded.")]
SMOKE = [o for o in SMOKE_SCALE if o.split("=")[0].split(".")[0] == "trainer"]
assert set(SMOKE_SCALE) == set(SMALL + SMALL_EMBEDDED + SMOKE) | {"data=embedded"}


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
