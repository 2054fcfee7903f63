"""The export step for ONNX Runtime targets: fp32 ONNX (BN folded, slimmed) and a static QDQ int8 graph."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgecnn.build_context import timed

if TYPE_CHECKING:  # pragma: no cover
    from edgecnn.build_context import BuildContext


def build(ctx: "BuildContext") -> None:
    fp32_path = ctx.writer.path("onnx/model.fp32.onnx")
    result, seconds = timed(lambda: ctx.onnx_fp32(fp32_path))
    ctx.add([fp32_path], format="onnx", runtime="onnxruntime", precision="fp32", seconds=seconds,
            opset=result.opset, nodes=result.node_count_after)
    if ctx.precision != "int8":
        return
    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8

    int8_path = ctx.writer.path("onnx/model.int8.onnx")
    ctx.stage(f"quantizing to INT8 with ONNX Runtime ({ctx.request.calib_method}, per-channel)")
    q, seconds = timed(lambda: quantize_onnx_int8(fp32_path, int8_path, ctx.data.calibration,
                                                  method=ctx.request.calib_method))
    ctx.calibration_details["onnxruntime"] = {"activation_type": q.activation_type, "weight_type": q.weight_type,
                                              "per_channel": q.per_channel, "symmetric": q.symmetric,
                                              "reduce_range": q.reduce_range}
    ctx.add([int8_path], format="onnx", runtime="onnxruntime", precision="int8", seconds=seconds,
            quantization="static QDQ", nodes=q.node_count_after)


def quantize_file(model, out, images, *, method: str = "minmax", symmetric: bool = False) -> str:
    """`edgecnn quantize MODEL.onnx --out X.onnx`: static QDQ int8; returns what was written."""
    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8

    result = quantize_onnx_int8(model, out, images, method=method, symmetric=symmetric)
    return (f"wrote {out}: {result.node_count_before} -> {result.node_count_after} nodes, "
            f"{result.activation_type} activations, {result.weight_type} per-channel weights, "
            f"{result.calibration_method} calibration on {result.calibration_size} images")
