"""Auto-tagging heads beyond the fully convolutional tagger (`mir.models.heads.TagCNN`).

Shapes: B batch, C channels, F frequency bins, T frames, K tags.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from mir.models.features import Features
from mir.models.model import Head


class ResBlock2d(nn.Module):
    """3x3 conv, BN, ReLU, 3x3 conv, BN, plus a shortcut; ReLU; 2x2 max pooling.

    The shortcut is the identity when the channel count is kept and a 3x3 conv with BN
    when it changes (as in Won et al.'s ``Res_2d``, which halves (F, T) with a stride-2
    first conv where this block max-pools after the sum).
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = (
            nn.Identity()
            if c_in == c_out
            else nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)
            )
        )
        # ceil mode: an odd axis keeps its last bin, an axis of 1 stays 1 (any chunk fits)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, F, T) -> (B, C_out, ceil(F/2), ceil(T/2))."""
        return self.pool(F.relu(self.body(x) + self.shortcut(x)))


class ShortChunkResNet(Head):
    """Track-level multi-label logits from a short-chunk residual CNN.

    After Won et al., "Evaluation of CNN-based Automatic Music Tagging Models" (SMC 2020),
    "short-chunk CNN + Res": seven residual 3x3 blocks, each halving (F, T) with 2x2 max
    pooling (128, 128, 256, 256, 256, 256, 512 channels in the paper), global max pooling
    over what is left of (F, T), then a dense layer with BN, ReLU and 50 % dropout, and a
    dense layer to the tags. It is trained on short chunks (3.69 s in the paper) and a
    track's scores average its chunks' (`mir.inference.infer_track`).

    Here it reads the shared trunk's HCQT features instead of a mel spectrogram; a
    frequency max-pool by `freq_pool` first brings the 360 HCQT bins near the paper's
    128 mel bands (pitch detail is not needed for tags).

    Args:
        in_channels: trunk channels C.
        n_tags: vocabulary size K.
        channels: channels of each residual block (7 in the paper).
        freq_pool: frequency max-pool factor before the first block (1 = none).
        dropout: dropout before the output layer.
    """

    uses_trunk = True
    uses_stft = False

    def __init__(
        self,
        in_channels: int,
        n_tags: int,
        channels: Sequence[int] = (128, 128, 256, 256, 256, 256, 512),
        freq_pool: int = 3,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if not channels:
            raise ValueError("ShortChunkResNet: `channels` needs at least one block")
        self.freq_pool = int(freq_pool)
        blocks = []
        c = in_channels
        for c_out in channels:
            blocks.append(ResBlock2d(c, int(c_out)))
            c = int(c_out)
        self.blocks = nn.Sequential(*blocks)
        self.dense = nn.Sequential(
            nn.Linear(c, c), nn.BatchNorm1d(c), nn.ReLU(inplace=True), nn.Dropout(dropout)
        )
        self.out = nn.Linear(c, n_tags)

    def forward(self, feats: Features) -> Tensor:
        """-> (B, K) logits."""
        assert feats.trunk is not None
        x = feats.trunk
        if self.freq_pool > 1:
            x = F.max_pool2d(x, (self.freq_pool, 1), ceil_mode=True)  # (B, C, F/p, T)
        x = self.blocks(x)  # (B, C', F', T')
        x = x.flatten(2).amax(-1)  # (B, C')
        return self.out(self.dense(x))
