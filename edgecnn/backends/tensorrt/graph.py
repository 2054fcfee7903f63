"""ONNX graph helpers the TensorRT graph passes share (Q/DQ placement, the rule check, fp16)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecnn.atomic import write_atomic

# Ops TensorRT fuses into the weighted layer in front of them (conv/gemm + bias + activation).
ACTIVATIONS = frozenset({"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Elu", "Selu",
                         "Softplus", "Tanh", "PRelu", "ThresholdedRelu"})
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def producers_of(graph: Any) -> dict[str, Any]:
    """Tensor name -> the node that writes it."""
    return {out: node for node in graph.node for out in node.output}


def consumers_of(graph: Any) -> dict[str, list]:
    """Tensor name -> the nodes that read it."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def rename_inputs(nodes: Any, renames: dict[str, str]) -> None:
    """Point every node input named in `renames` at its new tensor."""
    for node in nodes:
        for index, name in enumerate(node.input):
            if name in renames:
                node.input[index] = renames[name]


def save_model(onnx: Any, model: Any, path: str | Path) -> Path:
    """Save an ONNX model atomically (a reader never sees half a graph)."""
    return write_atomic(path, lambda tmp: onnx.save(model, tmp))
