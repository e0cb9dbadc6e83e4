"""Chord recognition, majmin vocabulary: frame-wise chord classes, decoded to labelled
intervals.

After the frame-wise classifiers of McFee & Bello, "Structured Training for Large-Vocabulary
Chord Recognition" (ISMIR 2017), reduced to the MIREX major/minor vocabulary, with the
HMM-style smoothing of Cho & Bello, "On the Relative Importance of Individual Components of
Chord Recognition Systems" (TASLP 2014).

Conventions:
    * Vocabulary (`VOCABULARY`, K = 25 classes): ``N`` (class 0), then ``<root>:maj`` for
      the 12 roots C, C#, ..., B (classes 1-12), then ``<root>:min`` (classes 13-24).
    * Labels are read from the ``chords`` annotation, ``(intervals (n, 2) in s, labels)``
      in `mir_eval.chord` syntax. A reference label maps to a class as
      `mir_eval.chord.majmin` compares it: its root and the first 8 semitones of its
      quality bitmap (so ``C:7`` is ``C:maj`` and ``A:min7`` is ``A:min``); ``N`` is class
      0. Any other label (``X``, ``dim``, ``aug``, ``sus``...) and frames outside the
      annotated span are unknown: target -1, left out of the loss.
    * Frame k stands for time ``k * hop / sr`` s (the front end's grid) and takes the label
      sounding at that time.
    * Output: (K, T) logits; loss: cross-entropy over known frames, averaged per example,
      masked per example.
    * Decoding: Viterbi over the softmax posteriors with a uniform prior and a
      self-transition probability `self_transition` (all changes equally likely), which
      removes one-frame flickers; a change between frames k - 1 and k is placed at
      ``(k - 0.5) * hop / sr`` s, and the last interval ends at the track's end.
    * Evaluation: `mir_eval.chord.evaluate`, keys unchanged (root, majmin, thirds, mirex,
      triads, tetrads, sevenths and their ``_inv`` variants, overseg, underseg, seg).
    * Baseline: the track's most frequent majmin chord (by duration) held over the whole
      track, the best constant estimate (it reads the reference; ``N`` when none).
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import librosa
import mir_eval
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mir.data.track import Track
from mir.grid import Window
from mir.models.features import Features
from mir.models.layers import conv_bn_relu
from mir.models.model import Head
from mir.tasks.base import Expectations, OutputContext, Task, masked_mean

ROOTS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
VOCABULARY: tuple[str, ...] = (
    "N",
    *(f"{r}:maj" for r in ROOTS),
    *(f"{r}:min" for r in ROOTS),
)
"""The class names, in output order."""

UNKNOWN = -1
"""Target of frames whose label is outside the vocabulary or not annotated."""

_MAJ = np.asarray(mir_eval.chord.QUALITIES["maj"][:8])
_MIN = np.asarray(mir_eval.chord.QUALITIES["min"][:8])


class ChordEstimate(NamedTuple):
    """Decoded chords of one track: (n, 2) intervals in s and n labels."""

    intervals: np.ndarray
    labels: list[str]


def chord_class(label: str) -> int:
    """The vocabulary class of a `mir_eval.chord` label, or `UNKNOWN` (see Conventions)."""
    root, bitmap, _ = mir_eval.chord.encode(label, reduce_extended_chords=False)
    if root < 0:
        return 0 if not np.any(bitmap) else UNKNOWN
    if np.array_equal(bitmap[:8], _MAJ):
        return 1 + int(root)
    if np.array_equal(bitmap[:8], _MIN):
        return 13 + int(root)
    return UNKNOWN


def frame_classes(chords: tuple[np.ndarray, list[str]], frame_times: np.ndarray) -> np.ndarray:
    """(T,) class of each frame time: the label whose interval holds it, `UNKNOWN` where
    none does."""
    intervals, labels = np.asarray(chords[0], dtype=np.float64).reshape(-1, 2), chords[1]
    out = np.full(len(frame_times), UNKNOWN, dtype=np.int64)
    if len(labels) == 0:
        return out
    classes = np.array([chord_class(lab) for lab in labels])
    order = np.argsort(intervals[:, 0], kind="stable")
    starts, ends, classes = intervals[order, 0], intervals[order, 1], classes[order]
    k = np.searchsorted(starts, frame_times, side="right") - 1  # last interval started
    inside = (k >= 0) & (frame_times < ends[np.clip(k, 0, None)])
    out[inside] = classes[k[inside]]
    return out


def frames_to_intervals(classes: np.ndarray, fps: float, duration: float) -> ChordEstimate:
    """Runs of equal frame classes as labelled intervals covering ``[0, duration]`` s."""
    if len(classes) == 0:
        return ChordEstimate(np.array([[0.0, duration]]), ["N"])
    change = np.flatnonzero(np.diff(classes)) + 1  # first frame of each new run
    bounds = np.concatenate([[0.0], (change - 0.5) / fps, [duration]])
    bounds = np.clip(bounds, 0.0, duration)
    firsts = np.concatenate([[0], change])
    intervals = np.stack([bounds[:-1], bounds[1:]], axis=1)
    keep = intervals[:, 1] > intervals[:, 0]
    labels = [VOCABULARY[int(classes[f])] for f in firsts]
    return ChordEstimate(intervals[keep], [lab for lab, k in zip(labels, keep, strict=True) if k])


class ChordHead(Head):
    """Frame-wise chord logits from trunk features, the same classifier for every root.

    A convolution, frequency max-pooled to semitones and averaged over octaves into 12
    pitch classes, a convolution over time for context; then, for each root r, the pitch
    classes rotated to start at r go through one shared MLP giving that root's ``maj`` and
    ``min`` logits (a transposition moves the logits, it does not change the classifier),
    and ``N`` comes from the pitch-class average.

    Args:
        in_channels: trunk channels C.
        n_bins: frequency bins F of the trunk features (whole octaves).
        bins_per_octave: of the front end, a multiple of 12.
        channels: channels c of the convolutions.
        hidden: hidden units of the shared MLP.
        context: frames of the time convolution (odd).
    """

    def __init__(
        self,
        in_channels: int,
        n_bins: int,
        bins_per_octave: int,
        channels: int = 16,
        hidden: int = 32,
        context: int = 9,
    ) -> None:
        super().__init__()
        if bins_per_octave % 12 or n_bins % bins_per_octave:
            raise ValueError(
                f"chords: the front end needs whole octaves of a multiple of 12 bins, got "
                f"{n_bins} bins at {bins_per_octave} per octave"
            )
        self.octaves = n_bins // bins_per_octave
        self.conv = nn.Sequential(
            conv_bn_relu(in_channels, channels, (3, 3)),
            nn.MaxPool2d((bins_per_octave // 12, 1)),
        )
        self.context = conv_bn_relu(channels, channels, (1, context))
        rotations = (np.arange(12)[:, None] + np.arange(12)[None, :]) % 12  # root, interval
        self.register_buffer("rotations", torch.from_numpy(rotations), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(channels * 12, hidden), nn.ReLU(), nn.Linear(hidden, 2))
        self.none = nn.Linear(channels, 1)

    def forward(self, feats: Features) -> Tensor:
        """-> (B, K = 25, T) logits in `VOCABULARY` order."""
        assert feats.trunk is not None
        x = self.conv(feats.trunk)  # (B, c, 12 * octaves, T)
        x = x.unflatten(2, (self.octaves, 12)).mean(2)  # (B, c, 12, T)
        x = self.context(x)  # (B, c, 12, T)
        rot = x[:, :, self.rotations]  # (B, c, 12 roots, 12 intervals, T)
        rot = rot.permute(0, 4, 2, 1, 3).flatten(3)  # (B, T, roots, c * 12)
        majmin = self.mlp(rot)  # (B, T, 12, 2)
        none = self.none(x.mean(2).transpose(1, 2))  # (B, T, 1)
        logits = torch.cat([none, majmin[..., 0], majmin[..., 1]], dim=2)  # (B, T, 25)
        return logits.transpose(1, 2)


class ChordsTask(Task):
    """Frame-wise majmin chord classes on the shared trunk, decoded with Viterbi smoothing.

    Args:
        name: head and metric prefix.
        weight: loss weight.
        self_transition: probability of staying on a chord from one frame to the next in
            the Viterbi decoding (0 < p < 1; higher gives longer chords).
        channels, hidden: head sizes (`ChordHead`).
    """

    monitor = "majmin"

    def __init__(
        self,
        name: str = "chords",
        weight: float = 1.0,
        self_transition: float = 0.98,
        channels: int = 16,
        hidden: int = 32,
    ) -> None:
        super().__init__(name, weight)
        if not 0.0 < float(self_transition) < 1.0:
            raise ValueError(f"{name}: self_transition must be in (0, 1), got {self_transition}")
        self.self_transition = float(self_transition)
        self.channels = int(channels)
        self.hidden = int(hidden)

    def build_head(self, trunk_channels: int) -> Head:
        grid = self.grid
        return ChordHead(
            trunk_channels, grid.n_bins, grid.bins_per_octave, self.channels, self.hidden
        )

    def has_labels(self, track: Track) -> bool:
        return track.has("chords")

    def targets(self, track: Track, window: Window) -> np.ndarray:
        """(T,) class per frame as float32, -1 where unknown; zeros without labels."""
        if not self.has_labels(track):
            return np.zeros(window.n_frames, dtype=np.float32)
        frames = window.start_frame + np.arange(window.n_frames)
        times = frames / self.grid.frames_per_second
        return frame_classes(track.get("chords"), times).astype(np.float32)

    def loss(self, output: Tensor, target: Tensor, mask: Tensor, feats: Features) -> Tensor:
        """Cross-entropy over known frames; (B, K, T) logits, (B, T) targets, (B,) mask."""
        y = target.long()
        per = F.cross_entropy(output, y, ignore_index=UNKNOWN, reduction="none")  # (B, T)
        known = (y != UNKNOWN).to(output.dtype)
        per_example = per.sum(1) / known.sum(1).clamp_min(1.0)  # (B,)
        return masked_mean(per_example, mask)

    def decode(self, output: np.ndarray, track: Track) -> ChordEstimate:
        logits = output.astype(np.float64)  # (K, T)
        prob = np.exp(logits - logits.max(axis=0, keepdims=True))
        prob /= prob.sum(axis=0, keepdims=True)
        k = len(VOCABULARY)
        if prob.shape[1] > 1:
            transition = librosa.sequence.transition_loop(k, self.self_transition)
            classes = librosa.sequence.viterbi(prob, transition)
        else:
            classes = prob.argmax(axis=0)
        fps = self.grid.frames_per_second
        duration = track.duration if len(track.audio) else prob.shape[1] / fps
        return frames_to_intervals(classes, fps, duration)

    def evaluate_track(self, track: Track, estimate: ChordEstimate) -> dict[str, float]:
        ref_intervals, ref_labels = track.get("chords")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = mir_eval.chord.evaluate(
                np.asarray(ref_intervals, dtype=np.float64),
                list(ref_labels),
                np.asarray(estimate.intervals, dtype=np.float64),
                list(estimate.labels),
            )
        return {k: float(v) for k, v in scores.items()}

    def baseline(self, track: Track) -> ChordEstimate:
        end, best = track.duration, "N"
        if self.has_labels(track):
            intervals, labels = track.get("chords")
            intervals = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
            end = max(end, float(intervals[:, 1].max(initial=0.0)))
            held = np.zeros(len(VOCABULARY))  # s per class
            for (a, b), lab in zip(intervals, labels, strict=True):
                c = chord_class(lab)
                if c != UNKNOWN:
                    held[c] += b - a
            if held.any():
                best = VOCABULARY[int(held.argmax())]
        return ChordEstimate(np.array([[0.0, max(end, 1e-3)]]), [best])

    # -- outputs ----------------------------------------------------------------------
    report_columns = ("majmin", "root", "mirex", "seg")

    def expectations(self) -> Expectations:
        keys = {"root", "majmin", "thirds", "mirex", "triads", "seg", "underseg", "overseg"}
        return Expectations(keys=frozenset(keys), metric=self.monitor)

    def write_outputs(self, ctx: OutputContext, estimate: Any) -> list[Any]:
        """``<name>.lab`` (``start end label`` rows, tab separated, s; the format
        `mir_eval.io.load_labeled_intervals` reads) and a JAMS ``chord`` annotation."""
        from pathlib import Path

        from mir.audio import atomic_write
        from mir.outputs import LazyAnnotation

        intervals, labels = estimate
        rows = [
            (float(a), float(b), str(lab)) for (a, b), lab in zip(intervals, labels, strict=True)
        ]
        text = "".join(f"{a:.6f}\t{b:.6f}\t{lab}\n" for a, b, lab in rows)
        atomic_write(ctx.out_dir / f"{self.name}.lab", lambda tmp: Path(tmp).write_text(text))

        def observations() -> Any:
            for a, b, lab in rows:
                yield {"time": a, "duration": b - a, "value": lab, "confidence": None}

        return [LazyAnnotation("chord", self.name, ctx.duration, observations).materialise()]

    def figure(self, track: Track, output: np.ndarray, n_frames: int) -> Any:
        """Class posteriors (K, T), the reference class of each frame in red (unknown
        frames left out)."""
        from mir.callbacks import axes_figure, time_extent

        logits = output[:, :n_frames].astype(np.float64)
        prob = np.exp(logits - logits.max(axis=0, keepdims=True))
        prob /= prob.sum(axis=0, keepdims=True)
        fig, (ax,) = axes_figure(height=4.0)
        extent = time_extent(self.grid, prob.shape[1], len(VOCABULARY))
        ax.imshow(prob, origin="lower", aspect="auto", vmin=0, vmax=1, extent=extent)
        if self.has_labels(track):
            times = np.arange(prob.shape[1]) / self.grid.frames_per_second
            ref = frame_classes(track.get("chords"), times).astype(np.float64)
            ref[ref == UNKNOWN] = np.nan
            ax.plot(times, ref + 0.5, "r.", ms=2, label="reference")
            ax.legend(loc="upper right")
        ax.set_yticks(np.arange(0, len(VOCABULARY), 3) + 0.5, VOCABULARY[::3])
        ax.set(title=f"{self.name}: chord posteriors", xlabel="time (s)")
        return fig

    def output_shape(self) -> str:
        return "(B, 25, T) chord logits: N, then 12 maj and 12 min roots from C"

    def export_labels(self) -> dict[str, Any]:
        return {"classes": list(VOCABULARY), "self_transition": self.self_transition}
