"""Building blocks shared by the trunk and the heads.

Shapes: B batch, C channels, H harmonics, F frequency bins, T frames, K classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from mir.errors import ConfigError
from mir.models.model import Trunk

Layout = Literal["mir", "keras"]
"""Block layout: ``mir`` = conv (no bias), BN (eps 1e-5), ReLU, odd kernels; ``keras`` = the
published deep-salience layout (Bittner et al. 2017, Keras 2): conv with bias and ReLU, then BN
(eps 1e-3), TensorFlow "same" padding (an even kernel pads one more bin after than before)."""

LAYOUTS = ("mir", "keras")
KERAS_BN_EPS = 1e-3


def check_layout(layout: str) -> None:
    """Raise `ConfigError` (one line) for an unknown layout."""
    if layout not in LAYOUTS:
        raise ConfigError(f"layout={layout!r}: expected one of {LAYOUTS}")


class SameConv2d(nn.Conv2d):
    """`nn.Conv2d` with TensorFlow's "same" padding: a kernel of k pads (k - 1) // 2 before
    and k // 2 after on each axis, so even kernels (the published 70-bin one) keep the size."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int], bias: bool = True):
        super().__init__(c_in, c_out, kernel, padding=0, bias=bias)
        (kf, kt) = kernel
        self.same_pad = ((kt - 1) // 2, kt // 2, (kf - 1) // 2, kf // 2)  # F.pad: T then F

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, F, T) -> (B, C', F, T)."""
        return super().forward(F.pad(x, self.same_pad))


def conv_bn_relu(
    c_in: int, c_out: int, kernel: tuple[int, int], layout: Layout = "mir"
) -> nn.Sequential:
    """Same-padded 2-D convolution over (F, T) with batch norm and ReLU.

    ``mir``: conv (no bias, odd kernels), BN, ReLU. ``keras``: conv with bias, ReLU, BN with
    Keras' epsilon, any kernel size with TensorFlow's "same" padding.
    """
    check_layout(layout)
    if layout == "keras":
        return nn.Sequential(
            SameConv2d(c_in, c_out, kernel, bias=True),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(c_out, eps=KERAS_BN_EPS),
        )
    pad = (kernel[0] // 2, kernel[1] // 2)
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=pad, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ConvTrunk(Trunk):
    """Shared convolutional trunk over the HCQT, keeping the (F, T) resolution.

    The harmonics are the input channels, so a small kernel already relates each bin to
    its harmonics (Bittner et al. 2017).

    Args:
        in_channels: number of HCQT harmonics H.
        channels: output channels of each layer.
        kernels: (F, T) kernel size of each layer (same length as `channels`).
        layout: ``mir`` (default) or ``keras``, the published layer order (see `Layout`).
        init: initialise from a pretrained model's trunk: ``pretrained:<name>`` or the path of
            a mir checkpoint (`mir.pretrained.init_from`); None: random initialisation.
        freeze: with `init`, keep these weights and BN statistics fixed while training.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int] = (32, 32, 32),
        kernels: Sequence[Sequence[int]] = ((5, 5), (5, 5), (3, 3)),
        layout: Layout = "mir",
        init: str | None = None,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        if len(channels) != len(kernels):
            raise ValueError("trunk: `channels` and `kernels` must have the same length")
        check_layout(layout)
        eps = KERAS_BN_EPS if layout == "keras" else 1e-5
        layers: list[nn.Module] = [nn.BatchNorm2d(in_channels, eps=eps)]
        c = in_channels
        for c_out, k in zip(channels, kernels, strict=True):
            layers.append(conv_bn_relu(c, c_out, (int(k[0]), int(k[1])), layout))
            c = c_out
        self.net = nn.Sequential(*layers)
        self.out_channels = c
        self.frozen = False
        if init:
            from mir.pretrained import init_from

            init_from(self, init, "trunk", freeze=freeze)
        elif freeze:
            raise ConfigError("trunk: freeze=true needs init=<pretrained or checkpoint>")

    def train(self, mode: bool = True) -> ConvTrunk:
        # a frozen trunk keeps its BN statistics: it stays in eval mode
        return super().train(mode and not self.frozen)

    def forward(self, hcqt: Tensor) -> Tensor:
        """(B, H, F, T) -> (B, C, F, T)."""
        return self.net(hcqt)
