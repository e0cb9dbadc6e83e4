"""Train, validate and test any set of tasks: ``python -m mir.train task=<name>``.

Examples:
    python -m mir.train task=separation
    python -m mir.train task=[melody,bass] trainer=smoke
    python -m mir.train experiment=all_tasks trainer.max_epochs=20
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

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
    if ckpt_path in (None, ""):
        return None
    if ckpt_path == "last":
        last = output_dir / "checkpoints" / "last.ckpt"
        return str(last) if last.is_file() else None
    if not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path {ckpt_path}: checkpoint file does not exist")
    return str(ckpt_path)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Build everything from `cfg`, fit, test, print and save the score tables."""
    import pytorch_lightning as pl

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
    if cfg.get("threads"):  # CPU sums are bit-identical only for one thread count
        import torch

        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(int(cfg.seed), workers=True)
    out_dir = Path(cfg.output_dir)

    module = instantiate(cfg.model)
    module.run_config = OmegaConf.to_container(cfg, resolve=True)
    datamodule = instantiate(cfg.data)
    datamodule.bind(module.tasks)

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
        trainer.fit(module, datamodule=datamodule, ckpt_path=resolve_ckpt(cfg.ckpt_path, out_dir))
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


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
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
