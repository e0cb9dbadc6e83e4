"""The task interface shared by every head.

A task knows how to build its head, turn a track's annotations into targets for a window
of the front end's frame grid, compute its loss with a per-example label mask, decode a
full-track output into times and values, evaluate the decoding with `mir_eval` and
summarise it over a set, write its ``mir.predict`` files and JAMS annotation, draw its
figure, describe its output for ``mir.export``, name its report columns, and say what the
tests expect of it. The training loop (`mir.module.MirModule`), ``mir.predict``,
``mir.evaluate``, ``mir.export``, ``mir.report`` and the callbacks know nothing
task-specific: they call these methods.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mir.data.track import Track
from mir.frontend import HarmonicCQT
from mir.grid import Grid, Window
from mir.models.features import Features
from mir.models.model import Head

__all__ = [
    "Expectations",
    "Grid",
    "OutputContext",
    "Task",
    "Window",
    "masked_mean",
    "masked_weighted_bce",
    "mean_scores",
    "nearest_index",
    "score_stats",
]


class Task(ABC):
    """One analysis task on the shared front end.

    Args:
        name: key of the head and prefix of its metrics (``val/<name>/<metric>``).
        weight: weight of this task's loss in the multitask sum.

    Class attributes:
        output_kind: ``frames`` (last axis is the frame axis) or ``track`` (no time axis).
        target_kind: ``frames``, ``samples`` (last axis is samples) or ``track``.
        monitor: mir_eval key the checkpoint callback monitors (higher is better).
    """

    output_kind: Literal["frames", "track"] = "frames"
    target_kind: Literal["frames", "samples", "track"] = "frames"
    monitor: str = ""

    def __init__(self, name: str, weight: float = 1.0) -> None:
        self.name = name
        self.weight = float(weight)
        self.frontend: HarmonicCQT | None = None
        self._grid: Grid | None = None

    # -- construction -----------------------------------------------------------------
    def bind(self, frontend: HarmonicCQT) -> None:
        """Attach the front end whose grid defines frames and bins (called by the module)."""
        self.frontend = frontend
        self._grid = frontend.grid

    @property
    def fe(self) -> HarmonicCQT:
        """The bound front end (its STFT, for tasks that invert one)."""
        if self.frontend is None:
            raise RuntimeError(f"task {self.name!r} is not bound to a front end")
        return self.frontend

    @property
    def grid(self) -> Grid:
        """The frame and f0-bin grid of the bound front end."""
        if self._grid is None:
            raise RuntimeError(f"task {self.name!r} is not bound to a front end")
        return self._grid

    @abstractmethod
    def build_head(self, trunk_channels: int) -> Head:
        """The head: a `mir.models.model.Head` mapping `Features` to this task's output
        (B, ...); its ``uses_trunk`` / ``uses_stft`` say which shared features it reads."""

    # -- data -------------------------------------------------------------------------
    @abstractmethod
    def has_labels(self, track: Track) -> bool:
        """Whether `track` carries this task's annotations (else its loss is masked)."""

    @abstractmethod
    def targets(self, track: Track, window: Window) -> np.ndarray:
        """Training targets for `window` of `track` (zeros when `has_labels` is False)."""

    def skip_reason(self, track: Track) -> str | None:
        """Why `evaluate` leaves `track` out (None: it is scored), for score tables."""
        return None if self.has_labels(track) else f"no {self.name} annotation"

    def stems_needed(self) -> tuple[str, ...]:
        """Stems this task reads from tracks (others may be dropped to save memory)."""
        return ()

    @property
    def min_crop_seconds(self) -> float:
        """Shortest training excerpt this task needs, in s (0: no minimum)."""
        return 0.0

    # -- training ---------------------------------------------------------------------
    @abstractmethod
    def loss(self, output: Tensor, target: Tensor, mask: Tensor, feats: Features) -> Tensor:
        """Mean loss over the examples where `mask` (B,) is True; 0 if none is."""

    # -- inference and evaluation -------------------------------------------------------
    @abstractmethod
    def decode(self, output: np.ndarray, track: Track) -> Any:
        """Turn one full-track output (no batch axis) into this task's estimate."""

    @abstractmethod
    def evaluate_track(self, track: Track, estimate: Any) -> dict[str, float]:
        """mir_eval scores of one track's estimate, keys as mir_eval names them."""

    @abstractmethod
    def baseline(self, track: Track) -> Any:
        """A trivial estimate (all-unvoiced, no onsets, mixture...) to beat."""

    def tuning_stats(self, track: Track, output: np.ndarray) -> dict[Any, dict[str, float]]:
        """What `tune` needs from one labelled validation track's raw output (no batch axis),
        in its stead: the track's scores (as `evaluate` gives them) under each candidate
        decoding setting. Its size does not depend on the track's length, so validation
        keeps these few numbers per track and never the raw outputs (default: nothing).
        """
        return {}

    def tune(self, stats: list[dict[Any, dict[str, float]]]) -> Any:
        """Choose and set the decoding setting from every labelled validation track's
        `tuning_stats` (default: nothing to tune).

        Tasks that tune store the result in a buffer of their head, so it is saved in
        checkpoints and exports with the weights; their summary is the mean of per-track
        scores.

        Returns:
            The key of the stats whose scores hold for the setting now in force (None when
            `stats` is empty).
        """
        return None

    tunes: bool = False
    """Whether `tune` does anything (validation then computes `tuning_stats` per track)."""

    def evaluate(
        self, tracks: list[Track], estimates: list[Any]
    ) -> tuple[list[dict[str, float]], dict[str, float]]:
        """Scores of each labelled track (`evaluate_track`) and their `summarise`."""
        per_track = []
        for track, est in zip(tracks, estimates, strict=True):
            if self.has_labels(track):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    per_track.append(self.evaluate_track(track, est))
        return per_track, self.summarise(tracks, estimates, per_track)

    set_level_summary: bool = False
    """Whether `summarise` is more than the mean of the per-track scores (set-level metrics
    such as tagging's AUCs): validation, test and ``mir.evaluate`` then keep every track
    (without audio) and estimate of a split and call `evaluate` on the whole set, instead of
    keeping per-track scores only."""

    def summarise(
        self, tracks: list[Track], estimates: list[Any], per_track: list[dict[str, float]]
    ) -> dict[str, float]:
        """The summary over a set of tracks: the mean of each per-track metric by default
        (`per_track` holds the scores of the labelled tracks, in order)."""
        return mean_scores(per_track)

    # -- outputs: files, figure, export, report, tests --------------------------------------
    decode_reads_audio: bool = False
    """Whether `decode` reads the track's audio (separation applies masks to the mixture),
    so streamed inference keeps the audio for it."""

    @abstractmethod
    def write_outputs(self, ctx: OutputContext, estimate: Any) -> list[Any]:
        """Write this task's files for one input into ``ctx.out_dir`` (each atomically,
        through `mir.outputs`; names start with `name`) and return its JAMS annotations
        (`jams.Annotation` or `mir.outputs.LazyAnnotation`), for ``mir.predict``."""

    @abstractmethod
    def figure(self, track: Track, output: np.ndarray, n_frames: int) -> Any:
        """A matplotlib figure of one track's raw output (its first `n_frames` frames)
        against the reference, for W&B; None when this task draws none."""

    def media_audio(self, track: Track, output: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """(caption, waveform at the track's rate) clips logged beside the mixture (the
        estimated stems of separation); none by default."""
        return []

    @abstractmethod
    def output_shape(self) -> str:
        """The raw output's shape and meaning, in the B/S/K/F/T letters (``mir.export``)."""

    def export_labels(self) -> dict[str, Any]:
        """What a user of an export needs to read the output: its axes' labels (sources,
        classes, tags) and decoding settings (thresholds); none by default."""
        return {}

    report_columns: tuple[str, ...] = ()
    """mir_eval keys of this task shown by default in ``mir.report collect`` tables."""

    def expectations(self) -> Expectations:
        """What the contract, smoke and learning tests check of this task: by default that
        its evaluation gives the monitored key, and that the trained model's monitored
        metric beats the trivial baseline."""
        return Expectations(keys=frozenset({self.monitor}), metric=self.monitor)


@dataclass
class OutputContext:
    """What a task's `write_outputs` knows about one input file of ``mir.predict``."""

    out_dir: Path
    duration: float  # s
    sr_in: int  # the file's sample rate, Hz
    channels: np.ndarray | None  # (C, N') the channels at the model's rate (U-Net only)
    n_in: int  # the file's length in samples at sr_in
    raw: dict[str, np.ndarray]  # task -> undecoded full-track output
    top_k: int
    min_note: float
    path: Path | None = None  # the input
    sr_model: int = 0  # the model's sample rate, Hz


@dataclass(frozen=True)
class Expectations:
    """A task's test expectations.

    Attributes:
        keys: mir_eval keys its evaluation must give (a subset of what it gives).
        metric: the key the learning test compares with the trivial baseline.
        higher_is_better: the direction in which `metric` must beat the baseline.
        held_out: `metric` is a set-level score too noisy on the few test tracks: the
            learning test compares it on every held-out track (validation and test).
    """

    keys: frozenset[str]
    metric: str
    higher_is_better: bool = True
    held_out: bool = False


def score_stats(per_track: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean, median and count over tracks of each metric, the one summary of scores.

    Args:
        per_track: a row of scores per track (a ``track`` key, the track's name, is ignored).

    Returns:
        metric -> {"mean", "median", "n"} over the finite values (NaN and infinite scores
        are left out; mean and median are NaN when none is finite), for every metric that
        some row has, in the order first seen.
    """
    keys = dict.fromkeys(k for row in per_track for k in row if k != "track")
    out: dict[str, dict[str, float]] = {}
    for key in keys:
        vals = np.array([float(r[key]) for r in per_track if key in r], dtype=np.float64)
        finite = vals[np.isfinite(vals)]
        out[key] = {
            "mean": float(finite.mean()) if len(finite) else math.nan,
            "median": float(np.median(finite)) if len(finite) else math.nan,
            "n": len(finite),
        }
    return out


def mean_scores(per_track: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean of each metric over tracks (NaN and infinite scores left out; `score_stats`)."""
    return {k: s["mean"] for k, s in score_stats(per_track).items()}


def masked_mean(per_example: Tensor, mask: Tensor) -> Tensor:
    """Mean of (B,) losses over masked-in examples; a graph-connected 0 when none is."""
    m = mask.to(per_example.dtype)
    return (per_example * m).sum() / m.sum().clamp_min(1.0)


def masked_weighted_bce(output: Tensor, target: Tensor, mask: Tensor, pos_weight: float) -> Tensor:
    """BCE of frame activations where some targets are unknown, positives up-weighted.

    Args:
        output: (B, K, T) logits.
        target: (B, K, T) targets in [0, 1], or -1 where unknown (those frames get no loss).
        mask: (B,) examples that carry this task's labels.
        pos_weight: weight of frames whose target is > 0 (onsets and beats are rare).

    Returns:
        The mean over masked-in examples of each example's loss summed over its known
        frames and divided by their number.
    """
    known = (target >= 0).to(output.dtype)
    y = target.clamp_min(0.0)
    weight = known * (1.0 + (pos_weight - 1.0) * (y > 0).to(output.dtype))
    per = F.binary_cross_entropy_with_logits(output, y, weight=weight, reduction="none")
    per_example = per.flatten(1).sum(1) / known.flatten(1).sum(1).clamp_min(1.0)  # (B,)
    return masked_mean(per_example, mask)


def nearest_index(times: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of the time nearest each query time (the earlier one on a tie).

    Args:
        times: (K,) sorted times in s, K >= 1.
        query: (T,) times in s.

    Returns:
        (T,) int indices into `times`.
    """
    times = np.asarray(times)
    query = np.asarray(query)
    if len(times) == 1:
        return np.zeros(len(query), dtype=np.intp)
    right = np.clip(np.searchsorted(times, query), 1, len(times) - 1)  # first time >= query
    left = right - 1
    choose_left = np.abs(query - times[left]) <= np.abs(times[right] - query)
    return np.where(choose_left, left, right)


def frame_values(times: np.ndarray, values: np.ndarray, frame_times: np.ndarray) -> np.ndarray:
    """Nearest-neighbour lookup of a time series at `frame_times` (0 outside its span).

    Args:
        times: (K,) sorted annotation times in s.
        values: (K,) values (e.g. f0 in Hz, 0 = unvoiced).
        frame_times: (T,) query times in s.
    """
    out = np.zeros(len(frame_times), dtype=np.float64)
    if len(times) == 0:
        return out
    out[:] = values[nearest_index(times, frame_times)]
    step = np.median(np.diff(times)) if len(times) > 1 else 0.0
    outside = (frame_times < times[0] - step) | (frame_times > times[-1] + step)
    out[outside] = 0.0
    return out


def to_tensor(x: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))
