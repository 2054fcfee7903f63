"""Keeping chosen layers of a Q/DQ ONNX graph in float, by removing the Q/DQ pairs on their inputs.

A layer of a Q/DQ graph reads its activations through QuantizeLinear -> DequantizeLinear and its
weights (and bias) through DequantizeLinear of an integer initializer. Wiring the layer to the float
tensor in front of the pair, and to the original fp32 weights, keeps exactly that layer in float: the
runtime cannot fuse it into an int8 kernel, every other layer stays as calibrated. This is what
ONNX Runtime's `nodes_to_exclude` gives without a second calibration, and what TensorRT does with a
layer whose Q/DQ pair is gone (it runs it in fp16/fp32).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.quantize.names import module_path

_QUANTIZE, _DEQUANTIZE = "QuantizeLinear", "DequantizeLinear"


@dataclass(frozen=True)
class QuantizedLayer:
    """A node of a Q/DQ graph that reads at least one input through a DequantizeLinear."""

    node: str  # the ONNX node name
    op: str
    user_name: str  # the PyTorch module path (or the node name)
    output: str  # its first output tensor

    def to_dict(self) -> dict[str, str]:
        return {"node": self.node, "op": self.op, "user_name": self.user_name}


def _producers(graph) -> dict[str, Any]:
    return {out: node for node in graph.node for out in node.output}


def quantized_layers(model) -> list[QuantizedLayer]:
    """The layers int8 touches, in graph order (Q/DQ nodes themselves excluded)."""
    producers = _producers(model.graph)
    layers = []
    for node in model.graph.node:
        if node.op_type in (_QUANTIZE, _DEQUANTIZE):
            continue
        if any(getattr(producers.get(name), "op_type", None) == _DEQUANTIZE for name in node.input):
            layers.append(QuantizedLayer(node=node.name, op=node.op_type, user_name=module_path(node.name),
                                         output=node.output[0]))
    return layers


def _dequantized(dq, initializers: dict[str, np.ndarray]) -> np.ndarray:
    """What a DequantizeLinear of an initializer computes, with numpy (per-tensor or per-axis)."""
    values = initializers[dq.input[0]].astype(np.float64)
    scale = initializers[dq.input[1]].astype(np.float64)
    zero = initializers[dq.input[2]].astype(np.float64) if len(dq.input) > 2 and dq.input[2] else 0.0
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    if np.ndim(scale) == 1 and values.ndim > 1:
        shape = [1] * values.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zero = np.reshape(zero, shape) if np.ndim(zero) == 1 else zero
    return ((values - zero) * scale).astype(np.float32)


def _float_source(dq, producers, initializers, float_weights) -> tuple[str | None, np.ndarray | None]:
    """(float tensor name, or a new initializer's value) that stands for a DequantizeLinear's output."""
    source = dq.input[0]
    if source in initializers:  # an integer weight or bias: the fp32 original when known
        original = source[: -len("_quantized")] if source.endswith("_quantized") else source
        if original in float_weights:
            return None, float_weights[original]
        return None, _dequantized(dq, initializers)
    quantize = producers.get(source)
    if quantize is not None and quantize.op_type == _QUANTIZE:
        return quantize.input[0], None  # the float tensor (or float weight) in front of the pair
    return None, None


@dataclass
class Fp32Graph:
    """What candidates borrow from the fp32 graph: its weights, and the activations int8 folded away.

    ONNX Runtime drops a Relu/Clip after a conv when the Q/DQ pair that follows clips the same range;
    a layer that reads past that pair must get the activation back, or it reads unclipped values.
    """

    weights: dict[str, np.ndarray]
    activations: dict[str, Any]  # tensor name -> the fp32 graph's Relu/Clip node that produced it

    @classmethod
    def read(cls, path: str | Path) -> "Fp32Graph":
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(path))
        weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        acts = {node.output[0]: node for node in model.graph.node if node.op_type in _ACTIVATIONS}
        return cls(weights, acts)


_ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "HardSigmoid", "HardSwish", "Sigmoid")


def _restore_activation(graph, tensor: str, producers: dict, fp32: Fp32Graph, restored: dict) -> str:
    """`tensor`, or a copy of the fp32 graph's activation applied to it where int8 folded it away."""
    original = fp32.activations.get(tensor)
    producer = producers.get(tensor)
    if original is None or producer is None or producer.op_type == original.op_type:
        return tensor
    if tensor not in restored:
        import onnx
        from onnx import numpy_helper

        have = {i.name for i in graph.initializer}
        for name in original.input[1:]:
            if name and name not in have and name in fp32.weights:
                graph.initializer.append(numpy_helper.from_array(fp32.weights[name], name))
        node = onnx.NodeProto()
        node.CopyFrom(original)
        node.name = f"{original.name or tensor}__restored"
        node.input[0] = tensor
        node.output[0] = f"{tensor}__restored"
        graph.node.append(node)
        restored[tensor] = node.output[0]
    return restored[tensor]


def keep_in_float(model, nodes: set[str] | list[str], fp32: Fp32Graph | None = None):
    """A copy of the Q/DQ `model` where the named nodes read float inputs (their Q/DQ pairs removed)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph, wanted = model.graph, set(nodes)
    producers = _producers(graph)
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    fp32 = fp32 or Fp32Graph({}, {})
    float_weights, restored = fp32.weights, {}
    missing = wanted - {n.name for n in graph.node}
    if missing:
        raise KeyError(f"no such node(s) in the Q/DQ graph: {', '.join(sorted(missing))}")
    for node in graph.node:
        if node.name not in wanted:
            continue
        for index, name in enumerate(node.input):
            dq = producers.get(name)
            if dq is None or dq.op_type != _DEQUANTIZE:
                continue
            tensor, value = _float_source(dq, producers, initializers, float_weights)
            if value is not None:
                tensor = f"{name}__float_{node.name}"
                graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), tensor))
            elif tensor is not None:
                tensor = _restore_activation(graph, tensor, producers, fp32, restored)
            if tensor is not None:
                node.input[index] = tensor
    _topological_sort(graph)
    _drop_dead(graph)
    return model


def _topological_sort(graph) -> None:
    """Order nodes so each comes after the producers of its inputs (restored activations were appended)."""
    produced_by = _producers(graph)
    done: set[int] = set()
    ordered = []

    def visit(node) -> None:
        stack = [(node, False)]
        while stack:
            current, expanded = stack.pop()
            if id(current) in done:
                continue
            if expanded:
                done.add(id(current))
                ordered.append(current)
                continue
            stack.append((current, True))
            for name in current.input:
                parent = produced_by.get(name)
                if parent is not None and id(parent) not in done:
                    stack.append((parent, False))

    for node in list(graph.node):
        visit(node)
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def _drop_dead(graph) -> None:
    """Remove nodes whose outputs nobody reads, then initializers nobody reads."""
    outputs = {o.name for o in graph.output}
    while True:
        used = outputs | {name for node in graph.node for name in node.input}
        dead = [n for n in graph.node if not any(out in used for out in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    for info in [v for v in graph.value_info if v.name not in used and v.name not in outputs]:
        graph.value_info.remove(info)


def qdq_pairs_of(model, nodes: set[str] | list[str]) -> int:
    """How many DequantizeLinear inputs the named nodes read (what keeping them in float removes)."""
    producers = _producers(model.graph)
    return sum(1 for node in model.graph.node if node.name in set(nodes)
               for name in node.input if getattr(producers.get(name), "op_type", None) == _DEQUANTIZE)


def float_outputs(model) -> int:
    """Remove the Q/DQ pairs right in front of graph outputs, in place; how many were removed.

    Quantizing the logits to 8 bits only costs accuracy (nothing after them runs in int8); the layer
    that makes them then writes float directly, under the output's name.
    """
    graph = model.graph
    removed = 0
    for output in graph.output:
        producers = _producers(graph)
        dq = producers.get(output.name)
        quantize = producers.get(dq.input[0]) if dq is not None and dq.op_type == _DEQUANTIZE else None
        source = producers.get(quantize.input[0]) if quantize is not None and quantize.op_type == _QUANTIZE else None
        if source is None:
            continue
        old = quantize.input[0]
        for node in graph.node:
            for index, name in enumerate(node.input):
                if name == old:
                    node.input[index] = output.name
        source.output[list(source.output).index(old)] = output.name
        graph.node.remove(dq)
        graph.node.remove(quantize)
        removed += 1
    _drop_dead(graph)
    return removed
