"""Lightning callbacks of the runner.

`WandbMedia` fills a Weights & Biases run with what scalars cannot show: per-track
mir_eval tables, figures of the first validation/test track (its HCQT and each head's
output against the reference), audio of the separated stems, and the best checkpoint as
a ``model`` artifact. It reads what `mir.module.MirModule` already keeps
(``per_track`` and ``examples``) and does nothing when no `WandbLogger` is active, so it
can stay in the default callbacks.

The figures are drawn per kind of task, keyed on the task's class in `figure_makers`
(tasks stay free of plotting code); a task class that is not listed gets no figure.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from mir.data.track import Track

log = logging.getLogger(__name__)

FigureMaker = Callable[[Any, Track, np.ndarray, int], Any]


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
                maker = figure_maker(task)
                if maker is None or name not in raw:
                    continue
                fig = maker(task, track, np.asarray(raw[name], np.float32), n_frames)
                out[f"{stage}/{name}/figure"] = wandb.Image(to_image(fig), caption=caption)
        if self.audio:
            from mir.tasks.separation import SeparationTask

            for name, task in pl_module.tasks.items():
                if not isinstance(task, SeparationTask) or name not in raw:
                    continue
                stems = task.decode(np.asarray(raw[name], np.float32), track)  # (S, N)
                clips = [wandb.Audio(track.audio[:n_samples], fe.sr, caption="mixture")]
                clips += [
                    wandb.Audio(stems[i, :n_samples], fe.sr, caption=f"estimated {src}")
                    for i, src in enumerate(task.sources)
                ]
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


# -- figures per kind of task -------------------------------------------------------------
def _figure(rows: int = 1, height: float = 3.0) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, height * rows), layout="constrained")
    axes = fig.subplots(rows, 1, squeeze=False)[:, 0]
    return fig, axes


def _extent(fe: Any, n_frames: int, n_rows: int) -> list[float]:
    return [0.0, n_frames / fe.frames_per_second, 0.0, float(n_rows)]


def _freq_to_bin(fe: Any, f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    out = np.full(f.shape, np.nan)
    ok = f > 0
    out[ok] = fe.bins_per_octave * np.log2(f[ok] / fe.fmin) + 0.5
    return out


def hcqt_figure(fe: Any, hcqt: np.ndarray) -> Any:
    """The fundamental (h = 1) channel of an (H, F, T) HCQT."""
    h = list(fe.harmonics).index(1.0) if 1.0 in fe.harmonics else 0
    fig, (ax,) = _figure()
    ax.imshow(hcqt[h], origin="lower", aspect="auto", extent=_extent(fe, hcqt.shape[-1], fe.n_bins))
    ax.set(title=f"HCQT, harmonic {fe.harmonics[h]:g}", xlabel="time (s)", ylabel="bin")
    return fig


def single_f0_figure(task: Any, track: Track, output: np.ndarray, n_frames: int) -> Any:
    """Salience (F, T) with the reference f0 drawn over it."""
    fe = task.fe
    sal = task.salience(output[:, :n_frames])
    fig, (ax,) = _figure()
    ax.imshow(
        sal, origin="lower", aspect="auto", vmin=0, vmax=1, extent=_extent(fe, n_frames, len(sal))
    )
    if task.has_labels(track):
        t, f = track.get(task.voice)
        keep = np.asarray(t) <= n_frames / fe.frames_per_second
        ax.plot(
            np.asarray(t)[keep],
            _freq_to_bin(fe, np.asarray(f)[keep]),
            "r.",
            ms=2,
            label="reference",
        )
        ax.legend(loc="upper right")
    ax.set(title=f"{task.name}: salience vs reference f0", xlabel="time (s)", ylabel="bin")
    return fig


def multif0_figure(task: Any, track: Track, output: np.ndarray, n_frames: int) -> Any:
    """Salience, and the decoded piano roll against the reference."""
    fe = task.fe
    sal = task.salience(output[:, :n_frames])
    fig, (ax, roll) = _figure(2)
    ax.imshow(
        sal, origin="lower", aspect="auto", vmin=0, vmax=1, extent=_extent(fe, n_frames, len(sal))
    )
    ax.set(title=f"{task.name}: salience", ylabel="bin")
    times, freqs = task.decode(output[:, :n_frames], track)
    est = [(t, b) for t, fs in zip(times, freqs, strict=True) for b in _freq_to_bin(fe, fs)]
    if task.has_labels(track):
        rt, rf = track.get("multif0")
        end = n_frames / fe.frames_per_second
        ref = [
            (t, b) for t, fs in zip(rt, rf, strict=True) if t <= end for b in _freq_to_bin(fe, fs)
        ]
        if ref:
            roll.plot(*np.array(ref).T, "s", color="0.7", ms=3, label="reference")
    if est:
        roll.plot(*np.array(est).T, "r.", ms=2, label="estimate")
    roll.set(title="piano roll", xlabel="time (s)", ylabel="bin", ylim=(0, fe.n_bins))
    roll.legend(loc="upper right")
    return fig


def separation_figure(task: Any, track: Track, output: np.ndarray, n_frames: int) -> Any:
    """Each source's soft mask (S, F', T) over the STFT bins."""
    fig, axes = _figure(len(task.sources))
    for ax, src, mask in zip(axes, task.sources, output[..., :n_frames], strict=True):
        ax.imshow(
            mask,
            origin="lower",
            aspect="auto",
            vmin=0,
            vmax=1,
            extent=_extent(task.fe, n_frames, mask.shape[0]),
        )
        ax.set(title=f"{task.name}: {src} mask", ylabel="STFT bin")
    axes[-1].set_xlabel("time (s)")
    return fig


def _activations(
    task: Any, output: np.ndarray, n_frames: int, labels: list[str], refs: list[np.ndarray] | None
) -> Any:
    fe = task.fe
    act = 1.0 / (1.0 + np.exp(-output[:, :n_frames].astype(np.float64)))
    t = fe.frame_times(act.shape[1])
    fig, axes = _figure(len(labels), height=1.6)
    for k, (ax, label) in enumerate(zip(axes, labels, strict=True)):
        ax.plot(t, act[k], lw=0.8)
        if refs is not None:
            r = refs[k][refs[k] <= t[-1]] if len(t) else refs[k][:0]
            ax.vlines(r, 0, 1, colors="r", lw=0.6, label="reference")
        ax.set(ylim=(0, 1), ylabel=label)
    axes[0].set_title(f"{task.name}: activations (red: reference)")
    axes[-1].set_xlabel("time (s)")
    return fig


def drums_figure(task: Any, track: Track, output: np.ndarray, n_frames: int) -> Any:
    refs = task._events(track) if task.has_labels(track) else None
    return _activations(task, output, n_frames, list(task.classes), refs)


def beats_figure(task: Any, track: Track, output: np.ndarray, n_frames: int) -> Any:
    refs = None
    if track.has("beats"):
        down = track.get("downbeats", np.zeros(0))
        refs = [np.asarray(track.get("beats"), float), np.asarray(down, float)]
    return _activations(task, output, n_frames, ["beat", "downbeat"], refs)


def tagging_figure(task: Any, track: Track, output: np.ndarray, n_frames: int) -> Any:
    """Tag scores (track level), the track's true tags in red."""
    scores = np.asarray(task.decode(output, track), dtype=np.float64)
    top = np.argsort(-scores)[:20]
    fig, (ax,) = _figure(height=0.25 * len(top) + 1.0)
    true = set(track.get("tags", ()))
    colors = ["r" if task.tags[i] in true else "C0" for i in top]
    ax.barh(np.arange(len(top))[::-1], scores[top], color=colors)
    ax.set_yticks(np.arange(len(top))[::-1], [task.tags[i] for i in top])
    ax.set(xlim=(0, 1), title=f"{task.name}: top scores (red: true tags)")
    return fig


def figure_makers() -> dict[type, FigureMaker]:
    """Task class -> figure of one track's raw output (first `n_frames` frames)."""
    from mir.tasks.beats import BeatsTask
    from mir.tasks.drums import DrumsTask
    from mir.tasks.salience import MultiF0Task, SingleF0Task
    from mir.tasks.separation import SeparationTask
    from mir.tasks.tagging import TaggingTask

    return {
        SeparationTask: separation_figure,
        SingleF0Task: single_f0_figure,
        MultiF0Task: multif0_figure,
        DrumsTask: drums_figure,
        BeatsTask: beats_figure,
        TaggingTask: tagging_figure,
    }


def figure_maker(task: Any) -> FigureMaker | None:
    table = figure_makers()
    if type(task) in table:
        return table[type(task)]
    return next((m for cls, m in table.items() if isinstance(task, cls)), None)
