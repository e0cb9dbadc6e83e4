"""Pitch salience tasks: multi-f0, and single-voice f0 (melody, bass, vocal).

After Bittner et al., "Deep Salience Representations for F0 Estimation in Polyphonic
Music" (ISMIR 2017), and "Multitask Learning for Fundamental Frequency Estimation in
Music" (2018).

Conventions:
    * The output is a salience map (F, T) on the front end's f0 grid (`frontend.freqs`,
      `frontend.frame_times`); targets are the annotated f0s blurred along frequency with
      a Gaussian of `sigma_cents`, peak 1.
    * Unvoiced = 0 Hz, as `mir_eval.melody` reads it; multi-f0 frames hold a list of Hz.
    * Decoding: single voice = argmax per frame, voiced where the peak >= `threshold`;
      multi-f0 = local maxima along frequency >= `threshold` (0.3 in the paper). With
      `tune_threshold`, each validation picks the threshold that maximises the monitored
      metric on the validation tracks (as the paper tunes it on validation); it is kept in
      the head's ``threshold`` buffer, so checkpoints and exports carry it.
    * Evaluation: `mir_eval.melody.evaluate` (OA, RPA, RCA, VR, VFA; 50-cent tolerance)
      and `mir_eval.multipitch.evaluate` (Accuracy, Precision, Recall...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mir_eval
import numpy as np
import torch.nn.functional as F
from torch import Tensor

from mir.data.track import Track
from mir.grid import Window
from mir.models.features import Features
from mir.models.heads import SalienceHead
from mir.models.model import Head
from mir.tasks.base import (
    Expectations,
    OutputContext,
    Task,
    frame_values,
    masked_mean,
    mean_scores,
    nearest_index,
)

THRESHOLD_GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7)

if TYPE_CHECKING:
    from mir.streams import Stream


def _on_grid(threshold: float, grid: Any) -> float | None:
    """The value of `grid` that `threshold` (read back from a float32 buffer) equals."""
    return next((g for g in grid if np.float32(g) == np.float32(threshold)), None)


def logit(p: float) -> float:
    """The logit whose sigmoid is `p` (thresholds on salience, compared on logits)."""
    p = min(max(float(p), 1e-7), 1.0 - 1e-7)
    return float(np.log(p / (1.0 - p)))


class SalienceTask(Task):
    """Common part of the salience tasks: head, Gaussian targets, BCE loss.

    Args:
        name: head and metric prefix.
        weight: loss weight.
        threshold: decoding threshold on the sigmoid salience (initial value when tuned).
        tune_threshold: tune the threshold on validation outputs.
        sigma_cents: standard deviation of the target's Gaussian blur along frequency.
        head_channels: channels of the head's 3x3 convolution.
        wide_channels: channels of the head's wide convolution (8 in the paper).
        head_octaves: frequency extent of the head's wide kernel, in octaves
            (70 bins at 60 bins/octave in the paper).
        time_kernel: time extent of the wide kernel in frames (3 in the paper).
        layout, init, freeze: passed to `SalienceHead` (the published layer order;
            initialising the head from a pretrained model, frozen or not).
    """

    def __init__(
        self,
        name: str,
        weight: float = 1.0,
        threshold: float = 0.3,
        tune_threshold: bool = True,
        sigma_cents: float = 20.0,
        head_channels: int = 32,
        wide_channels: int = 8,
        head_octaves: float = 70 / 60,
        time_kernel: int = 3,
        layout: str = "mir",
        init: str | None = None,
        freeze: bool = False,
    ) -> None:
        super().__init__(name, weight)
        self.head_options = {"layout": layout, "init": init, "freeze": bool(freeze)}
        self.initial_threshold = float(threshold)
        self.tunes = bool(tune_threshold)
        self.head: SalienceHead | None = None
        self.sigma_cents = float(sigma_cents)
        self.head_channels = int(head_channels)
        self.wide_channels = int(wide_channels)
        self.head_octaves = float(head_octaves)
        self.time_kernel = int(time_kernel)

    @property
    def threshold(self) -> float:
        """The decoding threshold: the head's (tuned) buffer once the head exists."""
        if self.head is None:
            return self.initial_threshold
        return float(self._threshold_buffer())

    def _threshold_buffer(self) -> Tensor:
        assert self.head is not None
        buf = self.head.threshold
        assert isinstance(buf, Tensor)
        return buf

    def tuning_stats(self, track: Track, output: np.ndarray) -> dict[Any, dict[str, float]]:
        """The track's scores at each threshold of `THRESHOLD_GRID` and at the current one
        (its key is the grid value it equals, if any): a few numbers per threshold."""
        if not self.tunes or self.head is None or not self.has_labels(track):
            return {}
        current = self.threshold
        grid = list(THRESHOLD_GRID)
        key = _on_grid(current, grid)
        stats: dict[Any, dict[str, float]] = {}
        try:
            for th in grid if key is not None else [*grid, current]:
                self._threshold_buffer().fill_(th)
                stats[th] = self.evaluate([track], [self.decode(output, track)])[0][0]
        finally:
            self._threshold_buffer().fill_(current)
        return stats

    def tune(self, stats: list[dict[Any, dict[str, float]]]) -> Any:
        """Pick the threshold that maximises the mean `monitor` over the labelled tracks
        (the first of equal ones; the current threshold if none scores)."""
        stats = [s for s in stats if s]
        if not self.tunes or self.head is None or not stats:
            return None
        current = self.threshold
        best = _on_grid(current, THRESHOLD_GRID)
        best = current if best is None else best
        best_score = -np.inf
        for th in THRESHOLD_GRID:
            score = mean_scores([s[th] for s in stats]).get(self.monitor, -np.inf)
            if np.isfinite(score) and score > best_score:
                best, best_score = th, score
        self._threshold_buffer().fill_(best)
        return best

    def build_head(self, trunk_channels: int) -> Head:
        self.head = SalienceHead(
            trunk_channels,
            hidden=self.head_channels,
            wide_channels=self.wide_channels,
            freq_kernel=max(3, round(self.head_octaves * self.grid.bins_per_octave)),
            time_kernel=self.time_kernel,
            threshold=self.initial_threshold,
            **self.head_options,  # type: ignore[arg-type]
        )
        return self.head

    # -- targets ------------------------------------------------------------------------
    def _voices(self, track: Track, frame_times: np.ndarray) -> list[np.ndarray]:
        """Each active voice's f0 (Hz, 0 = unvoiced) at `frame_times`."""
        raise NotImplementedError

    def targets(self, track: Track, window: Window) -> np.ndarray:
        grid = self.grid
        times = grid.frame_times(window.start_frame + window.n_frames)[window.start_frame :]
        target = np.zeros((grid.n_bins, window.n_frames), dtype=np.float32)
        if not self.has_labels(track):
            return target
        bins = np.arange(grid.n_bins, dtype=np.float64)[:, None]
        sigma = max(self.sigma_cents * grid.bins_per_octave / 1200.0, 0.5)
        for f0 in self._voices(track, times):
            voiced = f0 > 0
            if not voiced.any():
                continue
            pos = np.full(len(f0), -1e9)
            pos[voiced] = grid.bin_of(f0[voiced])
            g = np.exp(-0.5 * ((bins - pos[None, :]) / sigma) ** 2).astype(np.float32)
            np.maximum(target, g, out=target)
        return target

    def loss(self, output: Tensor, target: Tensor, mask: Tensor, feats: Features) -> Tensor:
        per_elem = F.binary_cross_entropy_with_logits(output, target, reduction="none")
        return masked_mean(per_elem.flatten(1).mean(1), mask)

    # -- decoding -----------------------------------------------------------------------
    def salience(self, output: np.ndarray) -> np.ndarray:
        """(F, T) logits -> (F, T) salience in [0, 1]."""
        return 1.0 / (1.0 + np.exp(-output.astype(np.float64)))

    # -- outputs ------------------------------------------------------------------------
    def output_shape(self) -> str:
        return "(B, F, T) salience logits on the f0 grid"

    def export_labels(self) -> dict[str, Any]:
        return {"threshold": self.threshold}

    def _salience_image(self, ax: Any, output: np.ndarray, n_frames: int) -> None:
        """The salience of the first `n_frames` frames on `ax`, bins upwards."""
        from mir.callbacks import time_extent

        sal = self.salience(output[:, :n_frames])
        extent = time_extent(self.grid, n_frames, len(sal))
        ax.imshow(sal, origin="lower", aspect="auto", vmin=0, vmax=1, extent=extent)

    def _write_notes(
        self, ctx: OutputContext, notes: np.ndarray, contour_rows: Callable[[], Iterator[Any]]
    ) -> list[Any]:
        """``<name>.mid`` from `notes`, and the JAMS ``pitch_contour`` (from `contour_rows`)
        and ``note_hz`` annotations, streamed when the JAMS file is written."""
        from mir import outputs

        outputs.write_notes_midi(ctx.out_dir / f"{self.name}.mid", notes, name=self.name)
        return [
            outputs.LazyAnnotation("pitch_contour", self.name, ctx.duration, contour_rows),
            outputs.LazyAnnotation(
                "note_hz", self.name, ctx.duration, lambda: outputs.notes_rows(notes)
            ),
        ]


class MultiF0Task(SalienceTask):
    """Multi-f0 estimation: every active f0 per frame (`mir_eval.multipitch`)."""

    monitor = "Accuracy"

    def __init__(self, name: str = "multif0", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)

    def has_labels(self, track: Track) -> bool:
        return track.has("multif0")

    def _voices(self, track: Track, frame_times: np.ndarray) -> list[np.ndarray]:
        times, freqs = track.get("multif0")
        if len(times) == 0:
            return []
        idx = nearest_index(times, frame_times)
        step = np.median(np.diff(times)) if len(times) > 1 else np.inf
        n_voices = max((len(f) for f in freqs), default=0)
        voices = np.zeros((n_voices, len(frame_times)))
        for j, i in enumerate(idx):
            if abs(times[i] - frame_times[j]) > step:
                continue
            f = np.asarray(freqs[i], dtype=np.float64)
            voices[: len(f), j] = f
        return list(voices)

    def stream(self, audio: Any, out_dir: Path | None) -> Stream:
        """Each chunk decoded at once (peaks per frame); the f0s kept as bin indices."""
        from mir.streams import MultiF0Stream

        return MultiF0Stream(self.name, self)

    def decode(self, output: np.ndarray, track: Track) -> tuple[np.ndarray, list[np.ndarray]]:
        # Peaks and the threshold are compared on the logits: the sigmoid is monotonic, so
        # the result is the same without computing it over the whole (F, T) map.
        logits = np.asarray(output, dtype=np.float32)  # (F, T)
        times = self.grid.frame_times(logits.shape[1])
        peaks = np.zeros_like(logits, dtype=bool)
        peaks[1:-1] = (logits[1:-1] >= logits[:-2]) & (logits[1:-1] > logits[2:])
        peaks &= logits >= logit(self.threshold)
        t_idx, f_idx = np.nonzero(peaks.T)  # frame-major, bins ascending within a frame
        counts = np.bincount(t_idx, minlength=logits.shape[1])
        freqs = self.grid.freqs[f_idx].astype(np.float64)
        return times, np.split(freqs, np.cumsum(counts)[:-1])

    def evaluate_track(self, track: Track, estimate: tuple) -> dict[str, float]:
        ref_t, ref_f = track.get("multif0")
        est_t, est_f = estimate
        scores = mir_eval.multipitch.evaluate(
            np.asarray(ref_t), [np.asarray(f, dtype=float) for f in ref_f], est_t, est_f
        )
        return {k: float(v) for k, v in scores.items()}

    def baseline(self, track: Track) -> tuple[np.ndarray, list[np.ndarray]]:
        times = self.grid.frame_times(self.grid.n_frames(len(track.audio)))
        return times, [np.zeros(0) for _ in times]

    report_columns = ("Accuracy",)

    def expectations(self) -> Expectations:
        keys = frozenset({"Accuracy", "Precision", "Recall"})
        return Expectations(keys=keys, metric=self.monitor)

    def write_outputs(self, ctx: OutputContext, estimate: Any) -> list[Any]:
        """``<name>.csv`` (``time<TAB>f1<TAB>f2...``), ``<name>.mid`` (notes) and their
        JAMS ``pitch_contour`` and ``note_hz`` annotations, written without per-frame
        objects."""
        from mir import outputs

        times, freqs = estimate
        outputs.write_multif0(ctx.out_dir / f"{self.name}.csv", times, freqs)
        notes = outputs.multif0_to_notes(times, freqs, min_duration=ctx.min_note)
        return self._write_notes(ctx, notes, lambda: outputs.multif0_rows(times, freqs))

    def figure(self, track: Track, output: np.ndarray, n_frames: int) -> Any:
        """Salience, and the decoded piano roll against the reference."""
        from mir.callbacks import axes_figure, freq_to_bin

        grid = self.grid
        fig, (ax, roll) = axes_figure(2)
        self._salience_image(ax, output, n_frames)
        ax.set(title=f"{self.name}: salience", ylabel="bin")
        times, freqs = self.decode(output[:, :n_frames], track)
        est = [(t, b) for t, fs in zip(times, freqs, strict=True) for b in freq_to_bin(grid, fs)]
        if self.has_labels(track):
            rt, rf = track.get("multif0")
            end = n_frames / grid.frames_per_second
            ref = [
                (t, b)
                for t, fs in zip(rt, rf, strict=True)
                if t <= end
                for b in freq_to_bin(grid, fs)
            ]
            if ref:
                roll.plot(*np.array(ref).T, "s", color="0.7", ms=3, label="reference")
        if est:
            roll.plot(*np.array(est).T, "r.", ms=2, label="estimate")
        roll.set(title="piano roll", xlabel="time (s)", ylabel="bin", ylim=(0, grid.n_bins))
        roll.legend(loc="upper right")
        return fig


class SingleF0Task(SalienceTask):
    """One voice's f0 (melody, bass or vocal), evaluated with `mir_eval.melody`.

    Args:
        voice: the f0 kind of `Track.annotations` this task reads (``melody``, ``bass``, ``vocal``).
    """

    monitor = "Overall Accuracy"

    def __init__(self, name: str = "melody", voice: str | None = None, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.voice = voice or name

    def has_labels(self, track: Track) -> bool:
        return track.has(self.voice)

    def _voices(self, track: Track, frame_times: np.ndarray) -> list[np.ndarray]:
        times, freqs = track.get(self.voice)
        return [frame_values(np.asarray(times), np.asarray(freqs), frame_times)]

    def stream(self, audio: Any, out_dir: Path | None) -> Stream:
        """Each chunk decoded at once (argmax per frame); 8 bytes a frame kept."""
        from mir.streams import SingleF0Stream

        return SingleF0Stream(self.name, self)

    def decode(self, output: np.ndarray, track: Track) -> tuple[np.ndarray, np.ndarray]:
        logits = np.asarray(output, dtype=np.float32)  # (F, T); the sigmoid is monotonic
        times = self.grid.frame_times(logits.shape[1])
        peak = logits.argmax(axis=0)  # (T,)
        f0 = self.grid.freqs[peak].astype(np.float64)
        f0[logits[peak, np.arange(logits.shape[1])] < logit(self.threshold)] = 0.0
        return times, f0

    def evaluate_track(self, track: Track, estimate: tuple) -> dict[str, float]:
        ref_t, ref_f = track.get(self.voice)
        est_t, est_f = estimate
        scores = mir_eval.melody.evaluate(
            np.asarray(ref_t, float), np.asarray(ref_f, float), est_t, est_f
        )
        return {k: float(v) for k, v in scores.items()}

    def baseline(self, track: Track) -> tuple[np.ndarray, np.ndarray]:
        times = self.grid.frame_times(self.grid.n_frames(len(track.audio)))
        return times, np.zeros(len(times))

    report_columns = ("Overall Accuracy", "Raw Pitch Accuracy")

    def expectations(self) -> Expectations:
        keys = {"Overall Accuracy", "Raw Pitch Accuracy", "Raw Chroma Accuracy"}
        keys |= {"Voicing Recall", "Voicing False Alarm"}
        return Expectations(keys=frozenset(keys), metric=self.monitor)

    def export_labels(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "voice": self.voice}

    def write_outputs(self, ctx: OutputContext, estimate: Any) -> list[Any]:
        """``<name>.csv`` (``time,f0`` rows, 0 Hz = unvoiced), ``<name>.mid`` (notes) and
        their JAMS ``pitch_contour`` and ``note_hz`` annotations, written without
        per-frame objects."""
        from mir import outputs

        times, f0 = estimate
        outputs.write_f0(ctx.out_dir / f"{self.name}.csv", times, f0)
        notes = outputs.f0_to_notes(times, f0, min_duration=ctx.min_note)
        return self._write_notes(ctx, notes, lambda: outputs.f0_rows(times, f0))

    def figure(self, track: Track, output: np.ndarray, n_frames: int) -> Any:
        """Salience (F, T) with the reference f0 drawn over it."""
        from mir.callbacks import axes_figure, freq_to_bin

        fig, (ax,) = axes_figure()
        self._salience_image(ax, output, n_frames)
        if self.has_labels(track):
            t, f = track.get(self.voice)
            keep = np.asarray(t) <= n_frames / self.grid.frames_per_second
            ax.plot(
                np.asarray(t)[keep],
                freq_to_bin(self.grid, np.asarray(f)[keep]),
                "r.",
                ms=2,
                label="reference",
            )
            ax.legend(loc="upper right")
        ax.set(title=f"{self.name}: salience vs reference f0", xlabel="time (s)", ylabel="bin")
        return fig


__all__ = ["MultiF0Task", "SingleF0Task"]
