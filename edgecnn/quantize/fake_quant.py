"""The fake-quantized layers INT8 distillation trains (edgecnn.quantize.distill): torch at import, so only
a distillation imports this module."""

from __future__ import annotations

import torch
from torch import nn


def channel_scale(weight, qmax: int):
    """Each output channel's grid step, the one a per-channel symmetric quantizer derives: max|w| / qmax."""
    return weight.detach().abs().flatten(1).amax(1).clamp_min(1e-12) / qmax


def per_channel(values, like):
    """`values` (one per output channel) shaped to broadcast over the weight `like`."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def weight_fake_quant(weight, qmax: int):
    """Symmetric per-output-channel fake quantization on `channel_scale`'s grid (straight-through gradient)."""
    scale = channel_scale(weight, qmax)
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -qmax, qmax)


class FoldedLayer(nn.Module):
    """A conv (or linear) with its BatchNorm folded in, its weight fake-quantized while training."""

    def __init__(self, layer: nn.Module, bn: nn.Module | None, qmax: int):
        super().__init__()
        self.layer, self.bn, self.qmax = layer, bn, qmax
        weight = layer.weight.detach().clone()
        bias = layer.bias.detach().clone() if layer.bias is not None else torch.zeros(weight.shape[0])
        if bn is not None:
            k = self.bn_scale()
            weight = weight * per_channel(k, weight)
            bias = (bias - bn.running_mean) * k + bn.bias.detach()
        self.register_buffer("step", per_channel(channel_scale(weight, qmax), weight))
        self.codes = nn.Parameter(weight / self.step)
        # A bias-free layer with no BN stays bias-free: a trained bias would have nowhere to go back to.
        self.bias = nn.Parameter(bias) if bn is not None or layer.bias is not None else None

    @property
    def weight(self):
        return self.codes * self.step

    def bn_scale(self):
        return (self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)).detach()

    def forward(self, x):
        return torch.func.functional_call(
            self.layer, {"weight": weight_fake_quant(self.weight, self.qmax), "bias": self.bias}, (x,))

    @torch.no_grad()
    def write_back(self) -> None:
        """The snapped folded weights into the original layer (and BN), so the graph exports unchanged."""
        snapped = weight_fake_quant(self.weight, self.qmax)
        if self.bn is None:
            self.layer.weight.copy_(snapped)
            if self.layer.bias is not None:
                self.layer.bias.copy_(self.bias)
            return
        k = self.bn_scale()
        self.layer.weight.copy_(snapped / per_channel(k, snapped))
        conv_bias = self.layer.bias if self.layer.bias is not None else torch.zeros_like(k)
        # BN(conv(x, w / k) + c) = conv(x, w) + k * (c - mean) + beta: the mean carries the tuned bias.
        self.bn.running_mean.copy_((self.bn.bias - self.bias) / k + conv_bias)


class ActivationFakeQuant(nn.Module):
    """A tensor's fake quantization, its range the min/max over the calibration images."""

    def __init__(self, symmetric: bool):
        super().__init__()
        self.symmetric, self.observing = symmetric, True
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(0.0))

    def forward(self, x):
        if self.observing:
            self.lo.copy_(torch.minimum(self.lo, x.detach().min()))
            self.hi.copy_(torch.maximum(self.hi, x.detach().max()))
            return x
        if self.symmetric:
            scale = max(float(torch.maximum(-self.lo, self.hi)) / 127, 1e-12)
            return torch.fake_quantize_per_tensor_affine(x, scale, 0, -127, 127)
        scale = max(float(self.hi - self.lo) / 255, 1e-12)
        return torch.fake_quantize_per_tensor_affine(x, scale, int(round(-float(self.lo) / scale)), 0, 255)
