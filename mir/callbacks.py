"""Lightning callbacks of the runner.

`WandbMedia` fills a Weights & Biases run with what scalars cannot show: per-track
mir_eval tables, figures of the first validation/test track (its HCQT and each head's
output against the reference), audio of the separated stems, and the best checkpoint as
a ``model`` artifact. It reads what `mir.module.MirModule` already keeps
(``per_track`` and ``examples``) and does nothing when no `WandbLogger` is active, so it
can stay in the default callbacks.

Each task draws its own figure (`Task.figure`, with the helpers below) and names the
audio clips it adds (`Task.media_audio`); this module holds no task-specific code.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from mir.data.track import Track
from mir.grid import Grid

log = logging.getLogger(__name__)


class WandbMedia(pl.Callback):
    """Log score tables, figures, audio and the best checkpoint to the active W&B run.

    Args:
        every_n_val: log figures and audio at every Nth validation (tables every time;
            the test pass always logs).
        max_seconds: length of the excerpt shown in figures and audio, in s.
        audio: log the mixture and the estimated stems of separation tasks.
        figures: log figures (HCQT, salience vs reference, masks, activations...).
        log_checkpoint: at the end of fitting, log the best checkpoint as a ``model``
            artifact with aliases ``best`` and ``latest`` (works offline, unlike
            ``WandbLogger(log_model=True)``).
    """

    def __init__(
        self,
        every_n_val: int = 1,
        max_seconds: float = 10.0,
        audio: bool = True,
        figures: bool = True,
        log_checkpoint: bool = True,
    ) -> None:
        self.every_n_val = max(1, int(every_n_val))
        self.max_seconds = float(max_seconds)
        self.audio = bool(audio)
        self.figures = bool(figures)
        self.log_checkpoint = bool(log_checkpoint)
        self._n_val = 0

    # -- hooks ---------------------------------------------------------------------------
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        media = self._n_val % self.every_n_val == 0
        self._n_val += 1
        self._log_stage(trainer, pl_module, "val", media)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_stage(trainer, pl_module, "test", True)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        run = wandb_run(trainer)
        ckpt = trainer.checkpoint_callback
        if run is None or not self.log_checkpoint or ckpt is None:
            return
        path = getattr(ckpt, "best_model_path", "") or getattr(ckpt, "last_model_path", "")
        if not path or not Path(path).is_file():
            return
        import wandb

        score = getattr(ckpt, "best_model_score", None)
        metadata = {
            "monitor": getattr(ckpt, "monitor", None),
            "score": float(score) if score is not None else None,
            "original_filename": Path(path).name,
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
        }
        artifact = wandb.Artifact(name=f"model-{run.id}", type="model", metadata=metadata)
        artifact.add_file(str(path), name="model.ckpt")
        run.log_artifact(artifact, aliases=["best", "latest"])

    # -- logging -------------------------------------------------------------------------
    def _log_stage(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, media: bool
    ) -> None:
        run = wandb_run(trainer)
        if run is None:
            return
        data: dict[str, Any] = {}
        for task, rows in getattr(pl_module, "per_track", {}).get(stage, {}).items():
            if rows:
                data[f"{stage}/{task}/per_track"] = score_table(rows)
        example = getattr(pl_module, "examples", {}).get(stage)
        if media and example is not None:
            track, raw = example
            try:
                data.update(self._media(pl_module, stage, track, raw))
            except Exception:  # a figure must never stop training
                log.warning("WandbMedia: could not draw the %s example", stage, exc_info=True)
        if data:
            data["trainer/global_step"] = trainer.global_step
            run.log(data)

    def _media(
        self, pl_module: Any, stage: str, track: Track, raw: dict[str, np.ndarray]
    ) -> dict[str, Any]:
        import wandb

        fe = pl_module.model.frontend
        n_frames = max(1, int(round(self.max_seconds * fe.frames_per_second)))
        n_samples = min(len(track.audio), (n_frames - 1) * fe.hop + 1)
        n_frames = fe.n_frames(n_samples)
        out: dict[str, Any] = {}
        caption = f"{track.name}, first {n_samples / fe.sr:.1f} s"
        if self.figures:
            device = next(pl_module.parameters()).device
            x = torch.from_numpy(np.ascontiguousarray(track.audio[:n_samples], np.float32))
            with torch.no_grad():
                hcqt = fe(x[None].to(device))[0].float().cpu().numpy()  # (H, F, T)
            out[f"{stage}/hcqt"] = wandb.Image(to_image(hcqt_figure(fe, hcqt)), caption=caption)
            for name, task in pl_module.tasks.items():
                if name not in raw:
                    continue
                fig = task.figure(track, np.asarray(raw[name], np.float32), n_frames)
                if fig is not None:
                    out[f"{stage}/{name}/figure"] = wandb.Image(to_image(fig), caption=caption)
        if self.audio:
            for name, task in pl_module.tasks.items():
                if name not in raw:
                    continue
                estimated = task.media_audio(track, np.asarray(raw[name], np.float32))
                if not estimated:
                    continue
                clips = [wandb.Audio(track.audio[:n_samples], fe.sr, caption="mixture")]
                clips += [wandb.Audio(x[:n_samples], fe.sr, caption=c) for c, x in estimated]
                out[f"{stage}/{name}/audio"] = clips
        return out


def wandb_run(trainer: pl.Trainer) -> Any:
    """The W&B run of the trainer's `WandbLogger` on the global-zero rank, else None."""
    from pytorch_lightning.loggers import WandbLogger

    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return logger.experiment
    return None


def score_table(rows: list[dict[str, Any]]) -> Any:
    """A `wandb.Table` with one row per track: ``track`` then every mir_eval metric."""
    import wandb

    keys = list(dict.fromkeys(k for r in rows for k in r if k != "track"))
    data = [[str(r.get("track", ""))] + [_number(r.get(k)) for k in keys] for r in rows]
    return wandb.Table(columns=["track", *keys], data=data)


def _number(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def to_image(fig: Any) -> Any:
    """A matplotlib figure as a PIL image (PNG round trip)."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


# -- figure helpers (each task draws its own figure: `Task.figure`) ----------------------
def axes_figure(rows: int = 1, height: float = 3.0) -> tuple[Any, Any]:
    """A figure of `rows` stacked axes, 8 in wide and `height` in per row, and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, height * rows), layout="constrained")
    axes = fig.subplots(rows, 1, squeeze=False)[:, 0]
    return fig, axes


def time_extent(grid: Grid, n_frames: int, n_rows: int) -> list[float]:
    """`imshow` extent of `n_frames` frames (s) by `n_rows` rows."""
    return [0.0, n_frames / grid.frames_per_second, 0.0, float(n_rows)]


def freq_to_bin(grid: Grid, f: np.ndarray) -> np.ndarray:
    """Frequencies (Hz) as image rows of the f0 grid (bin centres at +0.5); NaN for 0 Hz."""
    f = np.asarray(f, dtype=np.float64)
    out = np.full(f.shape, np.nan)
    ok = f > 0
    out[ok] = grid.bins_per_octave * np.log2(f[ok] / grid.fmin) + 0.5
    return out


def hcqt_figure(fe: Any, hcqt: np.ndarray) -> Any:
    """The fundamental (h = 1) channel of an (H, F, T) HCQT."""
    grid = fe.grid
    h = list(grid.harmonics).index(1.0) if 1.0 in grid.harmonics else 0
    fig, (ax,) = axes_figure()
    extent = time_extent(grid, hcqt.shape[-1], grid.n_bins)
    ax.imshow(hcqt[h], origin="lower", aspect="auto", extent=extent)
    ax.set(title=f"HCQT, harmonic {grid.harmonics[h]:g}", xlabel="time (s)", ylabel="bin")
    return fig


def activations_figure(
    name: str,
    grid: Grid,
    output: np.ndarray,
    n_frames: int,
    labels: list[str],
    refs: list[np.ndarray] | None,
) -> Any:
    """One row per channel of (K, T) logits: the sigmoid activation, reference times in red."""
    act = 1.0 / (1.0 + np.exp(-output[:, :n_frames].astype(np.float64)))
    t = grid.frame_times(act.shape[1])
    fig, axes = axes_figure(len(labels), height=1.6)
    for k, (ax, label) in enumerate(zip(axes, labels, strict=True)):
        ax.plot(t, act[k], lw=0.8)
        if refs is not None:
            r = refs[k][refs[k] <= t[-1]] if len(t) else refs[k][:0]
            ax.vlines(r, 0, 1, colors="r", lw=0.6, label="reference")
        ax.set(ylim=(0, 1), ylabel=label)
    axes[0].set_title(f"{name}: activations (red: reference)")
    axes[-1].set_xlabel("time (s)")
    return fig
