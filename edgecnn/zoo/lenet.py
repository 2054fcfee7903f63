"""LeNet-5, written from the paper: LeCun, Bottou, Bengio & Haffner, "Gradient-Based Learning Applied
to Document Recognition", Proc. IEEE 1998 (Section II-B, Table I, Appendix A).

Layer by layer on a 32x32 single-channel image:

    C1  conv 6@5x5                                  -> 6x28x28    156 params
    S2  trainable 2x2 subsampling                   -> 6x14x14     12 params
    C3  conv 16@5x5, partial connections (Table I)  -> 16x10x10  1,516 params
    S4  trainable 2x2 subsampling                   -> 16x5x5      32 params
    C5  conv 120@5x5 (fully connected to S4)        -> 120x1x1  48,120 params
    F6  fully connected 120 -> 84                   -> 84       10,164 params
    output  fully connected 84 -> num_classes

Every layer up to F6 is followed by the paper's squashing function f(a) = 1.7159 tanh(2a/3).

Where this deviates from the paper, and why:

- The output layer. The paper ends in 10 Euclidean RBF units with fixed 7x12 bitmap prototypes,
  trained with a MAP criterion. Here it is a plain `Linear(84, num_classes)` so the network trains
  with cross-entropy like every other model in the zoo and works for any number of classes.
- A global average pool after C5. At the paper's 32x32 input C5's map is already 1x1 and the pool
  is the identity; it only lets larger inputs through (the zoo's rule feeds a model
  `max(data size, min_size)`), where the paper's net would fail with a shape error at F6.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgecnn.zoo.registry import register_model

# Appendix A: f(a) = A tanh(S a) with A = 1.7159 and S = 2/3, chosen so that f(1) = 1 and
# f(-1) = -1, and the second derivative of f is largest at +-1.
_SQUASH_AMPLITUDE = 1.7159
_SQUASH_SLOPE = 2.0 / 3.0

# Table I of the paper: which S2 feature maps (rows) each C3 feature map (columns) is connected to.
# The paper breaks symmetry this way: different C3 maps see different input subsets, so they are
# pushed to extract different features, and the layer costs 1,516 instead of 2,416 parameters.
C3_CONNECTIONS: tuple[tuple[int, ...], ...] = (
    # maps 0-5: three contiguous S2 maps
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    # maps 6-11: four contiguous S2 maps
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    # maps 12-14: four non-contiguous S2 maps
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    # map 15: all six
    (0, 1, 2, 3, 4, 5),
)


def squash(x: torch.Tensor) -> torch.Tensor:
    """The paper's scaled hyperbolic tangent, 1.7159 * tanh(2x/3)."""
    return _SQUASH_AMPLITUDE * torch.tanh(_SQUASH_SLOPE * x)


def _paper_uniform_(weight: torch.Tensor, fan_in: int) -> None:
    # Appendix A: weights drawn uniformly in [-2.4/F_i, 2.4/F_i], F_i the unit's fan-in, so the
    # weighted sums start in the range where the squashing function is not saturated.
    bound = 2.4 / fan_in
    nn.init.uniform_(weight, -bound, bound)


class Subsampling(nn.Module):
    """S2/S4: each unit adds its 2x2 non-overlapping inputs, times one trainable coefficient per
    map, plus one trainable bias per map (2 parameters per feature map)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        _paper_uniform_(self.weight, fan_in=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # 2x2 sum = 4 * 2x2 average; the 4 folds into the coefficient multiply, which keeps the
        # exported graph to AveragePool, Mul, Add (supported by every edge runtime).
        pooled = F.avg_pool2d(x, kernel_size=2, stride=2)
        scale = (4.0 * self.weight).view(1, -1, 1, 1)
        return pooled * scale + self.bias.view(1, -1, 1, 1)


class PartialConv2d(nn.Module):
    """C3: a convolution where output map k sees only the input maps `connections[k]`.

    Export-friendly and exact in parameters: the input maps are gathered once with an index tensor
    (in connection order), then one grouped convolution runs per connection size (each group sees
    its own slice of the gathered maps), and the outputs are concatenated back in map order.
    A full convolution with a 0/1 mask would compute the same thing but carry (and export) the
    unused weights: 2,416 parameters instead of 1,516.
    """

    # `edgecnn info` shows this as one C3 row (1,516 params) instead of one row per grouped conv.
    profile_as_layer = True

    def __init__(self, connections: tuple[tuple[int, ...], ...], kernel_size: int):
        super().__init__()
        sizes = [len(c) for c in connections]
        # Output maps must be ordered so that equal-size connections are contiguous, otherwise the
        # concatenation would not come out in map order.
        if sizes != sorted(sizes):
            raise ValueError("connections must be sorted by size to keep output maps in order")
        self.connections = connections
        gather = [i for c in connections for i in c]
        # Not persistent: the table is architecture, not learned state, so it stays out of
        # checkpoints and becomes a constant in the exported graph.
        self.register_buffer("gather_index", torch.tensor(gather, dtype=torch.long), persistent=False)

        self.split_sizes: list[int] = []  # gathered input channels consumed by each grouped conv
        convs = []
        for size in sorted(set(sizes)):
            maps = sizes.count(size)
            convs.append(nn.Conv2d(maps * size, maps, kernel_size, groups=maps))
            self.split_sizes.append(maps * size)
        self.convs = nn.ModuleList(convs)
        for conv in self.convs:
            fan_in = conv.in_channels // conv.groups * kernel_size * kernel_size
            _paper_uniform_(conv.weight, fan_in)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gathered = x.index_select(1, self.gather_index)
        parts = torch.split(gathered, self.split_sizes, dim=1)
        return torch.cat([conv(part) for conv, part in zip(self.convs, parts)], dim=1)


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) with a linear classifier in place of the RBF output layer."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.c1 = nn.Conv2d(in_channels, 6, kernel_size=5)
        self.s2 = Subsampling(6)
        self.c3 = PartialConv2d(C3_CONNECTIONS, kernel_size=5)
        self.s4 = Subsampling(16)
        # C5 is a convolution, not a linear layer: at 32x32 its 5x5 kernel covers all of S4, but
        # the paper keeps it a convolution so that larger inputs give a larger map.
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, num_classes)
        for layer in (self.c1, self.c5, self.f6, self.output):
            fan_in = layer.weight[0].numel()
            _paper_uniform_(layer.weight, fan_in)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = squash(self.c1(x))
        x = squash(self.s2(x))
        x = squash(self.c3(x))
        x = squash(self.s4(x))
        x = squash(self.c5(x))
        x = torch.flatten(self.pool(x), 1)
        x = squash(self.f6(x))
        return self.output(x)


@register_model(
    "lenet5",
    family="baseline",
    input_size=(1, 32, 32),
    # C1, C3 and C5 are unpadded 5x5 convolutions: 32 -> 28 -> 14 -> 10 -> 5 -> 1. Any smaller
    # side leaves C5 less than its 5x5 kernel (31 gives S4 4x4).
    min_size=32,
    reference="LeCun et al. 1998, Gradient-Based Learning Applied to Document Recognition",
    # Maps [0, 1] pixels to [-1, 1]; the paper likewise centres the input near zero with unit-ish
    # variance (background -0.1, foreground 1.175) to speed up learning.
    mean=(0.5,),
    std=(0.5,),
)
def lenet5(num_classes: int = 1000) -> nn.Module:
    """LeNet-5 for 1x32x32 inputs (60,850 parameters with 10 classes)."""
    return LeNet5(num_classes=num_classes)


__all__ = ["C3_CONNECTIONS", "LeNet5", "PartialConv2d", "Subsampling", "lenet5", "squash"]
