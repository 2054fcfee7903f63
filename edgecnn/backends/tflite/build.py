"""The TFLite export step: tflite/model.fp32.tflite (+ the fp16 or int8 file) for a bundle.

A full-integer int8 file is held to verify's gate like every int8 artifact (edgecnn.quantize): scored on
the golden set, timed on this host against the fp32 file, its layers' SQNR recorded. When it misses, the
most sensitive PyTorch modules (convolutions and linears) are kept in float by selective quantization:
their nodes get no PT2E annotation, so litert-torch leaves them float. Each candidate is a new
conversion, so on a large model the budget allows only a few.
"""

from __future__ import annotations

import shutil

from edgecnn.backends.tflite.convert import export_tflite


def build(ctx) -> None:
    """Convert the model once per precision with litert-torch; ctx.add checks each file's parity."""
    for precision in ctx.precisions:
        path = ctx.writer.path(f"tflite/model.{precision}.tflite")
        ctx.stage(f"converting to TFLite with litert-torch ({precision})")
        int8 = precision == "int8"
        if int8 and ctx.request.tflite_int8_scheme == "full-integer":
            result, extra = _full_integer(ctx, path)
            if result is None:
                continue
        else:
            result, extra = _convert(ctx, path, precision), {}
        ctx.add([path], format="tflite", runtime="tflite", precision=precision, seconds=result.export_s,
                batch=result.batch_size, quantization=result.quantization, ops=result.op_counts, **extra)
    if not ctx.fusion:
        ctx.fusion = {"note": "TFLite conversion folds BatchNorm inside litert-torch"}


def _convert(ctx, path, precision, float_modules=()):
    int8 = precision == "int8"
    result = export_tflite(ctx.torch_model, ctx.preprocess.input_shape, path, precision=precision,
                           calibration=ctx.data.calibration if int8 else None, float_modules=tuple(float_modules),
                           **({"int8_scheme": ctx.request.tflite_int8_scheme} if int8 else {}))
    if float_modules:
        return result
    for warning in result.warnings:
        if warning not in ctx.warnings:
            ctx.warnings.append(warning)
    return result


def _full_integer(ctx, path):
    """The full-integer file through edgecnn.quantize's gate: (export result, entry extras), or (None, None)."""
    from edgecnn.backends.tflite.sensitivity import tflite_layers
    from edgecnn.quantize import Int8Plan, Recipe

    fp32 = ctx.writer.path("tflite/model.fp32.tflite")
    found = {}

    def write(folder):
        found["result"] = _convert(ctx, folder / path.name, "int8")
        return found["result"].path

    recipe = Recipe(label="litert-torch PT2E full-integer, per-channel weights, conv+ReLU6 fused", build=write,
                    settings={"per_channel": True, "activation_observer": "histogram", "conv_relu6_fused": True})
    inputs = ctx.data.golden_inputs

    def make(full, modules, out):
        ctx.stage(f"converting to TFLite with {len(modules)} module(s) in float")
        return _convert(ctx, out, "int8", float_modules=modules).path

    plan = Int8Plan(runtime="tflite", fp32_path=fp32, scratch=ctx.scratch / "tflite",
                    layers=lambda full: _module_layers(ctx.torch_model, tflite_layers(full, fp32, inputs)), make=make)
    decision, record = ctx.search_int8(plan, [recipe])
    shutil.copyfile(decision.artifact, path)
    names = _layer_names(ctx.torch_model, tflite_layers(path, fp32, inputs[:0]))
    return found["result"], {"int8": record, "layers_in_float": len(decision.float_layers), "layer_names": names}


def _weighted_modules(model) -> dict[str, str]:
    from torch import nn

    return {name: type(m).__name__ for name, m in model.named_modules()
            if name and isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))}


def _layer_names(model, ops) -> dict[str, str]:
    """{tensor name: module path} for the file's ops: what `edgecnn explain` shows without the model.

    By litert-torch's call paths first; the convolutions and linears it cannot name (the classifier's
    output is renamed `serving_default_...`) by their order, where the file's and the model's line up."""
    from edgecnn.backends.tflite.sensitivity import module_keys, resolve

    weighted = _weighted_modules(model)
    keys = module_keys(model)
    names = {op.node: found for op in ops if (found := resolve(op.node, keys, set(weighted)))}
    ordered = [op for op in ops if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    if len(ordered) == len(weighted):
        for op, module in zip(ordered, weighted):
            names.setdefault(op.node, module)
    return names


def _module_layers(model, ops):
    """The model's convolutions and linears as layers (node = module path), each with the SQNR of the
    file's op that computes it (named by litert-torch's call path, else paired in order)."""
    from edgecnn.quantize import Layer

    names = _layer_names(model, ops)
    sqnr = {names[op.node]: op.sqnr_db for op in ops if op.node in names}
    return [Layer(node=name, op=kind, user_name=name, sqnr_db=sqnr.get(name))
            for name, kind in _weighted_modules(model).items()]
