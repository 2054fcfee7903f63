"""The export step for ONNX Runtime targets: fp32 ONNX (BN folded, slimmed) and a static QDQ int8 graph.

The int8 graph is chosen by measurement (edgecnn.quantize): the recipe (calibration method; 8- or 7-bit
weights as the profile's cpu_vnni says), then, when it misses verify's gate, the most sensitive layers
kept in float (their Q/DQ pairs removed), as long as the result still runs faster than fp32.
"""

from __future__ import annotations

import shutil
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
    int8_path = ctx.writer.path("onnx/model.int8.onnx")
    (decision, record), seconds = timed(lambda: ctx.search_int8(int8_plan(ctx, fp32_path), ort_recipes(ctx, fp32_path)))
    recipe = decision.recipe
    ctx.calibration_details["onnxruntime"] = {k: recipe.get(k) for k in ("activation_type", "weight_type",
                                              "per_channel", "symmetric", "reduce_range", "method")}
    ctx.calibration_details["onnxruntime"]["weight_bits_note"] = ctx.profile.weight_bits_note
    if decision.artifact is None:
        ctx.extra_manifest.setdefault("int8_search", {})["onnxruntime"] = record
        return
    shutil.copyfile(decision.artifact, int8_path)
    ctx.add([int8_path], format="onnx", runtime="onnxruntime", precision="int8", seconds=seconds,
            quantization="static QDQ", layers_in_float=len(decision.float_layers), int8=record)


def int8_plan(ctx: "BuildContext", fp32_path, *, runtime: str = "onnxruntime"):
    """How ONNX Runtime's candidates are written and read: Q/DQ pairs removed, SQNR measured in ORT."""
    from edgecnn.backends.onnxruntime.sensitivity import FloatFallback, onnx_layers
    from edgecnn.quantize import Int8Plan

    inputs = ctx.data.golden_inputs
    return Int8Plan(runtime=runtime, fp32_path=fp32_path, scratch=ctx.scratch / runtime,
                    layers=lambda full: onnx_layers(full, fp32_path, inputs), make=FloatFallback(fp32_path),
                    requantize=lambda recipe, nodes, out: requantize(ctx, fp32_path, recipe, nodes, out))


def requantize(ctx: "BuildContext", fp32_path, recipe: dict, nodes: tuple[str, ...], out):
    """The chosen layers excluded by quantize_static itself (nodes_to_exclude), calibrated again without them."""
    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8

    ctx.stage(f"quantizing again with ONNX Runtime, {len(nodes)} layer(s) excluded")
    q = quantize_onnx_int8(fp32_path, out, ctx.data.calibration, method=recipe["method"],
                           reduce_range=recipe["reduce_range"], nodes_to_exclude=nodes)
    _float_logits(q.path)
    return q.path


def ort_recipes(ctx: "BuildContext", fp32_path) -> list:
    """The requested calibration method first; percentile calibration next when minmax misses the gate."""
    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8
    from edgecnn.quantize import Recipe

    methods = [ctx.request.calib_method] + (["percentile"] if ctx.request.calib_method == "minmax" else [])
    reduce_range = ctx.profile.reduce_range

    def recipe(method: str) -> Recipe:
        settings = {"method": method, "per_channel": True, "reduce_range": reduce_range,
                    "weight_bits": 7 if reduce_range else 8}

        def write(folder):
            ctx.stage(f"quantizing to INT8 with ONNX Runtime ({method}, per-channel, "
                      f"{settings['weight_bits']}-bit weights)")
            q = quantize_onnx_int8(fp32_path, folder / "model.int8.onnx", ctx.data.calibration, method=method,
                                   reduce_range=reduce_range)
            settings.update(activation_type=q.activation_type, weight_type=q.weight_type, symmetric=q.symmetric,
                            float_logits=_float_logits(q.path) > 0)
            return q.path

        return Recipe(label=f"{method}, per-channel, {settings['weight_bits']}-bit weights, float logits", settings=settings,
                      build=write)

    return [recipe(method) for method in methods]


def _float_logits(path) -> int:
    """The logits stay float (no Q/DQ pair on the graph output): 8-bit logits only cost accuracy."""
    import onnx

    from edgecnn.quantize.qdq import float_outputs

    model = onnx.load(str(path))
    removed = float_outputs(model)
    if removed:
        onnx.save(model, str(path))
    return removed


def quantize_file(model, out, images, *, method: str = "minmax", symmetric: bool = False) -> str:
    """`edgecnn quantize MODEL.onnx --out X.onnx`: static QDQ int8; returns what was written."""
    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8

    result = quantize_onnx_int8(model, out, images, method=method, symmetric=symmetric)
    return (f"wrote {out}: {result.node_count_before} -> {result.node_count_after} nodes, "
            f"{result.activation_type} activations, {result.weight_type} per-channel weights, "
            f"{result.calibration_method} calibration on {result.calibration_size} images")
