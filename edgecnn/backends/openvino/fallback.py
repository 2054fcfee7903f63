"""OpenVINO INT8 layers: their SQNR against the fp32 IR, and candidates with chosen layers in float.

NNCF puts a FakeQuantize on each quantized layer's activation input (its weights are stored int8 and
dequantized). Keeping a layer in float is wiring that input past its FakeQuantize: the CPU plugin then
runs the layer in float on its dequantized weights, and every other layer stays as NNCF calibrated it.
NNCF's `ignored_scope` (`quantize_openvino_int8(ignored_nodes=...)`) gives the same at quantization
time; the search rewires instead because that takes one NNCF run for all candidates, not one each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.backends.openvino.convert import read_model, save_ir
from edgecnn.quantize.names import module_path
from edgecnn.quantize.search import Layer

SQNR_SAMPLES = 8
_LAYER_TYPES = {"Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData", "Add", "Multiply",
                "AvgPool", "MaxPool", "Concat", "ReduceMean"}
# Ops between a FakeQuantize and the layer that reads it which only move data (a classifier's Flatten).
_TRANSPARENT = {"Reshape", "Squeeze", "Unsqueeze", "Transpose"}


def _fq_inputs(op) -> list[tuple]:
    """(node, port) pairs fed by a FakeQuantize that quantizes one of `op`'s activations (not a weight)."""
    found = []
    for index, value in enumerate(op.input_values()):
        node, port = op, index
        source = value.get_node()
        while source.get_type_name() in _TRANSPARENT:
            node, port, source = source, 0, source.input_value(0).get_node()
        if source.get_type_name() == "FakeQuantize" and source.input_value(0).get_node().get_type_name() != "Constant":
            found.append((node, port))
    return found


def quantized_ops(model) -> list:
    return [op for op in model.get_ordered_ops() if op.get_type_name() in _LAYER_TYPES and _fq_inputs(op)]


def _outputs(model, names: list[str], inputs: np.ndarray) -> dict[str, np.ndarray]:
    import openvino as ov

    ops = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    wanted = [name for name in names if name in ops]
    model.add_outputs([ops[name].output(0) for name in wanted])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    results = compiled(np.ascontiguousarray(inputs, dtype=np.float32))
    found = {}
    for output in compiled.outputs:
        node = output.get_node().input_value(0).get_node()
        if node.get_friendly_name() in wanted:
            found[node.get_friendly_name()] = np.asarray(results[output])
    return found


def ov_layers(int8_xml: str | Path, fp32_xml: str | Path, inputs: np.ndarray) -> list[Layer]:
    """The quantized layers of an NNCF IR, with the SQNR of each one's output against the fp32 IR's."""
    from edgecnn.backends.onnxruntime.sensitivity import sqnr_db

    int8 = read_model(int8_xml)
    names = [op.get_friendly_name() for op in quantized_ops(int8)]
    images = inputs[:SQNR_SAMPLES]
    reference = _outputs(read_model(fp32_xml), names, images)
    quantized = _outputs(read_model(int8_xml), names, images)
    layers = []
    for op in quantized_ops(read_model(int8_xml)):
        name = op.get_friendly_name()
        value = sqnr_db(reference[name], quantized[name]) if name in reference and name in quantized else None
        layers.append(Layer(node=name, op=op.get_type_name(), user_name=module_path(name),
                            sqnr_db=value if value is not None and np.isfinite(value) else None))
    return layers


def keep_in_float(full_xml: Path, nodes: tuple[str, ...], out_xml: Path) -> Path:
    """An IR where the named layers read their activations past their FakeQuantize (float compute)."""
    model = read_model(full_xml)
    wanted = set(nodes)
    for op in model.get_ordered_ops():
        if op.get_friendly_name() not in wanted:
            continue
        for node, port in _fq_inputs(op):
            node.input(port).replace_source_output(node.input_value(port).get_node().input_value(0))
    model.validate_nodes_and_infer_types()
    xml, _ = save_ir(model, Path(out_xml), compress_to_fp16=False)
    return xml
