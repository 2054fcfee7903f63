"""MobileNet v1, written from the paper: Howard et al., "MobileNets: Efficient Convolutional Neural
Networks for Mobile Vision Applications", 2017 (Table 1, width multiplier 1.0, 224x224).

The network is a 3x3/2 standard convolution followed by 13 depthwise-separable blocks. A block
factorises a 3x3 convolution into a 3x3 depthwise convolution (one filter per channel: spatial
filtering) and a 1x1 pointwise convolution (channel mixing), which costs about 1/9 of the
multiply-adds of the full convolution it replaces. With 1000 classes: 4.23 M parameters and
569 M multiply-adds (convolutions and the classifier), as in the paper's Table 4.

Torchvision does not ship v1, hence this file.
"""

from __future__ import annotations

import torch
from torch import nn

from edgecnn.zoo.init import init_like_torchvision_mobilenets
from edgecnn.zoo.registry import register_model

# Table 1: (output channels, stride of the depthwise conv) for the 13 depthwise-separable blocks.
# Spatial downsampling happens in the depthwise convs; the pointwise convs change the width.
_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    # Table 1 prints this last depthwise conv as "s2", but the feature map stays 7x7 in the
    # table (and in every reference implementation), so its stride is 1.
    (1024, 1),
)
_STEM_CHANNELS = 32


class ConvBNReLU(nn.Sequential):
    """Convolution, batch norm, ReLU: the paper puts BN and ReLU after every convolution."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__(
            # No bias: the following batch norm has its own shift.
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            # Plain ReLU as in the paper (ReLU6 came with MobileNet v2's quantization-friendly setup).
            nn.ReLU(inplace=True),
        )


class DepthwiseSeparable(nn.Sequential):
    """Figure 3 (right): 3x3 depthwise conv + BN + ReLU, then 1x1 pointwise conv + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.depthwise = ConvBNReLU(in_channels, in_channels, 3, stride=stride, groups=in_channels)
        self.pointwise = ConvBNReLU(in_channels, out_channels, 1)


class MobileNetV1(nn.Module):
    """MobileNet v1 at width multiplier 1.0."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [ConvBNReLU(in_channels, _STEM_CHANNELS, 3, stride=2)]
        channels = _STEM_CHANNELS
        for out_channels, stride in _BLOCKS:
            layers.append(DepthwiseSeparable(channels, out_channels, stride))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        # The paper's 7x7 average pool; adaptive so inputs other than 224 work too.
        self.pool = nn.AdaptiveAvgPool2d(1)
        # The paper trains with little regularisation (small nets overfit less); dropout is off
        # unless asked for.
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(channels, num_classes)
        init_like_torchvision_mobilenets(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(self.pool(x), 1)
        return self.classifier(self.dropout(x))


@register_model(
    "mobilenet_v1",
    family="lightweight",
    input_size=(3, 224, 224),
    # Every convolution is padded, so the net runs on any side down to 1 pixel; 32 is its total
    # stride, the smallest side at which every stage still sees at least one real pixel (the same
    # floor the other ImageNet nets of the zoo use).
    min_size=32,
    reference="Howard et al. 2017, MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
)
def mobilenet_v1(num_classes: int = 1000) -> nn.Module:
    """MobileNet v1, width 1.0 (4.23 M parameters, 569 M multiply-adds at 224 with 1000 classes)."""
    return MobileNetV1(num_classes=num_classes)


__all__ = ["MobileNetV1", "mobilenet_v1"]
