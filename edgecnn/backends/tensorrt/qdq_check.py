"""TensorRT's explicit-quantization rules, checked on a Q/DQ ONNX model."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from edgecnn.backends.tensorrt.graph import ACTIVATIONS, WEIGHTED_OPS, consumers_of, producers_of
from edgecnn.errors import require

# Weighted ops and the axis of their output channels in the weight tensor.
_WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1}


class _Graph:
    """Read-only views of a graph the rules share: constants, producers, consumers."""

    def __init__(self, graph: Any, numpy_helper: Any) -> None:
        self.graph = graph
        self.inits = {init.name: init for init in graph.initializer}
        self.constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
        self.producers = producers_of(graph)
        self.consumers = consumers_of(graph)
        self.to_array = numpy_helper.to_array

    def value(self, name: str) -> np.ndarray | None:
        """The constant tensor `name` (an initializer or a Constant node's value), else None."""
        if name in self.inits:
            return self.to_array(self.inits[name])
        for attr in getattr(self.constants.get(name), "attribute", ()):
            if attr.name == "value":
                return self.to_array(attr.t)
        return None


def _label(node: Any) -> str:
    return f"{node.op_type} {node.name or node.output[0]!r}"


def check_tensorrt_qdq(onnx_path: str | os.PathLike) -> list[str]:
    """The ways a Q/DQ ONNX model breaks TensorRT's explicit-quantization rules (empty list: none).

    Checks: only standard ONNX-domain ops; every Q/DQ is int8 with zero point 0; activation scales
    are scalars (per-tensor); weight scales are per-channel on the output-channel axis with one
    positive scale per channel; every Conv/ConvTranspose/Gemm/MatMul takes its data and weight
    through DequantizeLinear; no Q/DQ between a weighted layer and the activation it fuses with;
    the logits leave the graph in float.
    """
    onnx = require("onnx", "export", "checking a Q/DQ model")
    from onnx import numpy_helper

    view = _Graph(onnx.load(str(onnx_path), load_external_data=False).graph, numpy_helper)
    problems: list[str] = []
    foreign = sorted({n.domain for n in view.graph.node if n.domain not in ("", "ai.onnx")})
    if foreign:
        problems.append(f"ops from domain(s) {', '.join(foreign)}: TensorRT parses standard ONNX ops only")
    qdq = [n for n in view.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not any(n.op_type == "QuantizeLinear" for n in qdq):
        problems.append("no QuantizeLinear node: this is not a Q/DQ model")
    weight_dqs = _check_weighted_layers(view, problems)
    for node in qdq:
        _check_qdq_node(view, node, is_weight=id(node) in weight_dqs, problems=problems)
    for name in (o.name for o in view.graph.output):
        producer = view.producers.get(name)
        if producer is not None and producer.op_type == "DequantizeLinear":
            problems.append(f"graph output {name!r} comes out of DequantizeLinear: the logits lose precision "
                            "for no speed")
    return problems


def _check_weighted_layers(view: _Graph, problems: list[str]) -> set[int]:
    """Every weighted layer reads data and weight through DequantizeLinear; returns the weight DQs' ids."""
    weight_dqs: set[int] = set()
    for node in view.graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        for index, role in ((0, "data"), (1, "weight")):
            source = view.producers.get(node.input[index]) if len(node.input) > index else None
            if source is None or source.op_type != "DequantizeLinear":
                problems.append(f"{_label(node)}: its {role} input is not fed by DequantizeLinear, "
                                "so TensorRT runs it in float")
            elif index == 1:
                weight_dqs.add(id(source))
                _check_weight_dq(view, source, _output_channel_axis(node), problems)
    return weight_dqs


def _output_channel_axis(node: Any) -> int | None:
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if node.op_type == "MatMul":
        return 1
    return _WEIGHT_AXIS.get(node.op_type)


def _check_qdq_node(view: _Graph, node: Any, *, is_weight: bool, problems: list[str]) -> None:
    """int8, zero point 0, finite positive scales, one scale per activation tensor, not before a fused act."""
    scale = view.value(node.input[1]) if len(node.input) > 1 else None
    zero = view.value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if scale is None:
        problems.append(f"{_label(node)}: scale is not a constant")
        return
    if np.any(~np.isfinite(scale)) or np.any(scale <= 0):
        problems.append(f"{_label(node)}: scales must be finite and positive")
    if zero is None:
        if node.op_type == "QuantizeLinear":
            # Without a zero point ONNX quantizes to uint8, which TensorRT does not take.
            problems.append(f"{_label(node)}: no zero point, so it quantizes to uint8 (TensorRT needs int8)")
    else:
        if zero.dtype != np.int8:
            problems.append(f"{_label(node)}: quantizes to {zero.dtype} (TensorRT needs int8)")
        if np.any(zero != 0):
            problems.append(f"{_label(node)}: zero point is not 0 (TensorRT needs symmetric quantization)")
    if not is_weight and np.asarray(scale).size != 1:
        problems.append(f"{_label(node)}: activation scale has {np.asarray(scale).size} values "
                        "(TensorRT needs one per tensor)")
    if node.op_type == "QuantizeLinear":
        producer = view.producers.get(node.input[0])
        users = [u for d in view.consumers.get(node.output[0], []) for u in view.consumers.get(d.output[0], [])]
        if (producer is not None and producer.op_type in WEIGHTED_OPS
                and users and all(u.op_type in ACTIVATIONS for u in users)):
            problems.append(f"{_label(node)}: Q/DQ between {_label(producer)} and its activation stops "
                            "TensorRT fusing them")


def _check_weight_dq(view: _Graph, dq: Any, axis: int | None, problems: list[str]) -> None:
    """Weights int8, one positive scale per output channel on the output-channel axis."""
    weight = view.value(dq.input[0])
    scale = view.value(dq.input[1]) if len(dq.input) > 1 else None
    if weight is None or scale is None:
        problems.append(f"{_label(dq)}: weight or scale is not a constant")
        return
    if weight.dtype != np.int8:
        problems.append(f"{_label(dq)}: weights stored as {weight.dtype}, expected int8")
    dq_axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    channels = weight.shape[axis] if axis is not None and weight.ndim > axis else None
    size = np.asarray(scale).size
    if size == 1 and channels not in (None, 1):
        problems.append(f"{_label(dq)}: weight scale is per-tensor; TensorRT wants one per output channel")
    elif size != 1:
        if axis is not None and dq_axis % max(weight.ndim, 1) != axis:
            problems.append(f"{_label(dq)}: weight scales on axis {dq_axis}, expected the output-channel axis {axis}")
        if channels is not None and size != channels:
            problems.append(f"{_label(dq)}: {size} weight scales for {channels} output channels")
