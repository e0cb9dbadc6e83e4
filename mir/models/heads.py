"""Task heads over the shared features.

Each head maps `Features` to one task's output and declares which shared features it
reads (``uses_trunk``, ``uses_stft``) so the model computes only those.

Shapes: B batch, C channels, F frequency bins, T frames, S sources, K classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mir.errors import ConfigError
from mir.models.features import Features
from mir.models.layers import Layout, check_layout, conv_bn_relu
from mir.models.model import Head


class SalienceHead(Head):
    """Salience logits on the f0 grid, after the last layers of deep salience.

    A 3x3 convolution, a wide convolution spanning about an octave in frequency
    (8 channels of 70 bins x 3 frames at 60 bins/octave in Bittner et al. 2017), and a
    1x1 convolution to one map.

    Args:
        in_channels: trunk channels C.
        hidden: channels of the 3x3 layer (0: no 3x3 layer).
        wide_channels: channels of the wide layer (8 in the paper).
        freq_kernel: frequency extent of the wide kernel, in bins (made odd).
        time_kernel: time extent of the wide kernel, in frames (3 in the paper).
        threshold: initial decoding threshold (stored as a buffer).
        layout: ``mir`` (kernels made odd, conv-BN-ReLU) or ``keras``, the published layout
            (the 70x3 kernel kept even with TensorFlow's "same" padding, conv+ReLU then BN;
            see `mir.models.layers.Layout`).
        init: initialise from a pretrained model's salience head: ``pretrained:<name>`` or a
            mir checkpoint path, ``#<head>`` appended when it has several salience heads.
        freeze: with `init`, keep these weights and BN statistics fixed while training.
    """

    uses_trunk = True
    uses_stft = False

    def __init__(
        self,
        in_channels: int,
        hidden: int = 32,
        wide_channels: int = 8,
        freq_kernel: int = 70,
        time_kernel: int = 3,
        threshold: float = 0.3,
        layout: Layout = "mir",
        init: str | None = None,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        check_layout(layout)
        # decoding threshold, tuned on validation by the task; a buffer so it is saved
        self.register_buffer("threshold", torch.tensor(float(threshold)))
        layers: list[nn.Module] = []
        if hidden > 0:  # hidden = 0: the wide layer reads the trunk directly, as published
            layers.append(conv_bn_relu(in_channels, hidden, (3, 3), layout))
            in_channels = hidden
        wide = (freq_kernel, time_kernel)
        if layout == "mir":  # odd kernels, symmetric padding
            wide = (freq_kernel | 1, time_kernel | 1)
        layers += [
            conv_bn_relu(in_channels, wide_channels, wide, layout),
            nn.Conv2d(wide_channels, 1, 1),
        ]
        self.net = nn.Sequential(*layers)
        self.frozen = False
        if init:
            from mir.pretrained import init_from

            init_from(self, init, "head", freeze=freeze)
        elif freeze:
            raise ConfigError("salience head: freeze=true needs init=<pretrained or checkpoint>")

    def train(self, mode: bool = True) -> SalienceHead:
        # a frozen head keeps its BN statistics: it stays in eval mode
        return super().train(mode and not self.frozen)

    def forward(self, feats: Features) -> Tensor:
        """-> (B, F, T) logits."""
        assert feats.trunk is not None
        return self.net(feats.trunk).squeeze(1)


class MaskUNet(Head):
    """Soft masks over the mixture's STFT magnitude from a 2-D U-Net.

    The encoder halves (F, T) with 5x5 stride-2 convolutions, the decoder doubles it back
    with transposed convolutions and concatenated skips (Jansson et al. 2017).

    Args:
        n_sources: number of masks S.
        channels: encoder channels, one per level (Jansson: 16, 32, 64, 128, 256, 512).
        dropout_levels: the first this many decoder levels use 50 % dropout.
        input_scale: the input is log(1 + input_scale * |X|), normalised per example.
    """

    uses_trunk = False
    uses_stft = True

    def __init__(
        self,
        n_sources: int = 2,
        channels: Sequence[int] = (16, 32, 64, 128),
        dropout_levels: int = 0,
        input_scale: float = 100.0,
    ) -> None:
        super().__init__()
        chans = [int(c) for c in channels]
        self.depth = len(chans)
        self.input_scale = float(input_scale)
        self.enc = nn.ModuleList()
        c_in = 1
        for c in chans:
            self.enc.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c, 5, stride=2, padding=2),
                    nn.BatchNorm2d(c),
                    nn.LeakyReLU(0.2, inplace=True),
                )
            )
            c_in = c
        self.dec = nn.ModuleList()
        for level in reversed(range(self.depth)):
            c_out = chans[level - 1] if level > 0 else 16
            c_from = chans[level] if level == self.depth - 1 else chans[level] * 2
            layers: list[nn.Module] = [
                nn.ConvTranspose2d(c_from, c_out, 5, stride=2, padding=2, output_padding=1),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            if self.depth - 1 - level < dropout_levels:
                layers.append(nn.Dropout2d(0.5))
            self.dec.append(nn.Sequential(*layers))
        self.out = nn.Conv2d(16, n_sources, 1)

    def forward(self, feats: Features) -> Tensor:
        """-> (B, S, F', T) masks in [0, 1] over the STFT bins F'."""
        assert feats.stft is not None
        mag = feats.stft.abs()  # (B, F', T)
        x = torch.log1p(self.input_scale * mag)
        x = x / x.flatten(1).amax(1).clamp_min(1e-6)[:, None, None]
        x = x.unsqueeze(1)  # (B, 1, F', T)
        f, t = x.shape[-2:]
        m = 2**self.depth
        x = F.pad(x, (0, (-t) % m, 0, (-f) % m))
        skips = []
        for enc in self.enc:
            x = enc(x)
            skips.append(x)
        for i, dec in enumerate(self.dec):
            if i > 0:
                x = torch.cat([x, skips[self.depth - 1 - i]], dim=1)
            x = dec(x)
        return torch.sigmoid(self.out(x))[..., :f, :t]


class OnsetCRNN(Head):
    """Frame-wise event activations from trunk features: convolutions, then a BiGRU.

    After Vogl et al. (2017): convolutional blocks with max-pooling over frequency, the
    frequency axis flattened into features, a bidirectional recurrent layer, and a
    per-class sigmoid output per frame.

    Args:
        in_channels: trunk channels C.
        n_bins: frequency bins F of the trunk features.
        n_classes: output classes K.
        conv_channels: channels of the two convolutional blocks.
        pool: frequency max-pool factor after each block.
        hidden: GRU hidden size per direction.
    """

    uses_trunk = True
    uses_stft = False

    def __init__(
        self,
        in_channels: int,
        n_bins: int,
        n_classes: int,
        conv_channels: int = 32,
        pool: int = 4,
        hidden: int = 64,
    ) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.MaxPool2d((pool, 1)),
            conv_bn_relu(in_channels, conv_channels, (3, 3)),
            nn.MaxPool2d((pool, 1)),
            conv_bn_relu(conv_channels, conv_channels, (3, 3)),
            nn.MaxPool2d((pool, 1)),
        )
        f = n_bins // pool // pool // pool
        self.gru = nn.GRU(conv_channels * f, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, n_classes)

    def forward(self, feats: Features) -> Tensor:
        """-> (B, K, T) logits."""
        assert feats.trunk is not None
        x = self.conv(feats.trunk)  # (B, C, F/p^2, T)
        x = x.flatten(1, 2).transpose(1, 2)  # (B, T, C*F/p^2)
        x, _ = self.gru(x)
        return self.out(x).transpose(1, 2)


class TagCNN(Head):
    """Track-level multi-label logits: a fully convolutional tagger (Choi et al. 2016).

    Blocks of 3x3 convolution and 2x2 max-pooling over the trunk features, then max and
    mean pooling over what is left of (F, T), and a linear layer to the tags.

    Args:
        in_channels: trunk channels C.
        n_tags: vocabulary size K.
        channels: channels of each block.
    """

    uses_trunk = True
    uses_stft = False

    def __init__(self, in_channels: int, n_tags: int, channels: Sequence[int] = (32, 64, 64)):
        super().__init__()
        blocks: list[nn.Module] = [nn.MaxPool2d((4, 1))]  # pitch detail is not needed
        c = in_channels
        for c_out in channels:
            blocks += [conv_bn_relu(c, int(c_out), (3, 3)), nn.MaxPool2d(2, ceil_mode=True)]
            c = int(c_out)
        self.conv = nn.Sequential(*blocks)
        self.out = nn.Linear(2 * c, n_tags)

    def forward(self, feats: Features) -> Tensor:
        """-> (B, K) logits."""
        assert feats.trunk is not None
        x = self.conv(feats.trunk).flatten(2)  # (B, C, F'*T')
        pooled = torch.cat([x.amax(-1), x.mean(-1)], dim=1)
        return self.out(pooled)
