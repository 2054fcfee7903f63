"""8-bit weights wherever an x86 CPU without VNNI cannot saturate, 7-bit elsewhere: chosen per output channel.

OpenVINO's CPU plugin runs an INT8 IR's convolutions and fully connected layers in oneDNN's u8*s8 kernels; on
x86 with AVX2 but no VNNI they add two products (activation code 0..255 times weight code -127..127) in int16
before widening (vpmaddubsw), and two large same-sign products overflow 32767 and saturate. That is why the
`x86` profile quantizes with NNCF's OverflowFix.ENABLE. What the fix does (NNCF 3.4,
nncf/quantization/fake_quantize.py, `half_range`): a weight quantizer keeps 255 levels but takes the range
[-2 max|w|, 2 max|w|] per output channel, so its codes are round(w / (2 max|w| / 127)), |code| <= 64 (7 bits
on the 8-bit grid). NNCF then compresses the weights: an int8 constant of the codes -> Convert -> Multiply by
the per-channel scale (2 max|w| / 127 with the fix, max|w| / 127 without), no weight FakeQuantize left. The fix
covers Convolution, GroupConvolution and MatMul weights, not depthwise convolutions (a metatype of their own):
they keep 8 bits, and that is safe, as the plugin's AVX2 depthwise kernel widens to int32 before it adds
(tests/test_openvino_pair_bound.py builds one whose 8-bit pairs would overflow int16: the int8 kernels give
the exact emulation's result).

A pair can only saturate where both activations reach high codes and both weights are large with one sign.
So NNCF quantizes once without the fix, the emulation (exact arithmetic) of that IR gives the largest code
each activation channel reaches on the calibration images (a code is (value - output_low) / step, the u8 code
the kernel multiplies, zero point included), and every output channel whose 8-bit codes keep every pair within
int16 with those codes keeps 8 bits. NNCF then quantizes again, with the overflow fix's range on the other
channels only, set inside NNCF (_half_range_where_unsafe), so that full bias correction sees the final
weights. (Mixing the channels of two finished IRs, fix on and fix off, was measured first and gained little:
each IR's biases, the depthwise convs' included, are corrected for its own upstream weights.)

Pairs (measured, AVX2 EPYC, OpenVINO 2026.4): the 1x1 convolution adds input channels (2k, 2k+1) and no
others, so a 1x1 conv is bounded over those pairs; any other conv (a stem) by its group's largest activation
code times the channel's two largest |w| (no adjacency assumed), and a fully connected layer over both
parities of adjacent inputs (its kernel's pairing was not measured): edgecnn.backends.onnxruntime.pair_bound.
Measured on EfficientNet-Lite1/Lite2 in benchmarks/int8_openvino_pair_bound.py.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.backends.onnxruntime.pair_bound import PAIR_LIMIT
from edgecnn.backends.onnxruntime.pair_bound import pair_bound as any_pair_bound

__all__ = ["CODE_MARGIN", "PAIR_LIMIT", "activation_code_max", "pair_bound", "quantize_pair_bound", "safe_channels",
           "weight_codes"]

CODE_MARGIN = 1.0  # activation codes on unseen images may exceed calibration's: the report part checks that
_LAYERS = ("Convolution", "GroupConvolution", "MatMul")


def _constant(output) -> Any | None:
    node = output.get_node()
    return node if node.get_type_name() == "Constant" else None


def weight_codes(layer) -> tuple[Any, Any, np.ndarray, np.ndarray] | None:
    """A layer's compressed weights as NNCF writes them (int8 Constant -> Convert -> Multiply by a scale):
    (codes node, scale node, codes [O, I/g, kh, kw], scale [O]); None where its weights are not so (kept float)."""
    multiply = layer.input_value(1).get_node()
    if multiply.get_type_name() != "Multiply":
        return None
    convert, scale = multiply.input_value(0).get_node(), _constant(multiply.input_value(1))
    if convert.get_type_name() != "Convert" or scale is None:
        return None
    codes = _constant(convert.input_value(0))
    if codes is None or codes.get_output_element_type(0).get_type_name() != "i8":
        return None
    array = codes.get_data()
    kind = layer.get_type_name()
    if kind == "MatMul":
        if array.ndim != 2 or not layer.get_attributes().get("transpose_b", False):
            return None
        array = array[:, :, None, None]
    elif kind == "GroupConvolution":
        if array.ndim != 5:
            return None
        array = array.reshape((-1,) + array.shape[2:])
    elif array.ndim != 4:
        return None
    values = scale.get_data().reshape(-1)
    if values.size != array.shape[0]:
        return None  # per-tensor weights: not this IR
    return codes, scale, array, values


def _depthwise(codes: np.ndarray, group: int) -> bool:
    return group > 1 and group == codes.shape[0] and codes.shape[1] == 1


def _groups(layer) -> int:
    if layer.get_type_name() != "GroupConvolution":
        return 1
    return int(layer.input_value(1).get_partial_shape()[0].get_length())


def _input_quantizer(layer) -> str | None:
    source = layer.input_value(0).get_node()
    return source.get_friendly_name() if source.get_type_name() == "FakeQuantize" else None


def activation_code_max(model, images: np.ndarray, *, batch: int = 8) -> dict[str, np.ndarray]:
    """Per channel (axis 1), the largest code each activation FakeQuantize of `model` (an openvino.Model, not
    changed) emits on `images`, in exact arithmetic (the FakeQuantize emulation: no int8 kernel computes
    them). A code is (value - output_low) / step: 0..levels-1, the unsigned code the u8*s8 kernels multiply."""
    import openvino as ov

    from edgecnn.backends.openvino.emulate import emulate_fake_quantize

    probe = model.clone()
    quantizers = {}
    for node in probe.get_ordered_ops():
        if node.get_type_name() == "FakeQuantize" and _constant(node.input_value(0)) is None:
            low, high = (_constant(node.input_value(i)) for i in (3, 4))
            if low is not None and high is not None:
                steps = node.get_attributes()["levels"] - 1
                quantizers[node.get_friendly_name()] = (node.output(0), low.get_data(), high.get_data(), steps)
    names = list(quantizers)
    probe.add_outputs([quantizers[name][0] for name in names])
    emulate_fake_quantize(probe)
    core = ov.Core()
    compiled = core.compile_model(probe, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    first = len(probe.outputs) - len(names)
    top: dict[str, np.ndarray] = {}
    for start in range(0, len(images), batch):
        results = compiled(images[start:start + batch])
        for index, name in enumerate(names):
            value = np.asarray(results[compiled.outputs[first + index]], dtype=np.float64)
            _, low, high, steps = quantizers[name]
            low, high = (np.asarray(v, dtype=np.float64) for v in (low, high))
            codes = np.rint((value - low) / ((high - low) / steps))
            if codes.ndim < 2:
                codes = codes.reshape(-1, 1)
            per_channel = codes.max(axis=tuple(i for i in range(codes.ndim) if i != 1)).astype(np.int64)
            top[name] = per_channel if name not in top else np.maximum(top[name], per_channel)
    return top


def pair_bound(codes: np.ndarray, act_codes: np.ndarray, group: int, *, even_pairs: bool) -> np.ndarray:
    """Per output channel, the largest |sum of two products| weight `codes` [O, I/g, kh, kw] can make with
    activation codes up to `act_codes` (per input channel). `even_pairs`: a 1x1 kernel that adds input channels
    (2k, 2k+1) only (the CPU plugin's 1x1 convolution); otherwise edgecnn.backends.onnxruntime.pair_bound's
    bound (1x1: both parities of adjacent channels; any other kernel: no adjacency assumed)."""
    if not (even_pairs and group == 1 and codes.shape[2] == codes.shape[3] == 1 and codes.shape[1] >= 2):
        return any_pair_bound(codes, act_codes, group)
    w = codes[:, :, 0, 0].astype(np.int64)
    products = np.abs(w) * act_codes[None, :w.shape[1]]
    even = w.shape[1] - w.shape[1] % 2
    first, second = products[:, 0:even:2], products[:, 1:even:2]
    same_sign = np.sign(w[:, 0:even:2]) == np.sign(w[:, 1:even:2])
    bound = np.where(same_sign, first + second, np.maximum(first, second)).max(axis=1)
    return np.maximum(bound, products[:, -1]) if even < w.shape[1] else bound


def safe_channels(model, act_codes: dict[str, np.ndarray], *, margin: float = CODE_MARGIN) -> dict[str, np.ndarray]:
    """Per conv / fully connected layer of `model` (NNCF's 8-bit IR, in memory) that is not depthwise: which
    output channels' 8-bit codes keep every int16 pair within PAIR_LIMIT (a layer that cannot be bounded:
    none). Depthwise convs are all safe: NNCF gives them 8 bits with or without its fix, and the kernel widens to
    int32. A weight quantizer of a layer missing here gets the fix's 7-bit range (_half_range_where_unsafe)."""
    safe = {}
    for layer in (op for op in model.get_ordered_ops() if op.get_type_name() in _LAYERS):
        weights = weight_codes(layer)
        if weights is None:
            continue
        codes, group = weights[2], _groups(layer)
        if _depthwise(codes, group):  # all 8 bits: NNCF's own fix leaves them so, and they cannot saturate
            safe[layer.get_friendly_name()] = np.ones(codes.shape[0], dtype=bool)
            continue
        acts = act_codes.get(_input_quantizer(layer) or "")
        if acts is None or acts.size not in (1, codes.shape[1] * group):
            safe[layer.get_friendly_name()] = np.zeros(codes.shape[0], dtype=bool)
            continue
        acts = np.minimum(255, np.ceil(np.broadcast_to(acts, (codes.shape[1] * group,)) * margin)).astype(np.int64)
        # measured: the 1x1 convolution pairs channels (2k, 2k+1); the fully connected kernel is not measured
        even = layer.get_type_name() == "Convolution"
        safe[layer.get_friendly_name()] = pair_bound(codes, acts, group, even_pairs=even) <= PAIR_LIMIT
    return safe


@contextlib.contextmanager
def _half_range_where_unsafe(safe: dict[str, np.ndarray]):
    """NNCF's weight quantizer parameters, with the overflow fix's range (+-2 max|w| on 255 levels) on the
    channels `safe` marks False: inside NNCF, so full bias correction sees the final weights. NNCF has no public
    per-channel switch: this wraps its OpenVINO backend's quantizer insertion (NNCF 3.4), and the result is
    checked by `quantize_pair_bound`."""
    from nncf.quantization.algorithms.min_max.openvino_backend import OVMinMaxAlgoBackend
    from nncf.tensor import Tensor

    original = OVMinMaxAlgoBackend.create_quantizer_insertion_command

    def insert(nncf_graph, target_point, quantizer_config, parameters):
        if target_point.is_weight_target_point():
            # a layer the bound did not see (its weights unreadable in the first pass) takes 7 bits throughout,
            # as NNCF's overflow fix would: never 8-bit codes that nothing checked
            mask = safe.get(target_point.target_node_name)
            low = np.asarray(parameters.input_low.data)
            factor = (np.where(mask, 1.0, 2.0).astype(low.dtype).reshape((-1,) + (1,) * (low.ndim - 1))
                      if mask is not None else low.dtype.type(2.0))
            for field in ("input_low", "input_high", "output_low", "output_high"):
                setattr(parameters, field, Tensor(np.asarray(getattr(parameters, field).data) * factor))
        return original(nncf_graph, target_point, quantizer_config, parameters)

    OVMinMaxAlgoBackend.create_quantizer_insertion_command = staticmethod(insert)
    try:
        yield
    finally:
        OVMinMaxAlgoBackend.create_quantizer_insertion_command = staticmethod(original)


def quantize_pair_bound(model_path: str | os.PathLike, xml_path: str | os.PathLike, calibration: np.ndarray, *,
                        preset: str, ignored_nodes: tuple[str, ...] = (), margin: float = CODE_MARGIN,
                        progress=None) -> tuple[Any, dict[str, int]]:
    """NNCF without its overflow fix (in a temporary folder) to bound every channel, then NNCF again with 7-bit
    ranges on the channels that could saturate; the IR written at `xml_path`.
    Returns (edgecnn.backends.openvino.quantize.OpenVinoInt8Result, counts)."""
    from edgecnn.backends.openvino.convert import read_model
    from edgecnn.backends.openvino.quantize import quantize_openvino_int8

    safe: dict[str, np.ndarray] = {}

    def bound(model8) -> None:
        safe.update(safe_channels(model8, activation_code_max(model8, calibration), margin=margin))

    with tempfile.TemporaryDirectory(prefix="edgecnn-w8-") as tmp:
        quantize_openvino_int8(model_path, Path(tmp) / "model.w8.xml", calibration, preset=preset,
                               reduce_range=False, ignored_nodes=ignored_nodes, progress=progress, before_save=bound)
    with _half_range_where_unsafe(safe):
        result = quantize_openvino_int8(model_path, xml_path, calibration, preset=preset, reduce_range=False,
                                        ignored_nodes=ignored_nodes, progress=progress)
    counts = {"layers": 0, "channels": 0, "channels_8bit": 0}  # depthwise convs (all 8-bit) not counted
    for layer in read_model(result.xml_path).get_ordered_ops():
        mask = safe.get(layer.get_friendly_name())
        weights = weight_codes(layer) if mask is not None and layer.get_type_name() in _LAYERS else None
        if weights is None or _depthwise(weights[2], _groups(layer)):
            continue
        top = np.abs(weights[2].astype(np.int64)).reshape(len(mask), -1).max(axis=1)
        if (top[~mask] > 64).any():
            raise RuntimeError(f"NNCF did not take the 7-bit ranges on {layer.get_friendly_name()}: "
                               "edgecnn.backends.openvino.pair_bound needs NNCF's 3.4 quantizer insertion")
        counts["layers"] += 1
        counts["channels"] += int(mask.size)
        counts["channels_8bit"] += int(mask.sum())
    return result, counts
