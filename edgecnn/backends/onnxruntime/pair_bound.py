"""8-bit weights wherever an x86 CPU without VNNI cannot saturate, 7-bit elsewhere: chosen per output channel.

ONNX Runtime's u8*s8 kernels on x86 with AVX2 but no VNNI add two adjacent products (activation code 0..255
times weight code -127..127) in int16 before widening (vpmaddubsw): two large same-sign products overflow
32767 and saturate. That is why the profiles for such CPUs quantize every weight to 7 bits (|w| <= 64), which
costs accuracy where nothing would have saturated. A pair can only saturate where both activations reach high
codes and both weights are large with one sign; activation scales are per tensor, so most channels never come
near code 255, and weight scales are per output channel. So every output channel of every conv gets 8-bit
codes where the largest pair sum its codes can make with the largest activation code each input channel
reached on the calibration images stays within int16, and keeps ONNX Runtime's 7-bit codes where not.

Depthwise convs take 8 bits throughout: ONNX Runtime's depthwise kernel has no int16 pair (see widen_weights).
Measured on EfficientNet-Lite1/Lite2 in benchmarks/int8_saturation_bound.py (AVX2 EPYC), where ORT's kernels on
that host give the exact emulation's logits (no saturation on photos the calibration never saw).
Pairs: a 1x1 conv's K dimension is its input channels, and both parities of adjacent channels are bounded
(the kernel's packing pairs one of them); any other conv (a stem, a depthwise conv) is bounded without
adjacency, by its group's largest activation code times the channel's two largest |w|.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PAIR_LIMIT = 32767  # int16
CODE_MARGIN = 1.0  # activation codes on unseen images may exceed calibration's: the report part checks that


def activation_code_max(qdq_path: Path, images: np.ndarray, *, batch: int = 8) -> dict[str, np.ndarray]:
    """Per channel, the largest uint8 code each 4-D QuantizeLinear emits on `images` (exact: graph
    optimizations off, so no int8 kernel computes them)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(qdq_path))
    uint8 = {init.name for init in model.graph.initializer if init.data_type == onnx.TensorProto.UINT8}
    # u8 activations only (the zero point's type is the code's): int8 ones are not what AVX2's u8*s8 pairs add
    wanted = [node.output[0] for node in model.graph.node
              if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in uint8]
    model.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.UINT8, None) for name in wanted)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    top: dict[str, np.ndarray] = {}
    for start in range(0, len(images), batch):
        values = session.run(wanted, {feed: images[start:start + batch]})
        for name, value in zip(wanted, values):
            if value.ndim == 4 and value.dtype == np.uint8:
                per_channel = value.max(axis=(0, 2, 3)).astype(np.int64)
                top[name] = per_channel if name not in top else np.maximum(top[name], per_channel)
    return top


def pair_bound(codes: np.ndarray, act_codes: np.ndarray, group: int) -> np.ndarray:
    """Per output channel, the largest |sum of two products| weight `codes` [O, I/g, kh, kw] can make with
    activation codes up to `act_codes` (per input channel)."""
    out_channels, per_in = codes.shape[0], codes.shape[1]
    w = codes.astype(np.int64)
    if codes.shape[2] == codes.shape[3] == 1 and group == 1:
        w2 = w[:, :, 0, 0]
        products = np.abs(w2) * act_codes[None, :per_in]
        if per_in < 2:
            return products.max(axis=1)
        same_sign = np.sign(w2[:, :-1]) == np.sign(w2[:, 1:])
        # opposite signs partly cancel: that pair is no larger than its larger product
        pairs = np.where(same_sign, products[:, :-1] + products[:, 1:], np.maximum(products[:, :-1], products[:, 1:]))
        return pairs.max(axis=1)
    group_of = np.arange(out_channels) // max(out_channels // group, 1)
    act_top = np.array([act_codes[g * per_in:(g + 1) * per_in].max() for g in group_of])
    largest = np.sort(np.abs(w.reshape(out_channels, -1)), axis=1)[:, -2:].sum(axis=1)
    return act_top * largest


def widen_weights(qdq_path: Path, fp32_path: Path, act_codes: dict[str, np.ndarray], *,
                  margin: float = CODE_MARGIN, depthwise_8bit: bool = True) -> dict[str, int]:
    """Rewrite `qdq_path` (ONNX Runtime's 7-bit per-channel QDQ graph) in place: each conv output channel whose
    8-bit codes stay within int16 pairs gets them (and its bias the matching int32 scale). Returns counts.

    `depthwise_8bit`: every depthwise conv takes 8 bits, bound or not. ONNX Runtime's depthwise kernel widens
    both operands to 16 bits and accumulates in int32, so it has no int16 pair to overflow (measured:
    Lite1's 21 depthwise convs at 8 bits give the same logits on an AVX2 host's kernels as in exact arithmetic,
    and tests/test_pair_bound.py checks a depthwise conv built to overflow on whatever host runs it)."""
    import onnx
    from onnx import numpy_helper

    model, fp32 = onnx.load(str(qdq_path)), onnx.load(str(fp32_path))
    floats = {init.name: init for init in fp32.graph.initializer}
    inits = {init.name: init for init in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    counts = {"channels": 0, "channels_8bit": 0, "convs": 0, "depthwise_convs": 0}
    for conv in (node for node in model.graph.node if node.op_type == "Conv"):
        weight_dq, input_dq = producer.get(conv.input[1]), producer.get(conv.input[0])
        if not (_is_dq_of(weight_dq, inits) and input_dq is not None and input_dq.op_type == "DequantizeLinear"):
            continue
        name, scale_name = weight_dq.input[0], weight_dq.input[1]
        acts, original = act_codes.get(input_dq.input[0]), floats.get(name.removesuffix("_quantized"))
        if acts is None or original is None or len(original.dims) != 4:
            continue
        weights = numpy_helper.to_array(original).astype(np.float32)
        old_scale = numpy_helper.to_array(inits[scale_name]).astype(np.float32).reshape(-1)
        if old_scale.size != weights.shape[0]:
            continue  # per-tensor weights: not this graph
        top = np.abs(weights.reshape(weights.shape[0], -1)).max(axis=1)
        scale8 = (np.where(top > 0, top, 1e-12) / 127.0).astype(np.float32)
        codes8 = np.clip(np.round(weights / scale8.reshape(-1, 1, 1, 1)), -127, 127).astype(np.int8)
        group = next((a.i for a in conv.attribute if a.name == "group"), 1)
        acts = np.minimum(255, np.ceil(acts * margin)).astype(np.int64)
        depthwise = group > 1 and group == weights.shape[0] and weights.shape[1] == 1
        safe = np.full(weights.shape[0], True) if depthwise and depthwise_8bit \
            else pair_bound(codes8, acts, group) <= PAIR_LIMIT
        codes = numpy_helper.to_array(inits[name]).copy()
        codes[safe] = codes8[safe]
        scale = np.where(safe, scale8, old_scale).astype(np.float32)
        inits[name].CopyFrom(numpy_helper.from_array(codes, name))
        inits[scale_name].CopyFrom(numpy_helper.from_array(scale.reshape(numpy_helper.to_array(inits[scale_name]).shape),
                                                           scale_name))
        if len(conv.input) > 2:
            _rescale_bias(conv.input[2], producer, inits, floats, scale / old_scale)
        counts["convs"] += 1
        counts["depthwise_convs"] += int(depthwise)
        counts["channels"] += int(safe.size)
        counts["channels_8bit"] += int(safe.sum())
    onnx.save(model, str(qdq_path))
    return counts


def _is_dq_of(node, inits) -> bool:
    return node is not None and node.op_type == "DequantizeLinear" and node.input[0] in inits


def _rescale_bias(tensor: str, producer: dict, inits: dict, floats: dict, ratio: np.ndarray) -> None:
    """An int32 bias is quantized with (input scale x weight scale): it follows the weight's new scale."""
    from onnx import numpy_helper

    bias_dq = producer.get(tensor)
    if not _is_dq_of(bias_dq, inits):
        return
    name, scale_name = bias_dq.input[0], bias_dq.input[1]
    original = floats.get(name.removesuffix("_quantized"))
    if original is None:
        return
    scale = numpy_helper.to_array(inits[scale_name]).astype(np.float32) * ratio.astype(np.float32)
    codes = np.round(numpy_helper.to_array(original).astype(np.float64) / scale).astype(np.int32)
    inits[name].CopyFrom(numpy_helper.from_array(codes, name))
    inits[scale_name].CopyFrom(numpy_helper.from_array(scale, scale_name))
