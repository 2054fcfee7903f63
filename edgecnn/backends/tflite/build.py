"""The TFLite export step: tflite/model.fp32.tflite (+ the fp16 file, or the weight-only int8 file).

The full-integer int8 file is the pipeline's INT8 step, with this runtime's INT8 method (int8.py).
"""

from __future__ import annotations

from edgecnn.backends.tflite.convert import export_tflite
from edgecnn.backends.tflite.int8 import FULL_INTEGER


def build(ctx) -> None:
    """Convert the model once per precision with litert-torch; ctx.add checks each file's parity."""
    for precision in ctx.precisions:
        if precision == "int8" and ctx.request.tflite_int8_scheme == FULL_INTEGER:
            continue  # the INT8 step's
        path = ctx.writer.path(f"tflite/model.{precision}.tflite")
        ctx.stage(f"converting to TFLite with litert-torch ({precision})")
        result = _convert(ctx, path, precision)
        ctx.add([path], format="tflite", runtime="tflite", precision=precision, seconds=result.export_s,
                batch=result.batch_size, quantization=result.quantization, ops=result.op_counts)
    if not ctx.fusion:
        ctx.fusion = {"note": "TFLite conversion folds BatchNorm inside litert-torch"}


def _convert(ctx, path, precision):
    int8 = precision == "int8"
    result = export_tflite(ctx.torch_model, ctx.preprocess.input_shape, path, precision=precision,
                           calibration=ctx.data.calibration if int8 else None,
                           **({"int8_scheme": ctx.request.tflite_int8_scheme} if int8 else {}))
    for warning in result.warnings:
        if warning not in ctx.warnings:
            ctx.warnings.append(warning)
    return result
