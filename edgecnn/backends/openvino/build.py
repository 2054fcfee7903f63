"""The export step for OpenVINO targets: fp32 IR from the fp32 ONNX, plus an fp16 IR.

The NNCF int8 IR is the pipeline's INT8 step, with this runtime's INT8 method (int8.py).
"""

from __future__ import annotations

from edgecnn.build_context import timed


def build(ctx) -> None:
    """openvino/model.fp32.xml (+ fp16), each checked against the reference (`ctx`: a BuildContext)."""
    from edgecnn.backends.openvino.convert import export_openvino

    onnx_path = ctx.scratch / "model.fp32.onnx"
    _, onnx_s = timed(lambda: ctx.onnx_fp32(onnx_path))
    for precision in ctx.precisions:
        if precision == "int8":
            continue
        xml = ctx.writer.path(f"openvino/model.{precision}.xml")
        ctx.stage(f"converting to OpenVINO IR ({precision})")
        _, seconds = timed(lambda: export_openvino(onnx_path, xml, precision=precision))
        seconds += onnx_s if precision == "fp32" else 0.0
        ctx.add([xml, xml.with_suffix(".bin")], format="openvino", runtime="openvino", precision=precision,
                seconds=seconds)


def quantize_file(model, out, images, *, method: str = "minmax", symmetric: bool = False) -> str:
    """`edgecnn quantize MODEL.onnx --out X.xml`: NNCF post-training int8 IR; returns what was written.

    NNCF chooses its own ranges and symmetry (the mixed preset), so `method` and `symmetric` do not apply.
    """
    from edgecnn.backends.openvino.quantize import quantize_openvino_int8

    result = quantize_openvino_int8(model, out, images)
    return (f"wrote {out}: {result.fake_quantize_nodes} FakeQuantize nodes, NNCF {result.preset} preset, "
            f"{result.calibration_size} calibration images")
