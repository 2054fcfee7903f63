"""Per-layer INT8 error of a Q/DQ ONNX graph, measured in ONNX Runtime, and its float-fallback candidates.

The SQNR of a layer is its output in the Q/DQ graph (after that output's own quantization, where it has
one) against the same tensor of the fp32 graph, on a few golden images: 10 log10(sum(ref^2) /
sum((ref - int8)^2)) dB. It is the activation-matching measure of onnxruntime.quantization.qdq_loss_debug,
computed here in one session per graph. Candidates with layers in float come from
`edgecnn.quantize.qdq.keep_in_float` (the Q/DQ pairs on those layers' inputs removed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.quantize.qdq import Fp32Graph, QuantizedLayer, keep_in_float, quantized_layers
from edgecnn.quantize.search import Layer

SQNR_SAMPLES = 8  # golden images the SQNR is measured on (activations of every layer are held at once)


def _with_outputs(model, names: list[str]):
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return model


def _run(model, inputs: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every named tensor
    session = ort.InferenceSession(_with_outputs(model, names).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.ascontiguousarray(inputs, dtype=np.float32)}
    return dict(zip(names, session.run(names, feed)))


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of `candidate` against `reference`, in dB (inf when equal)."""
    reference, candidate = reference.astype(np.float64), candidate.astype(np.float64)
    noise = float(np.sum((reference - candidate) ** 2))
    signal = float(np.sum(reference ** 2))
    if noise == 0:
        return float("inf")
    return 10.0 * float(np.log10(max(signal, 1e-30) / noise))


def _quantized_view(model, layer: QuantizedLayer) -> str:
    """The tensor that carries a layer's output as the next layer sees it: the DequantizeLinear after it."""
    consumers = [n for n in model.graph.node if layer.output in n.input and n.op_type == "QuantizeLinear"]
    for quantize in consumers:
        for node in model.graph.node:
            if node.op_type == "DequantizeLinear" and quantize.output[0] in node.input:
                return node.output[0]
    return layer.output


def onnx_layers(qdq_path: str | Path, fp32_path: str | Path, inputs: np.ndarray) -> list[Layer]:
    """The quantized layers of a Q/DQ graph with the SQNR of each one's output (None where unmatched)."""
    import onnx

    qdq, fp32 = onnx.load(str(qdq_path)), onnx.load(str(fp32_path))
    layers = quantized_layers(qdq)
    fp32_tensors = {out for node in fp32.graph.node for out in node.output}
    matched = [(layer, _quantized_view(qdq, layer)) for layer in layers if layer.output in fp32_tensors]
    images = inputs[:SQNR_SAMPLES]
    reference = _run(fp32, images, sorted({layer.output for layer, _ in matched})) if matched else {}
    quantized = _run(qdq, images, sorted({view for _, view in matched})) if matched else {}
    sqnr = {layer.node: sqnr_db(reference[layer.output], quantized[view]) for layer, view in matched}
    return [Layer(node=layer.node, op=layer.op, user_name=layer.user_name, sqnr_db=_finite(sqnr.get(layer.node)))
            for layer in layers]


def _finite(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else value


class FloatFallback:
    """Writes candidates of one Q/DQ graph with chosen layers in float (fp32 weights from the fp32 graph)."""

    def __init__(self, fp32_path: str | Path):
        self.fp32 = Fp32Graph.read(fp32_path)

    def __call__(self, full: Path, nodes: tuple[str, ...], out: Path) -> Path:
        import onnx

        model = keep_in_float(onnx.load(str(full)), set(nodes), self.fp32)
        onnx.save(model, str(out))
        return out


def explainer(int8_path: str | Path, fp32_path: str | Path, inputs: np.ndarray):
    """`edgecnn explain`: (quantized layers with SQNR, how to write a candidate with layers in float)."""
    return onnx_layers(int8_path, fp32_path, inputs), FloatFallback(fp32_path)
