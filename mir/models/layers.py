"""Building blocks shared by the trunk and the heads.

Shapes: B batch, C channels, H harmonics, F frequency bins, T frames, K classes.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


def conv_bn_relu(c_in: int, c_out: int, kernel: tuple[int, int]) -> nn.Sequential:
    """Same-padded 2-D convolution over (F, T), batch norm, ReLU."""
    pad = (kernel[0] // 2, kernel[1] // 2)
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=pad, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ConvTrunk(nn.Module):
    """Shared convolutional trunk over the HCQT, keeping the (F, T) resolution.

    The harmonics are the input channels, so a small kernel already relates each bin to
    its harmonics (Bittner et al. 2017).

    Args:
        in_channels: number of HCQT harmonics H.
        channels: output channels of each layer.
        kernels: (F, T) kernel size of each layer (same length as `channels`).
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int] = (32, 32, 32),
        kernels: Sequence[Sequence[int]] = ((5, 5), (5, 5), (3, 3)),
    ) -> None:
        super().__init__()
        if len(channels) != len(kernels):
            raise ValueError("trunk: `channels` and `kernels` must have the same length")
        layers: list[nn.Module] = [nn.BatchNorm2d(in_channels)]
        c = in_channels
        for c_out, k in zip(channels, kernels, strict=True):
            layers.append(conv_bn_relu(c, c_out, (int(k[0]), int(k[1]))))
            c = c_out
        self.net = nn.Sequential(*layers)
        self.out_channels = c

    def forward(self, hcqt: Tensor) -> Tensor:
        """(B, H, F, T) -> (B, C, F, T)."""
        return self.net(hcqt)
