"""Light geometric augmentation of a batch of model inputs: shift, rotation, scale, optional mirror."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment_batch(inputs: torch.Tensor, generator: torch.Generator, config, hflip: bool) -> torch.Tensor:
    """Random shift, rotation and scale (and mirror if `hflip`) on a batch of model inputs.

    One affine warp per image with border padding, so the background stays background after the
    input normalisation (zero padding would paint a frame of a different value). `config` is a
    TrainConfig (max_shift, max_rotation, max_scale).
    """
    n = inputs.shape[0]
    uniform = lambda: torch.rand(n, generator=generator) * 2.0 - 1.0  # noqa: E731
    angle = uniform() * math.radians(config.max_rotation)
    scale = 1.0 + uniform() * config.max_scale
    # affine_grid works in [-1, 1] coordinates: a shift of `max_shift` of the side is 2 * max_shift.
    shift_x, shift_y = uniform() * 2.0 * config.max_shift, uniform() * 2.0 * config.max_shift
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    mirror = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if hflip else torch.ones(n)
    theta = torch.stack(
        [torch.stack([cos * mirror, -sin, shift_x], dim=1), torch.stack([sin * mirror, cos, shift_y], dim=1)],
        dim=1,
    ).to(inputs.device, inputs.dtype)
    grid = F.affine_grid(theta, list(inputs.shape), align_corners=False)
    return F.grid_sample(inputs, grid, mode="bilinear", padding_mode="border", align_corners=False)
