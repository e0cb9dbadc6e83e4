"""Drum transcription: onset activations per drum class, peak-picked to onset times.

After Vogl et al., "Drum Transcription via Joint Beat and Drum Modeling Using
Convolutional Recurrent Neural Networks" (ISMIR 2017).

Conventions:
    * Classes in order `classes`: a list of ``onsets`` keys or the name of a set in
      `CLASS_SETS`: ``3class`` (``kick``, ``snare``, ``hihat``, the default) or ``8class``
      (``kick``, ``snare``, ``hihat_closed``, ``hihat_open``, ``tom``, ``crash``,
      ``ride``, ``other``: MDB Drums' subclass groups, `mir.data.mdb_drums.SUBCLASS_TO_8`).
    * A track is labelled when it has ``onsets`` with at least one of the
      classes as a key. A key that is present is a label even when empty ("none
      played"); a class whose key is absent is unknown for that track (e.g. the embedded
      set has one ``hihat`` class, not open/closed): its target row is -1, its frames get
      no loss, and its scores are NaN (left out of means), never a faked "none".
    * Targets: 1 at the frame nearest each onset and `widen` at its two neighbours.
    * Decoding: a frame is an onset when its activation is a local maximum within
      +-`peak_frames`, at least `threshold`, and no onset of the class was picked in the
      previous `min_gap` seconds.
    * Evaluation: `mir_eval.onset.evaluate` per class with a `window` tolerance (50 ms
      by default), keys ``<class>/F-measure`` (and Precision, Recall) and their mean over
      the known classes ``mean/F-measure``; and for each of `extra_windows` (20 ms by
      default, the stricter tolerance of later ADT work) the F-measure only, keys
      ``<class>/F-measure@20ms`` and ``mean/F-measure@20ms``. A class with no reference
      and no estimated onset scores 1 (mir_eval would return 0 and warn).
    * That convention lets an empty estimate score 1 on every track without the class (the
      no-onset baseline gets 1.0 for hi-hat on tracks without hi-hat), so beside it:
      ``<class>/F-measure (present)``, the F-measure on tracks where the class has at least
      one reference onset (NaN elsewhere, so means run over those tracks only), their mean
      per track ``mean/F-measure (present)``, and in the summary over a set
      ``<class>/tracks with onsets``, the number of tracks where the class occurs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import mir_eval
import numpy as np
from torch import Tensor

from mir.data.track import Track
from mir.grid import Window
from mir.models.features import Features
from mir.models.heads import OnsetCRNN
from mir.models.model import Head
from mir.tasks.base import Expectations, OutputContext, Task, masked_weighted_bce, mean_scores

log = logging.getLogger(__name__)

UNKNOWN = -1.0
"""Target value of a class whose onsets a track does not annotate."""

CLASS_SETS: dict[str, tuple[str, ...]] = {
    "3class": ("kick", "snare", "hihat"),
    "8class": ("kick", "snare", "hihat_closed", "hihat_open", "tom", "crash", "ride", "other"),
}
"""Named class lists for `DrumsTask(classes=...)`; ``8class`` is MDB Drums' subclass grouping."""


def window_suffix(window: float) -> str:
    """Metric-key suffix of an onset tolerance in s: 0.02 -> ``@20ms``."""
    return f"@{window * 1000:g}ms"


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
        classes: drum classes, keys of the ``onsets`` annotation, or a name in `CLASS_SETS`.
        threshold: peak-picking threshold (one for all classes, or one per class).
        window: mir_eval onset tolerance in s of the main keys (and the monitor).
        extra_windows: further tolerances in s, scored as ``F-measure@<ms>ms``.
        widen: target value at the frames beside an onset.
        pos_weight: weight of positive frames in the BCE (onsets are rare).
        conv_channels, hidden: head sizes.
    """

    monitor = "mean/F-measure"

    def __init__(
        self,
        name: str = "drums",
        weight: float = 1.0,
        classes: Sequence[str] | str = "3class",
        threshold: float | Sequence[float] = 0.5,
        window: float = 0.05,
        extra_windows: Sequence[float] = (0.02,),
        widen: float = 0.5,
        pos_weight: float = 5.0,
        conv_channels: int = 32,
        hidden: int = 64,
    ) -> None:
        super().__init__(name, weight)
        if isinstance(classes, str):
            if classes not in CLASS_SETS:
                raise ValueError(
                    f"{name}: classes must be a list or one of {', '.join(CLASS_SETS)}, "
                    f"got {classes!r}"
                )
            classes = CLASS_SETS[classes]
        self.classes = tuple(str(c) for c in classes)
        if not self.classes:
            raise ValueError(f"{name}: no drum classes")
        th = [threshold] * len(self.classes) if np.isscalar(threshold) else list(threshold)
        if len(th) != len(self.classes):
            raise ValueError(f"{name}: one threshold per class expected, got {len(th)}")
        self.thresholds = [float(t) for t in th]
        self.window = float(window)
        self.extra_windows = tuple(
            float(w) for w in extra_windows if abs(float(w) - self.window) > 1e-9
        )
        self.widen = float(widen)
        self.pos_weight = float(pos_weight)
        self.conv_channels = int(conv_channels)
        self.hidden = int(hidden)

    def build_head(self, trunk_channels: int) -> Head:
        return OnsetCRNN(
            trunk_channels, self.grid.n_bins, len(self.classes), self.conv_channels, 4, self.hidden
        )

    def has_labels(self, track: Track) -> bool:
        return any(c in track.get("onsets", {}) for c in self.classes)

    def known(self, track: Track) -> list[bool]:
        """Per class, whether `track` annotates it (its key is in its ``onsets``)."""
        return [c in track.get("onsets", {}) for c in self.classes]

    def _events(self, track: Track) -> list[np.ndarray]:
        """Reference onsets per class (empty for unknown classes; see `known`)."""
        onsets = track.get("onsets")
        return [np.asarray(onsets.get(c, np.zeros(0)), dtype=np.float64) for c in self.classes]

    def targets(self, track: Track, window: Window) -> np.ndarray:
        """(K, T) targets; the rows of classes the track does not annotate are -1."""
        if not self.has_labels(track):
            return np.zeros((len(self.classes), window.n_frames), dtype=np.float32)
        out = onset_targets(self._events(track), self.grid.frames_per_second, window, self.widen)
        out[~np.asarray(self.known(track))] = UNKNOWN
        return out

    def loss(self, output: Tensor, target: Tensor, mask: Tensor, feats: Features) -> Tensor:
        """Weighted BCE over known frames; (B, K, T) logits and targets, (B,) mask."""
        return masked_weighted_bce(output, target, mask, self.pos_weight)

    def decode(self, output: np.ndarray, track: Track) -> list[np.ndarray]:
        act = 1.0 / (1.0 + np.exp(-output.astype(np.float64)))
        fps = self.grid.frames_per_second
        return [pick_peaks(act[k], fps, th) for k, th in enumerate(self.thresholds)]

    def evaluate_track(self, track: Track, estimate: list[np.ndarray]) -> dict[str, float]:
        nan = float("nan")
        suffixes = [window_suffix(w) for w in self.extra_windows]
        out: dict[str, float] = {}
        fs: list[float] = []
        fs_present: list[float] = []
        fs_extra: list[list[float]] = [[] for _ in self.extra_windows]
        for cls, known, ref, est in zip(
            self.classes, self.known(track), self._events(track), estimate, strict=True
        ):
            est = np.asarray(est, dtype=np.float64)
            if not known:
                for k in ("F-measure", "Precision", "Recall", "F-measure (present)"):
                    out[f"{cls}/{k}"] = nan
                for sfx in suffixes:
                    out[f"{cls}/F-measure{sfx}"] = nan
                continue
            scores = _onset_scores(ref, est, self.window)
            for k, v in scores.items():
                out[f"{cls}/{k}"] = float(v)
            fs.append(float(scores["F-measure"]))
            out[f"{cls}/F-measure (present)"] = fs[-1] if len(ref) else nan
            if len(ref):
                fs_present.append(fs[-1])
            for i, (w, sfx) in enumerate(zip(self.extra_windows, suffixes, strict=True)):
                f = float(_onset_scores(ref, est, w)["F-measure"])
                out[f"{cls}/F-measure{sfx}"] = f
                fs_extra[i].append(f)
        out["mean/F-measure"] = float(np.mean(fs)) if fs else nan
        out["mean/F-measure (present)"] = float(np.mean(fs_present)) if fs_present else nan
        for sfx, vals in zip(suffixes, fs_extra, strict=True):
            out[f"mean/F-measure{sfx}"] = float(np.mean(vals)) if vals else nan
        return out

    set_level_summary = True

    def summarise(
        self,
        tracks: list[Track],
        estimates: list[list[np.ndarray]],
        per_track: list[dict[str, float]],
    ) -> dict[str, float]:
        """The per-track scores' means, plus per class the number of tracks on which it has
        reference onsets (``<class>/tracks with onsets``)."""
        summary = mean_scores(per_track)
        labelled = [t for t in tracks if self.has_labels(t)]
        for cls in self.classes:
            n = sum(len(np.atleast_1d(t.get("onsets", {}).get(cls, ()))) > 0 for t in labelled)
            summary[f"{cls}/tracks with onsets"] = float(n)
        return summary

    def baseline(self, track: Track) -> list[np.ndarray]:
        return [np.zeros(0) for _ in self.classes]

    # -- outputs ------------------------------------------------------------------------
    def expectations(self) -> Expectations:
        keys = {f"{c}/F-measure" for c in self.classes} | {"mean/F-measure"}
        keys |= {f"mean/F-measure{window_suffix(w)}" for w in self.extra_windows}
        return Expectations(keys=frozenset(keys), metric=self.monitor)

    def write_outputs(self, ctx: OutputContext, estimate: Any) -> list[Any]:
        """``<name>.mid``: the onsets as General-MIDI percussion (classes without a key are
        left out, with a warning), and a JAMS ``onset`` annotation valued by class."""
        from mir import outputs

        path = ctx.out_dir / f"{self.name}.mid"
        _, unmapped = outputs.write_drums_midi(path, self.classes, estimate)
        if unmapped:
            log.warning(
                "%s: no General-MIDI key for %s; left out of the MIDI file", self.name, unmapped
            )
        return [outputs.onsets_annotation(self.name, self.classes, estimate, ctx.duration)]

    def figure(self, track: Track, output: np.ndarray, n_frames: int) -> Any:
        """Each class's onset activation against the reference onsets."""
        from mir.callbacks import activations_figure

        refs = self._events(track) if self.has_labels(track) else None
        return activations_figure(self.name, self.grid, output, n_frames, list(self.classes), refs)

    def output_shape(self) -> str:
        return "(B, K, T) onset logits per class"

    def export_labels(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "thresholds": self.thresholds}


def _onset_scores(ref: np.ndarray, est: np.ndarray, window: float) -> dict[str, float]:
    """`mir_eval.onset.evaluate`, except that no reference and no estimate scores 1."""
    if len(ref) == 0 and len(est) == 0:
        return {"F-measure": 1.0, "Precision": 1.0, "Recall": 1.0}
    return dict(mir_eval.onset.evaluate(ref, est, window=window))
