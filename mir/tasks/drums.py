"""Drum transcription: onset activations per drum class, peak-picked to onset times.

After Vogl et al., "Drum Transcription via Joint Beat and Drum Modeling Using
Convolutional Recurrent Neural Networks" (ISMIR 2017).

Conventions:
    * Classes in order `classes` (default ``kick``, ``snare``, ``hihat``), read from
      `Track.onsets`; a track is labelled when `Track.onsets` is not None (a class with
      no onsets is a real "none played" label).
    * Targets: 1 at the frame nearest each onset and `widen` at its two neighbours.
    * Decoding: a frame is an onset when its activation is a local maximum within
      +-`peak_frames`, at least `threshold`, and no onset of the class was picked in the
      previous `min_gap` seconds.
    * Evaluation: `mir_eval.onset.evaluate` per class with a `window` tolerance (50 ms
      by default), keys ``<class>/F-measure`` (and Precision, Recall) and their mean
      ``mean/F-measure``.
"""

from __future__ import annotations

from collections.abc import Sequence

import mir_eval
import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn

from mir.data.track import Track
from mir.models.features import Features
from mir.models.heads import OnsetCRNN
from mir.tasks.base import Task, Window, masked_mean


def onset_targets(
    onsets: Sequence[np.ndarray], fps: float, window: Window, widen: float
) -> np.ndarray:
    """(K, T) frame targets: 1 at each onset's nearest frame, `widen` beside it."""
    out = np.zeros((len(onsets), window.n_frames), dtype=np.float32)
    for k, times in enumerate(onsets):
        idx = np.rint(np.asarray(times, dtype=np.float64) * fps).astype(int) - window.start_frame
        for off, val in ((-1, widen), (1, widen), (0, 1.0)):
            j = idx + off
            j = j[(j >= 0) & (j < window.n_frames)]
            out[k, j] = np.maximum(out[k, j], val)
    return out


def pick_peaks(
    act: np.ndarray, fps: float, threshold: float, peak_frames: int = 2, min_gap: float = 0.03
) -> np.ndarray:
    """Onset times (s) from one activation curve (T,) in [0, 1]."""
    if act.size == 0:
        return np.zeros(0)
    w = 2 * peak_frames + 1
    padded = np.pad(act, peak_frames, mode="constant", constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, w)
    is_peak = (act >= windows.max(axis=1)) & (act >= threshold)
    times = np.flatnonzero(is_peak) / fps
    keep: list[float] = []
    for t in times:
        if not keep or t - keep[-1] >= min_gap:
            keep.append(float(t))
    return np.asarray(keep)


class DrumsTask(Task):
    """Frame-wise drum onset detection for `classes`.

    Args:
        name: head and metric prefix.
        weight: loss weight.
        classes: drum classes, keys of `Track.onsets`.
        threshold: peak-picking threshold (one for all classes, or one per class).
        window: mir_eval onset tolerance in s.
        widen: target value at the frames beside an onset.
        pos_weight: weight of positive frames in the BCE (onsets are rare).
        conv_channels, hidden: head sizes.
    """

    monitor = "mean/F-measure"

    def __init__(
        self,
        name: str = "drums",
        weight: float = 1.0,
        classes: Sequence[str] = ("kick", "snare", "hihat"),
        threshold: float | Sequence[float] = 0.5,
        window: float = 0.05,
        widen: float = 0.5,
        pos_weight: float = 5.0,
        conv_channels: int = 32,
        hidden: int = 64,
    ) -> None:
        super().__init__(name, weight)
        self.classes = tuple(classes)
        th = [threshold] * len(self.classes) if np.isscalar(threshold) else list(threshold)
        if len(th) != len(self.classes):
            raise ValueError(f"{name}: one threshold per class expected, got {len(th)}")
        self.thresholds = [float(t) for t in th]
        self.window = float(window)
        self.widen = float(widen)
        self.pos_weight = float(pos_weight)
        self.conv_channels = int(conv_channels)
        self.hidden = int(hidden)

    def build_head(self, trunk_channels: int) -> nn.Module:
        return OnsetCRNN(
            trunk_channels, self.fe.n_bins, len(self.classes), self.conv_channels, 4, self.hidden
        )

    def has_labels(self, track: Track) -> bool:
        return track.onsets is not None

    def _events(self, track: Track) -> list[np.ndarray]:
        assert track.onsets is not None
        return [
            np.asarray(track.onsets.get(c, np.zeros(0)), dtype=np.float64) for c in self.classes
        ]

    def targets(self, track: Track, window: Window) -> np.ndarray:
        if not self.has_labels(track):
            return np.zeros((len(self.classes), window.n_frames), dtype=np.float32)
        return onset_targets(self._events(track), self.fe.frames_per_second, window, self.widen)

    def loss(self, output: Tensor, target: Tensor, mask: Tensor, feats: Features) -> Tensor:
        weight = 1.0 + (self.pos_weight - 1.0) * (target > 0).to(output.dtype)
        per = F.binary_cross_entropy_with_logits(output, target, weight=weight, reduction="none")
        return masked_mean(per.flatten(1).mean(1), mask)

    def decode(self, output: np.ndarray, track: Track) -> list[np.ndarray]:
        act = 1.0 / (1.0 + np.exp(-output.astype(np.float64)))
        fps = self.fe.frames_per_second
        return [pick_peaks(act[k], fps, th) for k, th in enumerate(self.thresholds)]

    def evaluate_track(self, track: Track, estimate: list[np.ndarray]) -> dict[str, float]:
        out: dict[str, float] = {}
        fs = []
        for cls, ref, est in zip(self.classes, self._events(track), estimate, strict=True):
            if len(ref) == 0 and len(est) == 0:
                scores = {"F-measure": 1.0, "Precision": 1.0, "Recall": 1.0}
            else:
                scores = mir_eval.onset.evaluate(ref, np.asarray(est), window=self.window)
            for k, v in scores.items():
                out[f"{cls}/{k}"] = float(v)
            fs.append(float(scores["F-measure"]))
        out["mean/F-measure"] = float(np.mean(fs))
        return out

    def baseline(self, track: Track) -> list[np.ndarray]:
        return [np.zeros(0) for _ in self.classes]
