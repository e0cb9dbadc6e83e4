"""A tiny trained checkpoint shared by the inference-tool tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

TASKS = "[separation,melody,multif0,drums,tagging]"
_CACHE: dict[str, Path] = {}


@pytest.fixture(scope="session")
def trained_ckpt(compose, tmp_path_factory) -> Path:
    """`last.ckpt` of a 2-batch smoke run of five tasks on the tiny front end.

    Cached in this module, so every test file importing the fixture shares one run.
    """
    if "ckpt" not in _CACHE:
        from mir.train import run

        out = tmp_path_factory.mktemp("trained")
        cfg = compose(
            [
                f"task={TASKS}",
                "trainer=smoke",
                "trainer.limit_train_batches=2",
                "trainer.limit_val_batches=1",
                "trainer.enable_progress_bar=false",
                "test=false",
            ],
            out,
        )
        run(cfg)
        ckpt = out / "checkpoints" / "last.ckpt"
        assert ckpt.is_file()
        _CACHE["ckpt"] = ckpt
    return _CACHE["ckpt"]


@pytest.fixture(scope="session")
def trained_module(trained_ckpt):
    """The checkpoint's `MirModule` in eval mode, and its run config."""
    from mir.checkpoint import load_module

    if "module" not in _CACHE:
        _CACHE["module"] = load_module(trained_ckpt)  # type: ignore[assignment]
    return _CACHE["module"]


def embedded_overrides(root: Path) -> list[str]:
    """The `data.*` overrides that name the same small embedded set as the training run."""
    from tests.conftest import SMALL_EMBEDDED

    return [f"data.datasets.embedded.root={root}", *SMALL_EMBEDDED]
