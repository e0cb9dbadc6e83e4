"""The task interface shared by every head.

A task knows how to build its head, turn a track's annotations into targets for a window
of the front end's frame grid, compute its loss with a per-example label mask, decode a
full-track output into times and values, and evaluate the decoding with `mir_eval`.
The training loop (`mir.module.MirModule`) knows nothing task-specific.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from mir.data.track import Track
from mir.frontend import HarmonicCQT
from mir.models.features import Features


@dataclass(frozen=True)
class Window:
    """A training excerpt on the front end's grid: frames and the samples they cover."""

    start_frame: int
    n_frames: int
    start_sample: int
    n_samples: int


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

    # -- construction -----------------------------------------------------------------
    def bind(self, frontend: HarmonicCQT) -> None:
        """Attach the front end whose grid defines frames and bins (called by the module)."""
        self.frontend = frontend

    @property
    def fe(self) -> HarmonicCQT:
        if self.frontend is None:
            raise RuntimeError(f"task {self.name!r} is not bound to a front end")
        return self.frontend

    @abstractmethod
    def build_head(self, trunk_channels: int) -> nn.Module:
        """The head: an `nn.Module` mapping `Features` to this task's output (B, ...).

        The head sets ``uses_trunk`` / ``uses_stft`` attributes (default True / False)
        so the shared model computes only the features some head reads.
        """

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
        """Scores per track and their summary over the set (mean by default)."""
        per_track = []
        for track, est in zip(tracks, estimates, strict=True):
            if self.has_labels(track):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    per_track.append(self.evaluate_track(track, est))
        return per_track, mean_scores(per_track)


def mean_scores(per_track: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over tracks (NaNs ignored)."""
    if not per_track:
        return {}
    keys = list(per_track[0])
    out = {}
    for k in keys:
        vals = np.array([float(s[k]) for s in per_track if k in s], dtype=np.float64)
        out[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
    return out


def masked_mean(per_example: Tensor, mask: Tensor) -> Tensor:
    """Mean of (B,) losses over masked-in examples; a graph-connected 0 when none is."""
    m = mask.to(per_example.dtype)
    return (per_example * m).sum() / m.sum().clamp_min(1.0)


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
    idx = np.searchsorted(times, frame_times)
    idx = np.clip(idx, 1, len(times) - 1) if len(times) > 1 else np.zeros_like(idx)
    left = np.maximum(idx - 1, 0)
    choose_left = np.abs(frame_times - times[left]) <= np.abs(times[idx] - frame_times)
    nearest = np.where(choose_left, left, idx)
    out[:] = values[nearest]
    step = np.median(np.diff(times)) if len(times) > 1 else 0.0
    outside = (frame_times < times[0] - step) | (frame_times > times[-1] + step)
    out[outside] = 0.0
    return out


def to_tensor(x: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))
