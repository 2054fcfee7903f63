"""The TFLite export step: tflite/model.fp32.tflite (+ the fp16 or int8 file) for a bundle."""

from __future__ import annotations

from edgecnn.backends.tflite.convert import export_tflite


def build(ctx) -> None:
    """Convert the model once per precision with litert-torch; ctx.add checks each file's parity."""
    for precision in ctx.precisions:
        path = ctx.writer.path(f"tflite/model.{precision}.tflite")
        ctx.stage(f"converting to TFLite with litert-torch ({precision})")
        int8 = precision == "int8"
        result = export_tflite(ctx.torch_model, ctx.preprocess.input_shape, path, precision=precision,
                               calibration=ctx.data.calibration if int8 else None,
                               **({"int8_scheme": ctx.request.tflite_int8_scheme} if int8 else {}))
        for warning in result.warnings:
            if warning not in ctx.warnings:
                ctx.warnings.append(warning)
        ctx.add([path], format="tflite", runtime="tflite", precision=precision, seconds=result.export_s,
                batch=result.batch_size, quantization=result.quantization, ops=result.op_counts)
    if not ctx.fusion:
        ctx.fusion = {"note": "TFLite conversion folds BatchNorm inside litert-torch"}
