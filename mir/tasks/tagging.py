"""Music auto-tagging: track-level multi-label scores.

Two heads over the shared trunk (``arch``): ``fcn``, the fully convolutional tagger of
Choi et al., "Automatic Tagging Using Deep Convolutional Neural Networks" (ISMIR 2016),
`mir.models.heads.TagCNN`; and ``shortchunk_res``, the short-chunk residual CNN of Won et
al., "Evaluation of CNN-based Automatic Music Tagging Models" (SMC 2020),
`mir.models.tagging.ShortChunkResNet`. Both map (B, C, F, T) trunk features to (B, K)
logits; the experiments ``choi_fcn`` and ``won_shortchunk`` set each paper's excerpt
length (``data.crop_seconds``) and inference chunk (``model.chunk_seconds``).

Conventions:
    * The vocabulary `tags` fixes the output order; the ``tags`` annotation lists the tags present
      (strings outside the vocabulary are ignored); None means the track is untagged.
    * Training excerpts carry the whole track's tags; full-track scores average the
      logits of the inference chunks, weighted by their length.
    * Evaluation is over the set of tracks, not per track: macro ROC-AUC and PR-AUC
      (average precision) over the tags that have both positive and negative tracks,
      and per-tag ROC-AUC as ``<tag>/ROC-AUC``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from mir.data.track import Track
from mir.errors import ConfigError
from mir.grid import Window
from mir.models.features import Features
from mir.models.heads import TagCNN
from mir.models.model import Head
from mir.models.tagging import ShortChunkResNet
from mir.tasks.base import Expectations, OutputContext, Task, masked_mean

ARCHS = ("fcn", "shortchunk_res")
"""Tagging heads: Choi et al.'s FCN, Won et al.'s short-chunk ResNet."""


class TaggingTask(Task):
    """Multi-label tagging over the vocabulary `tags`.

    Args:
        name: head and metric prefix.
        weight: loss weight.
        tags: the tag vocabulary.
        arch: ``fcn`` (Choi et al. 2016) or ``shortchunk_res`` (Won et al. 2020).
        channels: channels of the tagger's convolutional (``fcn``) or residual
            (``shortchunk_res``) blocks.
        freq_pool: ``shortchunk_res``: frequency max-pool before the first block.
        dropout: ``shortchunk_res``: dropout before the output layer.
    """

    output_kind = "track"
    target_kind = "track"
    monitor = "ROC-AUC"

    def __init__(
        self,
        tags: Sequence[str],
        name: str = "tagging",
        weight: float = 1.0,
        arch: str = "fcn",
        channels: Sequence[int] = (32, 64, 64),
        freq_pool: int = 3,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(name, weight)
        if not tags:
            raise ConfigError(f"{name}: the data config has no tag vocabulary (data.tags)")
        if arch not in ARCHS:
            raise ConfigError(f"{name}: arch must be one of {', '.join(ARCHS)}, got {arch!r}")
        self.arch = arch
        self.freq_pool = int(freq_pool)
        self.dropout = float(dropout)
        self.tags = [str(t) for t in tags]
        self.index = {t: i for i, t in enumerate(self.tags)}
        self.channels = tuple(int(c) for c in channels)

    def build_head(self, trunk_channels: int) -> Head:
        if self.arch == "shortchunk_res":
            return ShortChunkResNet(
                trunk_channels, len(self.tags), self.channels, self.freq_pool, self.dropout
            )
        return TagCNN(trunk_channels, len(self.tags), self.channels)

    def has_labels(self, track: Track) -> bool:
        return track.has("tags")

    def multi_hot(self, track: Track) -> np.ndarray:
        y = np.zeros(len(self.tags), dtype=np.float32)
        for t in track.get("tags", ()):
            if t in self.index:
                y[self.index[t]] = 1.0
        return y

    def targets(self, track: Track, window: Window) -> np.ndarray:
        return self.multi_hot(track)

    def loss(self, output: Tensor, target: Tensor, mask: Tensor, feats: Features) -> Tensor:
        per = F.binary_cross_entropy_with_logits(output, target, reduction="none").mean(1)
        return masked_mean(per, mask)

    def decode(self, output: np.ndarray, track: Track) -> np.ndarray:
        """(K,) logits -> (K,) scores in [0, 1]."""
        return 1.0 / (1.0 + np.exp(-output.astype(np.float64)))

    def evaluate_track(self, track: Track, estimate: np.ndarray) -> dict[str, float]:
        """Per track, only the ranking: is the best-scored tag present (precision at 1)?"""
        y = self.multi_hot(track)
        return {"P@1": float(y[int(np.argmax(estimate))])}

    set_level_summary = True

    def summarise(
        self, tracks: list[Track], estimates: list[Any], per_track: list[dict[str, float]]
    ) -> dict[str, float]:
        """P@1's mean, and the set-level macro ROC-AUC and PR-AUC and per-tag ROC-AUC."""
        from sklearn.metrics import average_precision_score, roc_auc_score

        pairs = [(t, e) for t, e in zip(tracks, estimates, strict=True) if self.has_labels(t)]
        if not pairs:
            return {}
        y = np.stack([self.multi_hot(t) for t, _ in pairs])  # (n_tracks, K)
        s = np.stack([np.asarray(e, dtype=np.float64) for _, e in pairs])
        valid = [k for k in range(len(self.tags)) if 0 < y[:, k].sum() < len(y)]
        summary: dict[str, float] = {"P@1": float(np.mean([p["P@1"] for p in per_track]))}
        if valid:
            summary["ROC-AUC"] = float(roc_auc_score(y[:, valid], s[:, valid], average="macro"))
            summary["PR-AUC"] = float(
                average_precision_score(y[:, valid], s[:, valid], average="macro")
            )
            for k in valid:
                summary[f"{self.tags[k]}/ROC-AUC"] = float(roc_auc_score(y[:, k], s[:, k]))
        else:
            summary["ROC-AUC"] = float("nan")
            summary["PR-AUC"] = float("nan")
        return summary

    def baseline(self, track: Track) -> np.ndarray:
        """Prior-only scores: the same for every track (AUC 0.5 by construction)."""
        return np.full(len(self.tags), 0.5)

    # -- outputs ------------------------------------------------------------------------
    def expectations(self) -> Expectations:
        # ROC-AUC is set-level: on the few test tracks it is too noisy to judge
        keys = frozenset({"ROC-AUC", "PR-AUC", "P@1"})
        return Expectations(keys=keys, metric="ROC-AUC", held_out=True)

    def write_outputs(self, ctx: OutputContext, estimate: Any) -> list[Any]:
        """``<name>.json`` (the top ``ctx.top_k`` tags and every score) and a JAMS
        ``tag_open`` annotation over the whole track."""
        from mir import outputs

        outputs.write_tags(ctx.out_dir / f"{self.name}.json", self.tags, estimate, top_k=ctx.top_k)
        return [outputs.tags_annotation(self.name, self.tags, estimate, ctx.duration)]

    def figure(self, track: Track, output: np.ndarray, n_frames: int) -> Any:
        """Tag scores (track level), the track's true tags in red."""
        from mir.callbacks import axes_figure

        scores = np.asarray(self.decode(output, track), dtype=np.float64)
        top = np.argsort(-scores)[:20]
        fig, (ax,) = axes_figure(height=0.25 * len(top) + 1.0)
        true = set(track.get("tags", ()))
        colors = ["r" if self.tags[i] in true else "C0" for i in top]
        ax.barh(np.arange(len(top))[::-1], scores[top], color=colors)
        ax.set_yticks(np.arange(len(top))[::-1], [self.tags[i] for i in top])
        ax.set(xlim=(0, 1), title=f"{self.name}: top scores (red: true tags)")
        return fig

    def output_shape(self) -> str:
        return "(B, K) tag logits"

    def export_labels(self) -> dict[str, Any]:
        return {"tags": list(self.tags)}
