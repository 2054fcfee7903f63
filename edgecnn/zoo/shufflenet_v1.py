"""ShuffleNet v1, written from the paper: Zhang, Zhou, Lin & Sun, "ShuffleNet: An Extremely
Efficient Convolutional Neural Network for Mobile Devices", CVPR 2018 (arXiv 2017; Table 1,
Figure 2, scale 1x), checked against megvii's reference implementation.

The expensive part of a MobileNet-style block is the dense 1x1 convolution. ShuffleNet makes the
1x1 convolutions grouped (g groups), which divides their cost by g, and puts a channel shuffle
after the first one so that information still flows between groups; otherwise each output group
would only ever see one input group through the whole stack.

Torchvision only ships ShuffleNet v2, hence this file.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgecnn.zoo.init import init_like_torchvision_mobilenets
from edgecnn.zoo.registry import register_model

_STEM_CHANNELS = 24
_STAGE_UNITS = (4, 8, 4)  # stages 2, 3, 4 (the first unit of each has stride 2)
# Table 1, 1x: output channels of stages 2-4 for each number of groups. The widths grow with g so
# that every variant costs about 140 M multiply-adds.
_STAGE_CHANNELS = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Figure 1(c): reshape channels to (groups, channels/groups), transpose, flatten back.

    Channel j of group i moves to position j * groups + i, so each group of the next grouped
    convolution gets channels from every group of the previous one. Exports to ONNX as Reshape,
    Transpose, Reshape; batch and spatial sizes are read from the tensor's shape at run time, so a
    dynamic batch stays dynamic.
    """
    batch, _, height, width = x.shape
    return x.reshape(batch, groups, -1, height, width).transpose(1, 2).reshape(x.shape)


class ShuffleUnit(nn.Module):
    """Figure 2 (b) for stride 1 and (c) for stride 2.

    Stride 1: 1x1 GConv + BN + ReLU, shuffle, 3x3 DWConv + BN, 1x1 GConv + BN, add the input, ReLU.
    Stride 2: the same branch with a stride-2 depthwise conv, concatenated with a 3x3/2 average
    pool of the input, then ReLU. Concatenation widens the output cheaply, so the branch only
    produces `out_channels - in_channels` maps.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int, stride: int, group_first_conv: bool = True):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.stride = stride
        branch_channels = out_channels - in_channels if stride == 2 else out_channels
        # "we set the number of bottleneck channels to 1/4 of the output channels"
        bottleneck = out_channels // 4
        # The paper does not group the very first 1x1 conv of stage 2: its input has only 24
        # channels, too few to split into groups.
        first_groups = groups if group_first_conv else 1
        # The shuffle only matters after a grouped conv; after a dense one it would be a fixed
        # permutation of channels that each already see every input.
        self.shuffle_groups = first_groups

        self.compress = nn.Conv2d(in_channels, bottleneck, 1, groups=first_groups, bias=False)
        self.compress_bn = nn.BatchNorm2d(bottleneck)
        self.depthwise = nn.Conv2d(bottleneck, bottleneck, 3, stride=stride, padding=1, groups=bottleneck, bias=False)
        # No ReLU after the depthwise conv: the paper found it hurts ("Xception" shows the same).
        self.depthwise_bn = nn.BatchNorm2d(bottleneck)
        self.expand = nn.Conv2d(bottleneck, branch_channels, 1, groups=groups, bias=False)
        self.expand_bn = nn.BatchNorm2d(branch_channels)
        # The stride-2 shortcut; same output size as the padded stride-2 depthwise conv at any input.
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = F.relu(self.compress_bn(self.compress(x)))
        if self.shuffle_groups > 1:
            branch = channel_shuffle(branch, self.shuffle_groups)
        branch = self.depthwise_bn(self.depthwise(branch))
        branch = self.expand_bn(self.expand(branch))
        if self.stride == 1:
            return F.relu(branch + x)
        return F.relu(torch.cat([self.shortcut(x), branch], dim=1))


class ShuffleNetV1(nn.Module):
    """ShuffleNet v1 at scale 1x with `groups` groups in its pointwise convolutions."""

    def __init__(self, groups: int = 3, num_classes: int = 1000, in_channels: int = 3):
        super().__init__()
        if groups not in _STAGE_CHANNELS:
            raise ValueError(f"groups must be one of {sorted(_STAGE_CHANNELS)}, got {groups}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, _STEM_CHANNELS, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(_STEM_CHANNELS),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        channels = _STEM_CHANNELS
        stages = []
        for stage_index, (units, out_channels) in enumerate(zip(_STAGE_UNITS, _STAGE_CHANNELS[groups])):
            stage = []
            for unit_index in range(units):
                first = unit_index == 0
                stage.append(
                    ShuffleUnit(
                        channels,
                        out_channels,
                        groups,
                        stride=2 if first else 1,
                        group_first_conv=not (stage_index == 0 and first),
                    )
                )
                channels = out_channels
            stages.append(nn.Sequential(*stage))
        self.stage2, self.stage3, self.stage4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        init_like_torchvision_mobilenets(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.stage4(self.stage3(self.stage2(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


_REFERENCE = "Zhang et al. 2017, ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices"

# Every convolution and pool is padded, so the nets run on any side down to 1 pixel; 32 is their
# total stride, the smallest side at which every stage still sees at least one real pixel (the
# same floor the other ImageNet nets of the zoo use).
_MIN_SIZE = 32


# Both variants: the paper's ImageNet setting, edgecnn's own implementation, no pretrained weights.
_VARIANT = dict(family="lightweight", input_size=(3, 224, 224), min_size=_MIN_SIZE, source="edgecnn",
                reference=_REFERENCE, weights=None)


@register_model("shufflenet_v1_g3", **_VARIANT)
def shufflenet_v1_g3(num_classes: int = 1000) -> nn.Module:
    """ShuffleNet v1 1x, g=3 (the paper's default; about 138 M multiply-adds at 224)."""
    return ShuffleNetV1(groups=3, num_classes=num_classes)


@register_model("shufflenet_v1_g8", **_VARIANT)
def shufflenet_v1_g8(num_classes: int = 1000) -> nn.Module:
    """ShuffleNet v1 1x, g=8 (the paper's most accurate 1x variant; about 138 M multiply-adds at 224)."""
    return ShuffleNetV1(groups=8, num_classes=num_classes)
