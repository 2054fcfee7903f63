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
            if extra is None:  # no int8 mix passed and ran faster than fp32: the fp32 IR is the result
                continue
        else:
            ctx.stage(f"converting to OpenVINO IR ({precision})")
            _, seconds = timed(lambda: export_openvino(onnx_path, xml, precision=precision))
            seconds += onnx_s if precision == "fp32" else 0.0
            extra = {}
        ctx.add([xml, xml.with_suffix(".bin")], format="openvino", runtime="openvino", precision=precision,
                seconds=seconds, **extra)


# Measured on EfficientNet-Lite1/Lite2 (150 calibration photos, 150 other photos as the golden set, 7-bit
# weights, AMD EPYC AVX2): the mixed preset (asymmetric activations) agrees with PyTorch on 98.67 % / 96.67 %,
# the performance preset (symmetric) 98.00 % / 96.00 %, at the same speed; SmoothQuant on convolutions
# (alpha 0.5) changed nothing, outlier-robust activation ranges (mean of per-image min/max) lost ~25 points
# (ReLU6 ranges clipped), and channel alignment fails inside NNCF 3.4. So: mixed first, performance next.
PRESETS = ("mixed", "performance")


def _quantize(ctx: "BuildContext", xml) -> tuple[float, dict | None]:
    """NNCF int8, held to verify's gate (edgecnn.quantize): (seconds, entry extras), None extras: no int8 kept."""
    import shutil

    from edgecnn.backends.openvino.fallback import keep_in_float, ov_layers
    from edgecnn.quantize import Int8Plan

    fp32_xml = ctx.writer.path("openvino/model.fp32.xml")
    found: dict = {}
    recipes = [_recipe(ctx, fp32_xml, preset, found) for preset in PRESETS]
    inputs = ctx.data.golden_inputs
    plan = Int8Plan(runtime="openvino", fp32_path=fp32_xml, scratch=ctx.scratch / "openvino",
                    layers=lambda full: ov_layers(full, fp32_xml, inputs), make=keep_in_float,
                    requantize=lambda recipe, nodes, out: _nncf(ctx, fp32_xml, out, recipe, found=found, ignored=nodes))
    (decision, record), seconds = timed(lambda: ctx.search_int8(plan, recipes))
    q = found[decision.recipe["preset"], bool(decision.recipe.get("requantized"))]
    ctx.calibration_details["openvino"] = {"preset": q.preset, "fake_quantize_nodes": q.fake_quantize_nodes,
                                           "reduce_range": ctx.profile.reduce_range,
                                           "weight_bits_note": ctx.profile.weight_bits_note}
    if decision.artifact is None:
        ctx.extra_manifest.setdefault("int8_search", {})["openvino"] = record
        return seconds, None
    shutil.copyfile(decision.artifact, xml)
    shutil.copyfile(decision.artifact.with_suffix(".bin"), xml.with_suffix(".bin"))
    return seconds, {"quantization": "NNCF post-training", "fake_quantize_nodes": q.fake_quantize_nodes,
                     "layers_in_float": len(decision.float_layers), "int8": record}


def _recipe(ctx: "BuildContext", fp32_xml, preset: str, found: dict):
    from edgecnn.quantize import Recipe

    reduce_range = ctx.profile.reduce_range
    settings = {"preset": preset, "bias_correction": "full", "reduce_range": reduce_range,
                "weight_bits": 7 if reduce_range else 8}
    activations = "asymmetric" if preset == "mixed" else "symmetric"
    return Recipe(label=f"NNCF {preset} preset ({activations} activations), full bias correction, "
                        f"{settings['weight_bits']}-bit weights", settings=settings,
                  build=lambda folder: _nncf(ctx, fp32_xml, folder / "model.int8.xml", settings, found=found))


def _nncf(ctx: "BuildContext", fp32_xml, out, recipe: dict, *, found: dict, ignored: tuple[str, ...] = ()):
    """One NNCF run with a recipe's settings; `ignored` (node names) stay float (NNCF's ignored_scope)."""
    from edgecnn.backends.openvino.quantize import quantize_openvino_int8

    ctx.stage(f"quantizing to INT8 with NNCF ({recipe['preset']} preset"
              + (f", {len(ignored)} layer(s) in its ignored scope)" if ignored else ")"))
    q = quantize_openvino_int8(fp32_xml, out, ctx.data.calibration, preset=recipe["preset"],
                               reduce_range=recipe["reduce_range"], ignored_nodes=tuple(ignored))
    found[recipe["preset"], bool(ignored)] = q
    return q.xml_path


def quantize_file(model, out, images, *, method: str = "minmax", symmetric: bool = False) -> str:
    """`edgecnn quantize MODEL.onnx --out X.xml`: NNCF post-training int8 IR; returns what was written.

    NNCF chooses its own ranges and symmetry (the mixed preset), so `method` and `symmetric` do not apply.
    """
    from edgecnn.backends.openvino.quantize import quantize_openvino_int8

    result = quantize_openvino_int8(model, out, images)
    return (f"wrote {out}: {result.fake_quantize_nodes} FakeQuantize nodes, NNCF {result.preset} preset, "
            f"{result.calibration_size} calibration images")
