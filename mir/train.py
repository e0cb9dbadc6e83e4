"""Train, validate and test any set of tasks: ``python -m mir.train task=<name>``.

Examples:
    python -m mir.train task=separation
    python -m mir.train task=[melody,bass] trainer=smoke
    python -m mir.train experiment=all_tasks trainer.max_epochs=20
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections.abc import Iterator
from inspect import signature
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from mir.configs import CONF
from mir.errors import ConfigError, MirError

log = logging.getLogger("mir.train")


def instantiate(node: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, re-raising our own errors unwrapped (one clear line)."""
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, MirError):
                raise cause from None
            cause = cause.__cause__ or cause.__context__
        raise


def resolve_ckpt(ckpt_path: str | None, output_dir: Path) -> str | None:
    """The checkpoint to resume from, checked as data (`mir.checkpoint.read_checkpoint`).

    ``last`` is the run dir's ``checkpoints/last.ckpt`` and must exist; ``last_or_new`` is
    the same, or a fresh start when there is none.

    Raises:
        ConfigError: the file is missing, or is not a data-only mir checkpoint.
    """
    from mir.checkpoint import read_checkpoint

    if ckpt_path in (None, ""):
        return None
    if ckpt_path in ("last", "last_or_new"):
        last = output_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            if ckpt_path == "last_or_new":
                return None
            raise ConfigError(
                f"ckpt_path=last: {last} does not exist; use ckpt_path=last_or_new to start "
                "from scratch when there is nothing to resume"
            )
        ckpt_path = str(last)
    if not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path {ckpt_path}: checkpoint file does not exist")
    read_checkpoint(ckpt_path)  # refuses pickled objects and configs outside the allowlist
    return str(ckpt_path)


def _integer(minimum: int, optional: bool = False) -> tuple[Any, str]:
    def ok(v: Any) -> bool:
        return (v is None and optional) or (
            isinstance(v, int) and not isinstance(v, bool) and v >= minimum
        )

    return ok, f"an integer >= {minimum}" + (" or null" if optional else "")


def _positive() -> tuple[Any, str]:
    def ok(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0

    return ok, "a number > 0"


def _limit() -> tuple[Any, str]:
    def ok(v: Any) -> bool:
        if v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
            return True
        return isinstance(v, float) and 0.0 <= v <= 1.0

    return ok, "null, a number of batches (integer >= 0) or a fraction in [0, 1]"


# Settings whose wrong type or range would otherwise fail deep inside Lightning or a
# loader (`trainer.max_epochs=abc` ended in a bare AssertionError), checked up front.
SETTINGS = {
    "seed": _integer(0),
    "trainer.max_epochs": _integer(-1, optional=True),
    "trainer.max_steps": _integer(-1),
    "trainer.limit_train_batches": _limit(),
    "trainer.limit_val_batches": _limit(),
    "trainer.limit_test_batches": _limit(),
    "trainer.check_val_every_n_epoch": _integer(1, optional=True),
    "trainer.log_every_n_steps": _integer(1),
    "data.batch_size": _integer(1),
    "data.num_workers": _integer(0, optional=True),  # null: chosen for the device
    "data.crop_seconds": _positive(),
    "model.optimizer.lr": _positive(),
}


def check_settings(cfg: DictConfig) -> None:
    """Check the types and ranges of `SETTINGS` that `cfg` has.

    Raises:
        ConfigError: ``<key>=<value> must be <what>``.
    """
    absent = object()
    for key, (ok, what) in SETTINGS.items():
        value = OmegaConf.select(cfg, key, default=absent)
        if value is not absent and not ok(value):
            raise ConfigError(f"{key}={value!r} must be {what}")


LOCK = "train.lock"


@contextlib.contextmanager
def run_dir_lock(out_dir: Path) -> Iterator[None]:
    """Hold an advisory lock (``fcntl.flock``) on ``<run dir>/train.lock`` while training,
    so a second training in the same run dir refuses at once instead of overwriting the
    checkpoints and scores. The lock holder's PID is written in the file; the lock goes
    with the process (a killed run leaves no stale lock). DDP ranks other than 0 share
    rank 0's lock.

    Raises:
        ConfigError: another process holds the lock (its PID is named).
    """
    import fcntl

    if any(int(os.environ.get(k, "0") or 0) for k in ("LOCAL_RANK", "RANK", "NODE_RANK")):
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise ConfigError(
                f"run dir {out_dir} is in use by another training (PID {holder}, lock {path}); "
                "wait for it to finish or choose another hydra.run.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def run(cfg: DictConfig) -> dict[str, Any]:
    """Build everything from `cfg`, fit, test, print and save the score tables."""
    check_settings(cfg)
    out_dir = Path(cfg.output_dir)
    # checked before anything is written (the lock file included)
    resume = resolve_ckpt(cfg.get("ckpt_path"), out_dir) if cfg.get("train", True) else None
    with run_dir_lock(out_dir):
        return _run(cfg, resume)


def _run(cfg: DictConfig, resume: str | None) -> dict[str, Any]:
    import pytorch_lightning as pl

    from mir.audio import set_strict
    from mir.report import (
        baseline_scores,
        coverage,
        median_scores,
        run_identity,
        score_table,
        write_json,
    )

    if not cfg.get("task"):
        raise ConfigError("no task selected: use task=<name> or task=[a,b]")
    set_strict(bool(cfg.get("strict", False)))
    if cfg.get("threads"):  # CPU sums are bit-identical only for one thread count
        import torch

        torch.set_num_threads(int(cfg.threads))
    out_dir = Path(cfg.output_dir)
    pl.seed_everything(int(cfg.seed), workers=True)

    module = instantiate(cfg.model)
    module.run_config = OmegaConf.to_container(cfg, resolve=True)
    datamodule = instantiate(cfg.data)
    datamodule.bind(module.tasks, module.grid)

    callbacks = []
    for name, cb_cfg in (cfg.get("callbacks") or {}).items():
        if cb_cfg is None:  # callbacks.<name>=null switches one off
            continue
        if name == "model_checkpoint" and cb_cfg.get("monitor") is None:
            callbacks.append(instantiate(cb_cfg, monitor=module.monitor))
        else:
            callbacks.append(instantiate(cb_cfg))
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values() if lg is not None]
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    result: dict[str, Any] = {"monitor": module.monitor, **run_identity(cfg)}
    if cfg.train:
        # Lightning >= 2.5 takes weights_only; the file was checked as data-only above anyway
        takes = "weights_only" in signature(trainer.fit).parameters
        data_only = {"weights_only": True} if takes else {}
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, **data_only)
        result["val"] = module.results.get("val", {})
    if cfg.test:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        ckpt = best if cfg.train and best else None  # the first checkpoint callback's best
        trainer.test(module, datamodule=datamodule, ckpt_path=ckpt)
        result["test"] = module.results.get("test", {})
        result["test_per_track"] = module.per_track.get("test", {})
        result["test_median"] = median_scores(result["test_per_track"])
        base = None
        if not trainer.is_global_zero:  # under DDP every rank holds the same scores
            return result
        if cfg.baselines:
            base = baseline_scores(module.tasks, datamodule.tracks("test"))
            result["test_baseline"] = base
        test_tracks = datamodule.tracks("test")
        result["test_coverage"] = coverage(module.tasks, test_tracks)
        table = score_table(
            result["test"],
            base,
            title=f"Full-track test scores ({len(test_tracks)} tracks)",
            coverage=result["test_coverage"],
            n_tracks=len(test_tracks),
        )
        print("\n" + table + "\n", flush=True)
    if not trainer.is_global_zero:
        return result
    write_json(out_dir / "scores.json", result)
    log.info("scores written to %s", out_dir / "scores.json")
    finish_wandb(loggers)
    return result


def finish_wandb(loggers: list[Any]) -> None:
    """Close the W&B run this run opened, so its files are complete and the next run of a
    multirun sweep gets a run of its own (a WandbLogger reuses an open run)."""
    from pytorch_lightning.loggers import WandbLogger

    for lg in loggers:
        if isinstance(lg, WandbLogger) and lg._experiment is not None:
            lg._experiment.finish()


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="config")
def main(cfg: DictConfig) -> Any:
    try:
        result = run(cfg)
    except MirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    monitor = result.get("monitor", "")
    stage, task, key = (monitor.split("/", 2) + ["", "", ""])[:3]
    # The value Hydra sweepers (Optuna) optimise: the monitored metric on validation.
    return result.get("val", {}).get(task, {}).get(key)


if __name__ == "__main__":
    main()
