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
    """The named ops' first outputs on `inputs` (fp32 compute), matched by output position: the compiled
    graph fuses and renames ops, so its own node names say nothing."""
    import openvino as ov

    ops = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    wanted = [name for name in names if name in ops]
    first_added = len(model.outputs)
    model.add_outputs([ops[name].output(0) for name in wanted])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    found: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
    for image in inputs:  # one image at a time: the IR may have a static batch of 1
        results = compiled(np.ascontiguousarray(image[None], dtype=np.float32))
        for index, name in enumerate(wanted):
            found[name].append(np.asarray(results[compiled.outputs[first_added + index]]))
    return {name: np.concatenate(values) for name, values in found.items()}


def _input_fq(op):
    """The activation FakeQuantize in front of a quantized op (through data-movement ops), or None."""
    for node, port in _fq_inputs(op):
        return node.input_value(port).get_node()
    return None


def ov_layers(int8_xml: str | Path, fp32_xml: str | Path, inputs: np.ndarray) -> list[Layer]:
    """The quantized layers of an NNCF IR, with the SQNR of each one's int8 input (its FakeQuantize output,
    dequantized) against the fp32 IR's tensor there.

    The layer's own output is not comparable: the CPU plugin moves int8 dequantization scales past
    convolutions, so a convolution's raw output in the int8 graph is scaled differently.
    """
    from edgecnn.backends.onnxruntime.sensitivity import sqnr_db

    ops = quantized_ops(read_model(int8_xml))
    fqs = {op.get_friendly_name(): _input_fq(op) for op in ops}
    sources = {name: fq.input_value(0).get_node().get_friendly_name() for name, fq in fqs.items() if fq is not None}
    images = inputs[:SQNR_SAMPLES]
    reference = _outputs(read_model(fp32_xml), sorted(set(sources.values())), images)
    quantized = _outputs(read_model(int8_xml), sorted({fq.get_friendly_name() for fq in fqs.values() if fq}), images)
    layers = []
    for op in ops:
        name, fq = op.get_friendly_name(), fqs.get(op.get_friendly_name())
        value = None
        if fq is not None and sources[name] in reference and fq.get_friendly_name() in quantized:
            value = sqnr_db(reference[sources[name]], quantized[fq.get_friendly_name()])
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
