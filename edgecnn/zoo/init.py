"""The weight initialisation the zoo's own architectures share (torchvision's MobileNet scheme)."""

from __future__ import annotations

from torch import nn


def init_like_torchvision_mobilenets(model: nn.Module) -> None:
    """He init for convolutions, unit BatchNorm, small normal classifier weights, zero biases."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            # He init keeps activation variance stable through ReLU stacks; fan_out as in
            # torchvision's MobileNets (fan_in of a depthwise conv is only 9).
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)
