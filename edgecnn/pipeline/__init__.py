"""`edgecnn export`: model -> ONNX -> fused/quantized artifacts for one device profile -> a bundle.

The stages (ONNX export, OpenVINO conversion, INT8 per runtime, TFLite conversion) live in their
own modules and are callable alone; this module only orders them for a target — the backend's build
step, then the INT8 step (edgecnn.pipeline.int8: the one place an int8 decision is made and recorded),
then the backend's finish step — checks each artifact against the reference (PyTorch fp32; an ONNX
source's original file in ONNX Runtime) on the golden set, and writes the bundle atomically.

What a bundle holds, per target runtime:
- onnxruntime: onnx/model.fp32.onnx (+ onnx/model.int8.onnx, static QDQ)
- openvino:    openvino/model.fp32.xml/.bin (+ the fp16 or NNCF int8 IR)
- tflite:      tflite/model.fp32.tflite (+ the fp16 or full-integer int8 file)
- tensorrt:    onnx/model.fp32.onnx (+ the symmetric Q/DQ int8 ONNX), build_engine.sh, README.md,
               and the engine itself when TensorRT is installed here
The fp32 artifact is always included next to a reduced-precision one, so `bench` and `verify`
show what the precision bought and cost side by side.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import edgecnn
from edgecnn.bundle import GOLDEN_NAME, Bundle, BundleWriter, file_sha256, load_bundle, write_golden
from edgecnn.compare import top1
from edgecnn.errors import BadInputError
from edgecnn.profiles import DeviceProfile, load_profile

from edgecnn.build_context import (  # noqa: F401 (the pipeline's public names)
    DEFAULT_CALIB_SIZE, DEFAULT_GOLDEN_SIZE, EXPORT_MIN_AGREEMENT, BuildContext, ExportRequest, ModelData, timed,
)
from edgecnn.pipeline.int8 import int8_step
from edgecnn.samples import NOISE_DATA, model_data  # noqa: F401
from edgecnn.stages import Stage

# What shapes every artifact, whatever the runtime; each backend adds its own tools.
_COMMON_TOOLS = ("torch", "torchvision", "timm", "onnx", "onnxslim", "numpy")


@dataclass
class ExportReport:
    """What `export_bundle` wrote, for the CLI table and the note to the user."""

    bundle: Bundle
    profile: DeviceProfile
    precision: str
    rows: list[dict[str, Any]]
    warnings: list[str]
    next_steps: list[str]
    seconds: float


def export_bundle(request: ExportRequest, stage: Stage | None = None) -> ExportReport:
    """Run the whole export for one target and write the bundle at `request.out`."""
    stage = stage or (lambda message: None)
    started = time.perf_counter()
    profile = load_profile(request.target)
    precision = profile.check_precision(request.precision or profile.default_precision)
    # Refuse an existing output before doing minutes of work.
    writer = BundleWriter(request.out, force=request.force)
    if request.calib_size < 1 or request.golden_size < 1:
        raise BadInputError("--calib-size and --golden-size must be at least 1")

    stage(f"loading {request.source}")
    loaded, preprocess = _load_source(request, profile)
    precision, fallback_note = _precision_with_data(request, profile, precision, loaded)

    stage("preparing calibration and golden data")
    data = model_data(loaded, preprocess, request, needs_calibration=precision == "int8")
    warnings = ([fallback_note] if fallback_note else []) + list(data.warnings)
    if not loaded.accuracy_meaningful:
        warnings.append(f"{loaded.name} has random weights: latency is real, accuracy means nothing")

    reference = _reference_logits(loaded, data.golden_inputs, stage)
    from edgecnn.bench.candidates import RunnerMeasure
    from edgecnn.sources.onnx_graph import torch_module_from_onnx

    with writer:
        context = BuildContext(loaded=loaded, preprocess=preprocess, profile=profile, precision=precision,
                               request=request, data=data, reference=reference, writer=writer,
                               scratch=writer.scratch, stage=stage, warnings=warnings,
                               measure=RunnerMeasure(tuple(preprocess.input_shape)), onnx_to_torch=torch_module_from_onnx)
        _build(context)
        write_golden(writer.path(GOLDEN_NAME), data.golden_inputs, data.golden_labels, reference)
        stage("writing the bundle")
        writer.commit(_manifest(context))
    for finish in context.deferred:
        finish(request.out)
    return ExportReport(bundle=load_bundle(request.out), profile=profile, precision=precision, rows=context.rows,
                        warnings=warnings, next_steps=context.next_steps, seconds=time.perf_counter() - started)


def _build(ctx: BuildContext) -> None:
    """The backend's build step (fp32, fp16), the INT8 step, then the backend's finish step."""
    backend = ctx.profile.backend
    backend.build_step()(ctx)
    int8_step(ctx)
    finish = backend.finish_step()
    if finish is not None:
        finish(ctx)


def _load_source(request: ExportRequest, profile: DeviceProfile):
    """(loaded model, its preprocessing with --input-size applied), checked against the profile's limits."""
    from edgecnn.sources import StatedPreprocess, is_foreign, load_source

    loaded = request.loaded or load_source(request.source, weights=request.weights, state_dict=request.state_dict,
                                           stated=StatedPreprocess.from_request(request))
    preprocess = loaded.preprocess
    # A foreign source's stated --input-size is already in its preprocessing.
    if request.input_size is not None and not is_foreign(request.source):
        if loaded.from_checkpoint:
            raise BadInputError("--input-size goes with a zoo name; a checkpoint fixes its own input size")
        if request.input_size < loaded.spec.min_size:
            raise BadInputError(f"{loaded.name} needs inputs of at least {loaded.spec.min_size}px, "
                                f"not {request.input_size}")
        preprocess = replace(preprocess, size=int(request.input_size))
    if preprocess.size > profile.max_size:
        raise BadInputError(f"input size {preprocess.size} exceeds the {profile.name} profile's "
                            f"max_size {profile.max_size}: pass a smaller --input-size or another target")
    return loaded, preprocess


def _reference_logits(loaded, inputs, stage: Stage):
    """The golden set's fp32 reference: the source's own (an ONNX file in its runtime), else PyTorch's."""
    own = getattr(loaded, "reference_logits", None)
    if own is not None:
        stage(f"computing the reference logits ({loaded.reference_label})")
        return own(inputs)
    stage("computing PyTorch fp32 reference logits")
    from edgecnn.backends.torch.reference import torch_logits

    return torch_logits(loaded.model, inputs)


def _precision_with_data(request: ExportRequest, profile: DeviceProfile, precision: str, loaded):
    """(precision, note): a profile's int8 default falls back when the model has no calibration data."""
    has_data = bool(request.calib_data or (loaded.checkpoint or {}).get("data"))
    if request.precision is not None or precision != "int8" or has_data:
        return precision, None
    # The profile prefers int8, but int8 needs real calibration images and this model has
    # none: take the best precision that needs none rather than refuse a plain command.
    precision = "fp16" if "fp16" in profile.precisions else "fp32"
    return precision, (f"{profile.name} defaults to int8, which needs calibration images; built {precision} "
                       "instead (pass --calib-data SPEC, or export a checkpoint trained with edgecnn train, "
                       "for int8)")


def _manifest(ctx: BuildContext) -> dict[str, Any]:
    """The bundle's manifest.json, from what the build recorded."""
    loaded, data, profile = ctx.loaded, ctx.data, ctx.profile
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": _model_record(loaded),
        "target": profile.name,
        "profile": profile.to_dict(),
        "precision": ctx.precision,
        "input": {"shape": list(ctx.preprocess.input_shape), "layout": "NCHW", "dtype": "float32",
                  "batch": ctx.batch_record},
        "preprocess": ctx.preprocess.to_dict(),
        "artifacts": [entry.to_dict() for entry in ctx.entries],
        "golden": {
            "path": GOLDEN_NAME,
            "sha256": file_sha256(ctx.writer.path(GOLDEN_NAME)),
            "samples": int(len(data.golden_inputs)),
            "source": data.golden_source,
            "labels_meaningful": data.labels_meaningful,
            "reference": ctx.reference_label,
            "reference_top1": top1(ctx.reference, data.golden_labels) if data.labels_meaningful else None,
        },
        "calibration": ctx.calibration_record(),
        "fusion": ctx.fusion,
        "tools": tool_versions(),
        "host": {"platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version()},
        "warnings": ctx.warnings,
        "next_steps": ctx.next_steps,
        **ctx.extra_manifest,
    }


def _model_record(loaded) -> dict[str, Any]:
    path = loaded.provenance.get("path")
    return {
        "name": loaded.name,
        "family": loaded.spec.family,
        "num_classes": loaded.num_classes,
        "source": loaded.provenance.get("source"),
        "weights": loaded.provenance.get("weights"),
        # Absolute, so bench/verify find it from any working directory.
        "checkpoint": str(Path(path).resolve()) if path else None,
        "accuracy_meaningful": loaded.accuracy_meaningful,
        "metrics": _checkpoint_metrics(loaded),
        # A foreign source: how verify re-runs it as the live reference (edgecnn.sources.replay).
        **({"replay": loaded.provenance["replay"]} if loaded.provenance.get("replay") else {}),
    }


def _checkpoint_metrics(loaded) -> dict:
    metrics = (loaded.checkpoint or {}).get("metrics") or {}
    return {k: v for k, v in metrics.items() if k != "history" and not isinstance(v, (dict, list))}


def tool_versions() -> dict[str, str | None]:
    """Versions of everything that shaped the artifacts (None where not installed)."""
    from edgecnn.backends import backends
    from edgecnn.host import package_version

    names = list(_COMMON_TOOLS)
    for backend in backends(deploy_only=True):
        names.extend(t for t in backend.tools if t not in names)
    return {"edgecnn": edgecnn.__version__, **{name: package_version(name) for name in names}}
