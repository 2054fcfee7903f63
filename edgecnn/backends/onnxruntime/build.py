"""The export step for ONNX Runtime targets: the fp32 ONNX graph (BN folded, slimmed).

Its static QDQ int8 graph is the pipeline's INT8 step, with this runtime's INT8 method (int8.py).
"""

from __future__ import annotations

from edgecnn.build_context import timed


def build(ctx) -> None:
    """onnx/model.fp32.onnx, checked against the reference (`ctx` is an edgecnn.build_context.BuildContext)."""
    fp32_path = ctx.writer.path("onnx/model.fp32.onnx")
    result, seconds = timed(lambda: ctx.onnx_fp32(fp32_path))
    ctx.add([fp32_path], format="onnx", runtime="onnxruntime", precision="fp32", seconds=seconds,
            opset=result.opset, nodes=result.node_count_after)


def quantize_file(model, out, images, *, method: str = "minmax", symmetric: bool = False) -> str:
    """`edgecnn quantize MODEL.onnx --out X.onnx`: static QDQ int8; returns what was written."""
    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8

    result = quantize_onnx_int8(model, out, images, method=method, symmetric=symmetric)
    return (f"wrote {out}: {result.node_count_before} -> {result.node_count_after} nodes, "
            f"{result.activation_type} activations, {result.weight_type} per-channel weights, "
            f"{result.calibration_method} calibration on {result.calibration_size} images")
