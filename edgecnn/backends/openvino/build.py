"""The export step for OpenVINO targets: fp32 IR from the fp32 ONNX, plus an fp16 IR or an NNCF int8 IR."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgecnn.build_context import timed

if TYPE_CHECKING:  # pragma: no cover
    from edgecnn.build_context import BuildContext


def build(ctx: "BuildContext") -> None:
    from edgecnn.backends.openvino.convert import export_openvino

    onnx_path = ctx.scratch / "model.fp32.onnx"
    _, onnx_s = timed(lambda: ctx.onnx_fp32(onnx_path))
    for precision in ctx.precisions:
        xml = ctx.writer.path(f"openvino/model.{precision}.xml")
        if precision == "int8":
            seconds, extra = _quantize(ctx, xml)
        else:
            ctx.stage(f"converting to OpenVINO IR ({precision})")
            _, seconds = timed(lambda: export_openvino(onnx_path, xml, precision=precision))
            seconds += onnx_s if precision == "fp32" else 0.0
            extra = {}
        ctx.add([xml, xml.with_suffix(".bin")], format="openvino", runtime="openvino", precision=precision,
                seconds=seconds, **extra)


def _quantize(ctx: "BuildContext", xml) -> tuple[float, dict]:
    from edgecnn.backends.openvino.quantize import quantize_openvino_int8

    fp32_xml = ctx.writer.path("openvino/model.fp32.xml")
    ctx.stage("quantizing to INT8 with NNCF (post-training, OpenVINO model)")
    q, seconds = timed(lambda: quantize_openvino_int8(fp32_xml, xml, ctx.data.calibration,
                                                      reduce_range=ctx.profile.reduce_range))
    ctx.calibration_details["openvino"] = {"preset": q.preset, "fake_quantize_nodes": q.fake_quantize_nodes,
                                           "reduce_range": ctx.profile.reduce_range,
                                           "weight_bits_note": ctx.profile.weight_bits_note}
    return seconds, {"quantization": "NNCF post-training", "fake_quantize_nodes": q.fake_quantize_nodes}


def quantize_file(model, out, images, *, method: str = "minmax", symmetric: bool = False) -> str:
    """`edgecnn quantize MODEL.onnx --out X.xml`: NNCF post-training int8 IR; returns what was written.

    NNCF chooses its own ranges and symmetry (the mixed preset), so `method` and `symmetric` do not apply.
    """
    from edgecnn.backends.openvino.quantize import quantize_openvino_int8

    result = quantize_openvino_int8(model, out, images)
    return (f"wrote {out}: {result.fake_quantize_nodes} FakeQuantize nodes, NNCF {result.preset} preset, "
            f"{result.calibration_size} calibration images")
