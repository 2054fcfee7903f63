"""The export pipeline's TensorRT steps: the engine-source ONNX graphs, then build_engine.sh and a README.

`build` writes the fp32 graph (and the fp16 one TensorRT 11 builds fp16 engines from); the pipeline's
INT8 step writes the Q/DQ graph with this runtime's INT8 method (int8.py); `finish` plans the engines
from what the bundle then holds, writes build_engine.sh and the README, and builds the engines here
when TensorRT imports, else leaves that to the device (`bash build_engine.sh` or `edgecnn build`).
The ONNX graphs run in ONNX Runtime with the same Q/DQ semantics TensorRT gives them, so their
parity with PyTorch is checked here, at export.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

from edgecnn.backends.onnxruntime import BACKEND as ONNX_RUNTIME
from edgecnn.backends.tensorrt.bundle_parts import (
    FP16_PURPOSE, TensorRTBundleParts, kept_precisions, planned_precisions, write_engine_parts, write_fp16_graph,
)
from edgecnn.backends.tensorrt.engine import build_engine, register_engines
from edgecnn.backends.tensorrt.plans import MANIFEST_SECTION
from edgecnn.build_context import timed


def build(ctx) -> None:
    """fp32 ONNX (+ the fp16 graph when an fp16 engine is planned), each checked (`ctx`: a BuildContext)."""
    fp32_path = ctx.writer.path("onnx/model.fp32.onnx")
    result, seconds = timed(lambda: ctx.onnx_fp32(fp32_path))
    ctx.add([fp32_path], format=ONNX_RUNTIME.format, runtime=ONNX_RUNTIME.name, precision="fp32",
            seconds=seconds, opset=result.opset, purpose="TensorRT engine source")
    if "fp16" in planned_precisions(ctx.profile, ctx.precision):
        ctx.stage("writing the fp16 graph TensorRT 11 builds fp16 engines from")
        fp16_path, seconds = timed(lambda: write_fp16_graph(fp32_path))
        ctx.add([fp16_path], format=ONNX_RUNTIME.format, runtime=ONNX_RUNTIME.name, precision="fp16",
                seconds=seconds, purpose=FP16_PURPOSE)


def finish(ctx) -> None:
    """After the INT8 step: the engine plans, build_engine.sh, the README, and the engines where TensorRT is."""
    ctx.stage("preparing the TensorRT parts (engine plans, build_engine.sh)")
    planned = planned_precisions(ctx.profile, ctx.precision)
    precisions = kept_precisions(planned, ctx.entries)
    if precisions != planned:
        ctx.next_steps.append(f"no int8 engine planned: the int8 search kept no Q/DQ graph (its record is the "
                              f"manifest's int8_search); engines planned: {', '.join(precisions)}")
    parts = write_engine_parts(ctx.writer.root, ctx.entries, ctx.profile, precisions=precisions,
                               model_name=ctx.loaded.name, bundle_name=ctx.request.out.name)
    ctx.extra_manifest[MANIFEST_SECTION] = parts.manifest_section
    if importlib.util.find_spec("tensorrt") is not None:
        _build_engines_here(ctx, parts)
    else:
        ctx.next_steps.extend(parts.messages)


def _build_engines_here(ctx, parts: TensorRTBundleParts) -> None:
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
