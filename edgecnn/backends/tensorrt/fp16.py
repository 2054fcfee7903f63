"""The fp16 graph TensorRT 11 builds fp16 engines from (strongly typed: precision comes from the graph)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.backends.tensorrt.graph import rename_inputs, save_model
from edgecnn.errors import require

_FLOAT, _FLOAT16 = 1, 10  # onnx.TensorProto data types


def convert_onnx_fp16(onnx_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """An fp16 copy of a float32 ONNX model whose input and output stay float32.

    TensorRT 11 builds every network strongly typed: precision comes from the graph, not from a
    builder flag. Weights and constants become fp16, a Cast follows the input and precedes the
    output, so runners and the golden set keep feeding float32. Resize's roi/scales stay float32
    (the ONNX spec types them so).
    """
    onnx = require("onnx", "export", "fp16 ONNX conversion")
    from onnx import helper, numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    _halve_constants(graph, numpy_helper)
    casts_in = [_cast_input(graph, graph_input, helper) for graph_input in graph.input
                if graph_input.type.tensor_type.elem_type == _FLOAT]
    casts_out = [_cast_output(graph, graph_output, helper) for graph_output in graph.output
                 if graph_output.type.tensor_type.elem_type == _FLOAT]
    nodes = casts_in + list(graph.node) + casts_out
    del graph.node[:]
    graph.node.extend(nodes)
    # Intermediate types changed; let consumers re-infer them rather than trust stale float32 entries.
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return save_model(onnx, model, out_path)


def _halve_constants(graph: Any, numpy_helper: Any) -> None:
    """Float32 initializers, Constant/ConstantOfShape values and Casts to float32 become fp16."""
    keep_float = {node.input[i] for node in graph.node if node.op_type == "Resize"
                  for i in (1, 2) if len(node.input) > i and node.input[i]}

    def half(tensor, name=None):
        return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), name)

    for init in graph.initializer:
        if init.data_type == _FLOAT and init.name not in keep_float:
            init.CopyFrom(half(init, init.name))
    for node in graph.node:
        is_constant = (node.op_type == "Constant" and node.output[0] not in keep_float) \
            or node.op_type == "ConstantOfShape"
        for attr in node.attribute:
            if is_constant and attr.name == "value" and attr.t.data_type == _FLOAT:
                attr.t.CopyFrom(half(attr.t))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == _FLOAT:
                attr.i = _FLOAT16


def _cast_input(graph: Any, graph_input: Any, helper: Any) -> Any:
    """Readers of a float32 input read its fp16 cast instead; returns the Cast."""
    half = f"{graph_input.name}__fp16"
    rename_inputs(graph.node, {graph_input.name: half})
    return helper.make_node("Cast", [graph_input.name], [half], to=_FLOAT16, name=f"{graph_input.name}_to_fp16")


def _cast_output(graph: Any, graph_output: Any, helper: Any) -> Any:
    """The producer of a float32 output writes an fp16 tensor the returned Cast turns back into float32."""
    half = f"{graph_output.name}__fp16"
    for node in graph.node:
        for index, name in enumerate(node.output):
            if name == graph_output.name:
                node.output[index] = half
    rename_inputs(graph.node, {graph_output.name: half})
    return helper.make_node("Cast", [half], [graph_output.name], to=_FLOAT, name=f"{graph_output.name}_to_fp32")
