"""An OpenVINO INT8 IR run in the device's arithmetic on a host whose int8 kernels compute differently.

On x86 without VNNI, the CPU plugin's u8*s8 convolutions add pairs of products in int16 (vpmaddubsw) and
saturate with 8-bit weights: an IR for a VNNI CPU (x86-vnni, 8-bit weights) scores worse here than it runs
there (EfficientNet-Lite2 kept 37 layers in float on an AVX2 host for that reason). A VNNI CPU sums in int32,
exactly. The emulation replaces every FakeQuantize by the same function written in plain float ops, so the
CPU plugin's low-precision transformations find nothing to turn into int8 kernels: the activations and
weights take exactly their int8 grid values and the sums are float32 (exact to float rounding), which is
what the VNNI device computes.

FakeQuantize (OpenVINO opset spec), for levels L and ranges [il, ih] -> [ol, oh] (per-tensor or
per-channel, broadcast):  x <= il -> ol;  x > ih -> oh;  else round((x - il) / (ih - il) * (L - 1)) /
(L - 1) * (oh - ol) + ol.  Clamping x to [il, ih] first gives both ends, so the decomposition is
clamp -> subtract -> multiply -> round (half to even, as the plugin's reference) -> multiply -> add.
"""

from __future__ import annotations

from typing import Any


def emulate_fake_quantize(model: Any) -> int:
    """Replace every FakeQuantize of `model` (an openvino.Model, changed in place) by float ops; the count."""
    import openvino.opset13 as ops

    replaced = 0
    for node in list(model.get_ordered_ops()):
        if node.get_type_name() != "FakeQuantize":
            continue
        x, in_low, in_high, out_low, out_high = (node.input_value(i) for i in range(5))
        steps = float(node.get_attributes()["levels"] - 1)
        dtype = x.get_element_type().to_dtype()
        clamped = ops.minimum(ops.maximum(x, in_low), in_high)
        # (ih - il) / steps is the input step; dividing by it as a multiply by its inverse would change
        # the rounding of values on a half step, so divide as the reference does.
        in_step = ops.divide(ops.subtract(in_high, in_low), ops.constant(steps, dtype))
        levels = ops.round(ops.divide(ops.subtract(clamped, in_low), in_step), "half_to_even")
        out_step = ops.divide(ops.subtract(out_high, out_low), ops.constant(steps, dtype))
        value = ops.add(ops.multiply(levels, out_step), out_low)
        value.set_friendly_name(node.get_friendly_name())  # named outputs (layer probes) still find it
        node.output(0).replace(value.output(0))
        replaced += 1
    if replaced:
        model.validate_nodes_and_infer_types()
    return replaced
