"""The export pipeline's TensorRT step: the engine-source ONNX graphs, build_engine.sh and a README.

The engine itself is built where TensorRT is (the Jetson): here when TensorRT imports, else on the
device with `bash build_engine.sh` or `edgecnn build`. The ONNX graphs run in ONNX Runtime with the
same Q/DQ semantics TensorRT gives them, so their parity with PyTorch is checked here, at export.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from edgecnn.backends.onnxruntime import BACKEND as ONNX_RUNTIME
from edgecnn.backends.tensorrt.bundle_parts import TensorRTBundleParts, prepare_tensorrt_bundle
from edgecnn.backends.tensorrt.engine import build_engine, register_engines
from edgecnn.backends.tensorrt.plans import MANIFEST_SECTION
from edgecnn.build_context import timed

if TYPE_CHECKING:  # pragma: no cover
    from edgecnn.build_context import BuildContext


def build(ctx: "BuildContext") -> None:
    """fp32 ONNX + the fp16 / Q/DQ int8 graphs TensorRT builds from, build_engine.sh and a README."""
    fp32_path = ctx.writer.path("onnx/model.fp32.onnx")
    result, seconds = timed(lambda: ctx.onnx_fp32(fp32_path))
    ctx.add([fp32_path], format=ONNX_RUNTIME.format, runtime=ONNX_RUNTIME.name, precision="fp32",
            seconds=seconds, opset=result.opset, purpose="TensorRT engine source")
    ctx.stage("preparing the TensorRT parts (Q/DQ int8 for explicit quantization, build_engine.sh)")
    parts, seconds = timed(lambda: prepare_tensorrt_bundle(
        ctx.writer.root, fp32_path, ctx.profile, input_spec={**ctx.input_record, "batch": ctx.batch_record},
        model_name=ctx.loaded.name, precision=ctx.precision, calibration_batches=ctx.data.calibration,
        method=ctx.request.calib_method, bundle_name=ctx.request.out.name,
        refine=(lambda qdq: _keep_sensitive_layers_float(ctx, fp32_path, qdq)) if ctx.precision == "int8" else None))
    for entry in parts.artifacts:
        ctx.add([ctx.writer.root / entry.path], format=entry.format, runtime=entry.runtime,
                precision=entry.precision, seconds=seconds, **entry.extra)
    ctx.extra_manifest[MANIFEST_SECTION] = parts.manifest_section
    if importlib.util.find_spec("tensorrt") is not None:
        _build_engines_here(ctx, parts)
    else:
        ctx.next_steps.extend(parts.messages)


def _keep_sensitive_layers_float(ctx: "BuildContext", fp32_path: Path, qdq_path: Path) -> dict:
    """Hold the Q/DQ graph to verify's gate (checked in ONNX Runtime, as its parity is); when it misses,
    remove the Q/DQ pairs of the most sensitive layers, which TensorRT then builds in fp16/fp32."""
    import shutil

    from edgecnn.backends.onnxruntime.build import int8_plan
    from edgecnn.backends.tensorrt.qdq_check import check_tensorrt_qdq
    from edgecnn.quantize import Recipe

    from edgecnn.backends.tensorrt.quantize import quantize_qdq_int8

    def written(folder: Path) -> Path:
        return Path(shutil.copyfile(qdq_path, folder / qdq_path.name))

    def eight_bit(folder: Path) -> Path:
        ctx.stage("quantizing the TensorRT Q/DQ graph again with 8-bit weights")
        return quantize_qdq_int8(fp32_path, folder / qdq_path.name, ctx.data.calibration,
                                 method=ctx.request.calib_method, reduce_range=False).path

    plan = int8_plan(ctx, fp32_path, runtime=ONNX_RUNTIME.name)
    # ONNX Runtime's speed on a symmetric Q/DQ graph says nothing about TensorRT's: candidates are not timed.
    plan.timed = False

    def requantize(recipe: dict, nodes: tuple[str, ...], out: Path) -> Path:
        ctx.stage(f"quantizing the TensorRT Q/DQ graph again, {len(nodes)} layer(s) excluded")
        return quantize_qdq_int8(fp32_path, out, ctx.data.calibration, method=ctx.request.calib_method,
                                 reduce_range=recipe["reduce_range"], nodes_to_exclude=nodes).path

    plan.requantize = requantize
    settings = {"method": ctx.request.calib_method, "symmetric": True, "per_channel": True}
    # 7-bit weights first (the host check then does not saturate on AVX2 CPUs); TensorRT itself runs
    # 8-bit weights at the same speed, so they are tried when 7 bits miss the gate.
    recipes = [Recipe(label=f"symmetric Q/DQ, {ctx.request.calib_method}, per-channel 7-bit weights",
                      settings={**settings, "reduce_range": True}, build=written),
               Recipe(label=f"symmetric Q/DQ, {ctx.request.calib_method}, per-channel 8-bit weights",
                      settings={**settings, "reduce_range": False}, build=eight_bit)]
    decision, record = ctx.search_int8(plan, recipes)
    record["note"] = (record.get("note") or "") + ("latency not compared with fp32 here: TensorRT is not on this "
                                                   "host; bench the engines on the device")
    if decision.artifact is not None:
        shutil.copyfile(decision.artifact, qdq_path)
    if decision.float_layers:
        # A layer kept in float on purpose is what the "not fed by DequantizeLinear" rule reports.
        kept = [f"'{layer['node']}'" for layer in decision.float_layers]
        problems = [p for p in check_tensorrt_qdq(qdq_path) if not any(name in p for name in kept)]
        if problems:
            # Still a valid graph: TensorRT builds it, with that layer in float too. Said, not refused.
            record["trt_rule_notes"] = problems
            ctx.warnings.append(f"with {len(kept)} layer(s) in float the Q/DQ graph also leaves "
                                f"{len(problems)} other layer(s) outside TensorRT's int8 fusions: {problems[0]}")
    return {"layers_in_float": len(decision.float_layers), "int8": record}


def _build_engines_here(ctx: "BuildContext", parts: TensorRTBundleParts) -> None:
    """TensorRT imports on this machine: build the planned engines now, register them in the final bundle."""
    ctx.stage("TensorRT found here: building the engines")
    staging = ctx.writer.root
    results = [build_engine(staging / plan.source, staging / plan.engine, ctx.profile, plan.precision)
               for plan in parts.plans]

    def register(root: Path) -> None:
        # The engines were built in the staging folder that has since been renamed to `root`.
        moved = [replace(r, path=root / Path(r.path).relative_to(staging),
                         source=root / Path(r.source).relative_to(staging)) for r in results]
        register_engines(root, moved)

    ctx.deferred.append(register)
    ctx.next_steps.append(f"built {len(results)} TensorRT engine(s) on this machine; they run only on "
                          "this GPU and TensorRT version")
