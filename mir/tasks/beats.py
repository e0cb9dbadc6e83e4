"""Beat and downbeat tracking: frame activations, decoded to beat and downbeat times.

After Vogl et al., "Drum Transcription via Joint Beat and Drum Modeling Using
Convolutional Recurrent Neural Networks" (ISMIR 2017): the same CRNN head as drums, with
one beat and one downbeat output, so both tasks can share the trunk.

Conventions:
    * Outputs (K = 2, T): channel 0 is the beat, channel 1 the downbeat activation.
    * A track is labelled when it has ``beats`` (`Track.has`). When it has beats but
      no ``downbeats``, the downbeat target row is -1 ("unknown") and the loss
      gives those frames zero weight; an empty downbeat array is a real "none" label.
    * Targets: 1 at the frame nearest each beat (downbeat) and `widen` at its two
      neighbours (`mir.tasks.drums.onset_targets`).
    * Decoding (``decoder``): ``dp`` runs the dynamic-programming beat tracker of Ellis
      (2007), `librosa.beat.beat_track`, over the beat activation as its onset envelope
      (no beats when the activation never reaches `min_activation`); ``peaks`` picks
      local maxima >= `threshold` at least `min_gap` s apart (0.25 s ~ 240 BPM).
      Downbeats are peaks of the downbeat activation (>= `threshold`, at least
      `downbeat_min_gap` s apart), each snapped to the nearest decoded beat.
    * Evaluation: `mir_eval.beat.evaluate` on beats, keys unchanged (F-measure with a
      70 ms window, Cemgil, Goto, P-score, continuity, Information gain), plus
      ``downbeat/F-measure`` (`mir_eval.beat.f_measure`) where the reference has
      downbeats (NaN otherwise, ignored in the mean). Both discard the first
      `min_beat_time` s (5 s, the MIREX convention of `mir_eval.beat.trim_beats`).
    * Baseline: an isochronous 120 BPM grid from 0 s with a downbeat every 4 beats, the
      stronger of the trivial estimates (no beats scores F = 0 on every track).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import librosa
import mir_eval
import numpy as np
from torch import Tensor

from mir.data.track import Track
from mir.grid import Window
from mir.models.features import Features
from mir.models.heads import OnsetCRNN
from mir.models.model import Head
from mir.tasks.base import Expectations, OutputContext, Task, masked_weighted_bce, nearest_index
from mir.tasks.drums import onset_targets, pick_peaks

UNKNOWN = -1.0
"""Target value of frames whose label is unknown (downbeats of a track without them)."""


class BeatEstimate(NamedTuple):
    """Decoded beats and downbeats of one track, times in s."""

    beats: np.ndarray
    downbeats: np.ndarray


def snap_to_beats(times: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """Each time moved to its nearest beat, duplicates dropped (s, sorted)."""
    if len(times) == 0 or len(beats) == 0:
        return np.zeros(0)
    return np.unique(beats[nearest_index(beats, times)])


class BeatsTask(Task):
    """Frame-wise beat and downbeat activations, decoded to times.

    Args:
        name: head and metric prefix.
        weight: loss weight.
        decoder: ``dp`` (Ellis' dynamic programming over the activation) or ``peaks``.
        threshold: peak-picking threshold on the sigmoid activation (beats with
            ``decoder=peaks``, and downbeats).
        min_gap: minimum inter-beat interval of peak picking, in s.
        downbeat_min_gap: minimum inter-downbeat interval, in s.
        min_activation: ``dp`` returns no beats when the activation stays below this.
        start_bpm: tempo prior centre of the ``dp`` tracker, in BPM.
        tightness: how strictly the ``dp`` tracker keeps its tempo.
        min_beat_time: beats before this time (s) are not evaluated (mir_eval default).
        widen: target value at the frames beside a beat.
        pos_weight: weight of positive frames in the BCE (beats are sparse).
        conv_channels, hidden: head sizes.
    """

    monitor = "F-measure"

    def __init__(
        self,
        name: str = "beats",
        weight: float = 1.0,
        decoder: Literal["dp", "peaks"] = "dp",
        threshold: float = 0.5,
        min_gap: float = 0.25,
        downbeat_min_gap: float = 0.5,
        min_activation: float = 0.1,
        start_bpm: float = 120.0,
        tightness: float = 100.0,
        min_beat_time: float = 5.0,
        widen: float = 0.5,
        pos_weight: float = 5.0,
        conv_channels: int = 32,
        hidden: int = 64,
    ) -> None:
        super().__init__(name, weight)
        if decoder not in ("dp", "peaks"):
            raise ValueError(f"{name}: decoder must be 'dp' or 'peaks', got {decoder!r}")
        self.decoder = decoder
        self.threshold = float(threshold)
        self.min_gap = float(min_gap)
        self.downbeat_min_gap = float(downbeat_min_gap)
        self.min_activation = float(min_activation)
        self.start_bpm = float(start_bpm)
        self.tightness = float(tightness)
        self.min_beat_time = float(min_beat_time)
        self.widen = float(widen)
        self.pos_weight = float(pos_weight)
        self.conv_channels = int(conv_channels)
        self.hidden = int(hidden)

    def build_head(self, trunk_channels: int) -> Head:
        return OnsetCRNN(trunk_channels, self.grid.n_bins, 2, self.conv_channels, 4, self.hidden)

    def has_labels(self, track: Track) -> bool:
        return track.has("beats")

    def targets(self, track: Track, window: Window) -> np.ndarray:
        """(2, T) targets: beats, downbeats; the downbeat row is -1 when unknown."""
        if not track.has("beats"):
            return np.zeros((2, window.n_frames), dtype=np.float32)
        fps = self.grid.frames_per_second
        beats = np.asarray(track.get("beats"), dtype=np.float64)
        if not track.has("downbeats"):
            out = onset_targets([beats, np.zeros(0)], fps, window, self.widen)
            out[1] = UNKNOWN
            return out
        downbeats = np.asarray(track.get("downbeats"), dtype=np.float64)
        return onset_targets([beats, downbeats], fps, window, self.widen)

    def loss(self, output: Tensor, target: Tensor, mask: Tensor, feats: Features) -> Tensor:
        """Weighted BCE over known frames; (B, 2, T) logits and targets, (B,) mask."""
        return masked_weighted_bce(output, target, mask, self.pos_weight)

    def decode(self, output: np.ndarray, track: Track) -> BeatEstimate:
        act = 1.0 / (1.0 + np.exp(-output.astype(np.float64)))  # (2, T)
        beats = self.decode_beats(act[0])
        fps = self.grid.frames_per_second
        peaks = pick_peaks(act[1], fps, self.threshold, min_gap=self.downbeat_min_gap)
        return BeatEstimate(beats, snap_to_beats(peaks, beats))

    def decode_beats(self, act: np.ndarray) -> np.ndarray:
        """Beat times (s) from a beat activation (T,) in [0, 1]."""
        fps = self.grid.frames_per_second
        if self.decoder == "peaks":
            return pick_peaks(act, fps, self.threshold, min_gap=self.min_gap)
        # librosa's tracker fails (IndexError) on a one-frame clip: no beats there
        if act.size < 2 or act.max() < self.min_activation:
            return np.zeros(0)
        _, beats = librosa.beat.beat_track(
            onset_envelope=act,
            sr=self.grid.sr,
            hop_length=self.grid.hop,
            start_bpm=self.start_bpm,
            tightness=self.tightness,
            units="time",
        )
        return np.asarray(beats, dtype=np.float64)

    def evaluate_track(self, track: Track, estimate: BeatEstimate) -> dict[str, float]:
        assert track.has("beats")
        ref = np.asarray(track.get("beats"), dtype=np.float64)
        est = np.asarray(estimate.beats, dtype=np.float64)
        scores = mir_eval.beat.evaluate(ref, est, min_beat_time=self.min_beat_time)
        out = {k: float(v) for k, v in scores.items()}
        out["downbeat/F-measure"] = float("nan")
        if track.has("downbeats"):
            trim = mir_eval.beat.trim_beats
            ref_db = trim(np.asarray(track.get("downbeats"), dtype=np.float64), self.min_beat_time)
            est_db = trim(np.asarray(estimate.downbeats, dtype=np.float64), self.min_beat_time)
            out["downbeat/F-measure"] = float(mir_eval.beat.f_measure(ref_db, est_db))
        return out

    def baseline(self, track: Track) -> BeatEstimate:
        beats = np.arange(0.0, track.duration, 0.5)  # 120 BPM from 0 s
        return BeatEstimate(beats, beats[::4].copy())

    # -- outputs ------------------------------------------------------------------------
    def expectations(self) -> Expectations:
        keys = {"F-measure", "Cemgil", "Cemgil Best Metric Level", "Goto", "P-score"}
        keys |= {
            f"{m} Metric Level {k}" for m in ("Correct", "Any") for k in ("Continuous", "Total")
        }
        keys |= {"Information gain", "downbeat/F-measure"}
        return Expectations(keys=frozenset(keys), metric=self.monitor)

    def write_outputs(self, ctx: OutputContext, estimate: Any) -> list[Any]:
        """``<name>.beats.txt`` and ``<name>.downbeats.txt`` (one time per line) and a JAMS
        ``beat`` annotation valued by metrical position (1 = downbeat)."""
        from mir import outputs

        beats, downbeats = estimate  # BeatEstimate(beats, downbeats), times in s
        outputs.write_beats(ctx.out_dir / f"{self.name}.beats.txt", beats)
        outputs.write_beats(ctx.out_dir / f"{self.name}.downbeats.txt", downbeats)
        return [outputs.beats_annotation(self.name, beats, ctx.duration, downbeats)]

    def figure(self, track: Track, output: np.ndarray, n_frames: int) -> Any:
        """Beat and downbeat activations against the reference."""
        from mir.callbacks import activations_figure

        refs = None
        if track.has("beats"):
            down = track.get("downbeats", np.zeros(0))
            refs = [np.asarray(track.get("beats"), float), np.asarray(down, float)]
        return activations_figure(
            self.name, self.grid, output, n_frames, ["beat", "downbeat"], refs
        )

    def output_shape(self) -> str:
        return "(B, 2, T) beat and downbeat logits"

    def export_labels(self) -> dict[str, Any]:
        return {"threshold": self.threshold}
