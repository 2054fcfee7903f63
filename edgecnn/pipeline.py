"""`edgecnn export`: model -> ONNX -> fused/quantized artifacts for one device profile -> a bundle.

The stages (ONNX export, OpenVINO conversion, INT8 per runtime, TFLite conversion) live in their
own modules and are callable alone; this module only orders them for a target, checks each
artifact against PyTorch on the golden set, and writes the bundle atomically.

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
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

import edgecnn
from edgecnn.bundle import GOLDEN_NAME, Bundle, BundleWriter, artifact_entry, file_sha256, load_bundle, write_golden
from edgecnn.errors import BadInputError
from edgecnn.profiles import DeviceProfile, load_profile

# Export-time parity gates. fp32/fp16 must reproduce PyTorch; int8 is only refused here when it
# is plainly broken (verify holds the real accuracy gate, with thresholds the user can set).
EXPORT_MIN_AGREEMENT = {"fp32": 0.995, "fp16": 0.98, "int8": 0.80}
NOISE_DATA = "noise"  # --calib-data noise: random images, only when asked for by name
DEFAULT_CALIB_SIZE = 300
DEFAULT_GOLDEN_SIZE = 300
NOISE_GOLDEN_SIZE = 64
_TOOLS = ("torch", "torchvision", "timm", "onnx", "onnxslim", "onnxruntime", "openvino", "nncf",
          "litert-torch", "ai-edge-litert", "numpy")

Stage = Callable[[str], None]


@dataclass
class ExportRequest:
    """What the user asked `edgecnn export` for."""

    source: str  # zoo name or checkpoint path
    target: str  # device profile name or a .toml path
    out: Path
    precision: str | None = None  # default: the profile's
    force: bool = False
    weights: str | None = None  # zoo name only: imagenet | random | FILE
    state_dict: str | None = None  # zoo name only: a torchvision-style state dict
    calib_data: str | None = None  # data SPEC, or "noise"
    calib_size: int = DEFAULT_CALIB_SIZE
    calib_method: str = "minmax"
    data_root: str | None = None
    golden_size: int = DEFAULT_GOLDEN_SIZE
    input_size: int | None = None  # zoo name only: override the default input side
    seed: int = 0
    # TFLite int8: "full-integer" (int8 compute, fastest on ai-edge-litert) or "weight-only"
    # (int8 weights, float compute: the one int8 file tflite-runtime 2.14 runs at full speed).
    tflite_int8_scheme: str = "full-integer"


@dataclass
class ModelData:
    """Real (or, when asked, noise) samples brought to the model's input and preprocessing."""

    calibration: np.ndarray | None  # NCHW float32, None when no data was available
    calibration_source: str | None
    golden_inputs: np.ndarray
    golden_labels: np.ndarray  # -1 where labels mean nothing for this model
    golden_source: str
    labels_meaningful: bool
    warnings: list[str] = field(default_factory=list)


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
    from edgecnn.checkpoint import load_model

    loaded = load_model(request.source, weights=request.weights, state_dict=request.state_dict)
    preprocess = loaded.preprocess
    if request.input_size is not None:
        if loaded.from_checkpoint:
            raise BadInputError("--input-size goes with a zoo name; a checkpoint fixes its own input size")
        if request.input_size < loaded.spec.min_size:
            raise BadInputError(f"{loaded.name} needs inputs of at least {loaded.spec.min_size}px, "
                                f"not {request.input_size}")
        preprocess = replace(preprocess, size=int(request.input_size))
    if preprocess.size > profile.max_size:
        raise BadInputError(f"input size {preprocess.size} exceeds the {profile.name} profile's "
                            f"max_size {profile.max_size}: pass a smaller --input-size or another target")
    input_shape = preprocess.input_shape

    fallback_note = None
    has_data = bool(request.calib_data or (loaded.checkpoint or {}).get("data"))
    if request.precision is None and precision == "int8" and not has_data:
        # The profile prefers int8, but int8 needs real calibration images and this model has
        # none: take the best precision that needs none rather than refuse a plain command.
        precision = "fp16" if "fp16" in profile.precisions else "fp32"
        fallback_note = (f"{profile.name} defaults to int8, which needs calibration images; built {precision} "
                         "instead (pass --calib-data SPEC, or export a checkpoint trained with edgecnn train, "
                         "for int8)")

    stage("preparing calibration and golden data")
    data = model_data(loaded, preprocess, request, needs_calibration=precision == "int8")
    warnings = ([fallback_note] if fallback_note else []) + list(data.warnings)
    if not loaded.accuracy_meaningful:
        warnings.append(f"{loaded.name} has random weights: latency is real, accuracy means nothing")

    stage("computing PyTorch fp32 reference logits")
    from edgecnn.compare import torch_logits

    reference = torch_logits(loaded.model, data.golden_inputs)
    golden_top1 = _top1(reference, data.golden_labels) if data.labels_meaningful else None

    with writer, tempfile.TemporaryDirectory(prefix="edgecnn-export-") as scratch:
        context = _Context(loaded=loaded, preprocess=preprocess, profile=profile, precision=precision,
                           request=request, data=data, reference=reference, writer=writer,
                           scratch=Path(scratch), stage=stage, warnings=warnings)
        builders = {"onnxruntime": _build_onnxruntime, "openvino": _build_openvino,
                    "tflite": _build_tflite, "tensorrt": _build_tensorrt}
        builders[profile.runtime](context)

        write_golden(writer.path(GOLDEN_NAME), data.golden_inputs, data.golden_labels, reference)
        manifest = {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": {
                "name": loaded.name,
                "family": loaded.spec.family,
                "num_classes": loaded.num_classes,
                "source": loaded.provenance.get("source"),
                "weights": loaded.provenance.get("weights"),
                # Absolute, so bench/verify find it from any working directory.
                "checkpoint": str(Path(loaded.provenance["path"]).resolve()) if loaded.provenance.get("path") else None,
                "accuracy_meaningful": loaded.accuracy_meaningful,
                "metrics": _checkpoint_metrics(loaded),
            },
            "target": profile.name,
            "profile": profile.to_dict(),
            "precision": precision,
            "input": {"shape": list(input_shape), "layout": "NCHW", "dtype": "float32", "batch": "dynamic"},
            "preprocess": preprocess.to_dict(),
            "artifacts": [entry.to_dict() for entry in context.entries],
            "golden": {
                "path": GOLDEN_NAME,
                "sha256": file_sha256(writer.path(GOLDEN_NAME)),
                "samples": int(len(data.golden_inputs)),
                "source": data.golden_source,
                "labels_meaningful": data.labels_meaningful,
                "reference": "pytorch fp32",
                "reference_top1": golden_top1,
            },
            "calibration": context.calibration_record(),
            "fusion": context.fusion,
            "tools": tool_versions(),
            "host": {"platform": platform.platform(), "machine": platform.machine(),
                     "python": platform.python_version()},
            "warnings": warnings,
            "next_steps": context.next_steps,
            **context.extra_manifest,
        }
        stage("writing the bundle")
        writer.commit(manifest)
    for finish in context.deferred:
        finish(request.out)
    bundle = load_bundle(request.out)
    return ExportReport(bundle=bundle, profile=profile, precision=precision, rows=context.rows,
                        warnings=warnings, next_steps=context.next_steps,
                        seconds=time.perf_counter() - started)


# ------------------------------------------------------------------------------------ data


def model_data(loaded, preprocess, request: ExportRequest, *, needs_calibration: bool) -> ModelData:
    """Calibration and golden samples for the model, from the checkpoint's data or --calib-data."""
    from edgecnn.data import calibration_images, load_data, preprocessed_split

    warnings: list[str] = []
    checkpoint = loaded.checkpoint or {}
    spec = request.calib_data or checkpoint.get("data")
    if spec == NOISE_DATA:
        rng = np.random.default_rng(request.seed)
        calibration = rng.standard_normal((request.calib_size, *preprocess.input_shape)).astype(np.float32)
        warnings.append("calibrating on random noise (--calib-data noise): the int8 accuracy it gives means nothing")
        golden, labels, source, meaningful = _noise_golden(preprocess, request.seed)
        return ModelData(calibration, "noise", golden, labels, source, meaningful, warnings)
    if spec is None:
        if needs_calibration:
            raise BadInputError(
                "int8 needs real calibration images and this model has no training data recorded: "
                "pass --calib-data SPEC (e.g. digits, imagefolder:DIR), export a checkpoint trained "
                "with edgecnn train, or choose --precision fp32"
            )
        warnings.append("no data given: the golden set is random noise, so verify on the device checks "
                        "agreement with PyTorch only (pass --calib-data SPEC for real samples)")
        golden, labels, source, meaningful = _noise_golden(preprocess, request.seed)
        return ModelData(None, None, golden, labels, source, meaningful, warnings)

    # The checkpoint's own split seed keeps the golden set out of its training data.
    same_data = spec == checkpoint.get("data")
    seed = checkpoint.get("seed", request.seed) if same_data else request.seed
    data_root = request.data_root or (checkpoint.get("data_root") if same_data else None)
    dataset = load_data(spec, data_root=data_root, seed=seed if seed is not None else 0)
    calibration = None
    if needs_calibration:
        calibration, _ = calibration_images(dataset, preprocess, n=request.calib_size, seed=request.seed)
    golden, labels = preprocessed_split(dataset, "test", preprocess, limit=request.golden_size, seed=request.seed)
    meaningful = same_data and loaded.accuracy_meaningful and \
        tuple(dataset.class_names) == tuple(loaded.class_names)
    if not meaningful:
        labels = np.full(len(golden), -1, dtype=np.int64)
        if not same_data:
            warnings.append(f"{spec} is not the data {loaded.name} was trained on: the golden set checks "
                            "agreement with PyTorch, not accuracy")
    source = f"{spec} test split ({len(golden)} class-balanced samples, seed {request.seed})"
    return ModelData(calibration, f"{spec} train split" if calibration is not None else None,
                     golden, labels, source, meaningful, warnings)


def _noise_golden(preprocess, seed: int):
    rng = np.random.default_rng(seed + 1)
    inputs = rng.standard_normal((NOISE_GOLDEN_SIZE, *preprocess.input_shape)).astype(np.float32)
    return inputs, np.full(NOISE_GOLDEN_SIZE, -1, dtype=np.int64), "random noise (no data given)", False


def _top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(logits.argmax(1) == labels) * 100.0)


def _checkpoint_metrics(loaded) -> dict:
    metrics = (loaded.checkpoint or {}).get("metrics") or {}
    return {k: v for k, v in metrics.items() if k != "history" and not isinstance(v, (dict, list))}


def tool_versions() -> dict[str, str | None]:
    """Versions of everything that shaped the artifacts (None where not installed)."""
    versions: dict[str, str | None] = {"edgecnn": edgecnn.__version__}
    for name in _TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# ------------------------------------------------------------------------------- per runtime


@dataclass
class _Context:
    loaded: Any
    preprocess: Any
    profile: DeviceProfile
    precision: str
    request: ExportRequest
    data: ModelData
    reference: np.ndarray
    writer: BundleWriter
    scratch: Path
    stage: Stage
    warnings: list[str]
    entries: list = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    fusion: dict = field(default_factory=dict)
    next_steps: list[str] = field(default_factory=list)
    calibration_details: dict = field(default_factory=dict)
    extra_manifest: dict = field(default_factory=dict)  # runtime-specific manifest sections
    deferred: list = field(default_factory=list)  # run on the finished bundle folder

    @property
    def precisions(self) -> list[str]:
        """fp32 always, plus the requested precision."""
        return ["fp32"] if self.precision == "fp32" else ["fp32", self.precision]

    @property
    def input_record(self) -> dict:
        return {"shape": list(self.preprocess.input_shape), "layout": "NCHW", "dtype": "float32"}

    def calibration_record(self) -> dict | None:
        if self.precision != "int8":
            return None
        return {"source": self.data.calibration_source, "samples": int(len(self.data.calibration)),
                "method": self.request.calib_method, **self.calibration_details}

    def onnx_fp32(self, path: Path):
        """Export the fp32 ONNX graph (BN folded, slimmed) and record the fusion report."""
        from edgecnn.export.onnx import export_onnx

        self.stage("exporting ONNX (fold BatchNorm, slim)")
        result = export_onnx(self.loaded.model, self.preprocess.input_shape, path, opset=self.profile.opset,
                             sample=self.data.golden_inputs[:2])
        self.fusion = {
            "batchnorm_modules_folded": result.batchnorm_modules,
            "nodes_before": result.node_count_before,
            "nodes_after": result.node_count_after,
            "batchnorm_nodes_after": result.nodes_after.get("BatchNormalization", 0),
            "ops_after": result.nodes_after,
            "opset": result.opset,
        }
        return result

    def add(self, files: list[Path], *, format: str, runtime: str, precision: str, seconds: float,
            logits_of: Callable[[], np.ndarray] | None, batch: Any = "dynamic", **extra: Any) -> None:
        """Record an artifact, after checking its logits against PyTorch on the golden set."""
        from edgecnn.compare import compare_logits, enforce

        parity = None
        if logits_of is not None:
            self.stage(f"checking {format} {precision} against PyTorch on {len(self.reference)} samples")
            candidate = logits_of()
            result = compare_logits(self.reference, candidate)
            parity = result.to_dict()
            if self.data.labels_meaningful:
                parity["top1"] = _top1(candidate, self.data.golden_labels)
                parity["reference_top1"] = _top1(self.reference, self.data.golden_labels)
                parity["drop"] = parity["reference_top1"] - parity["top1"]
            if self.loaded.accuracy_meaningful or precision != "int8":
                enforce(result, what=f"{format} {precision} artifact",
                        min_agreement=EXPORT_MIN_AGREEMENT[precision])
            # Random weights give near-tied logits, so int8 top-1 agreement there is noise: recorded,
            # not gated (the manifest says accuracy means nothing).
        root = self.writer.root
        entry = artifact_entry(root, files, format=format, runtime=runtime, precision=precision,
                               input={**self.input_record, "batch": batch},
                               export_seconds=round(seconds, 3), parity=parity, **extra)
        self.entries.append(entry)
        self.rows.append({"artifact": entry.path, "format": format, "runtime": runtime, "precision": precision,
                          "bytes": entry.total_bytes, "export_s": round(seconds, 2), "parity": parity})


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def _build_onnxruntime(ctx: _Context) -> None:
    from edgecnn.export.onnx import onnx_logits

    fp32_path = ctx.writer.path("onnx/model.fp32.onnx")
    result, seconds = _timed(lambda: ctx.onnx_fp32(fp32_path))
    ctx.add([fp32_path], format="onnx", runtime="onnxruntime", precision="fp32", seconds=seconds,
            logits_of=lambda: onnx_logits(fp32_path, ctx.data.golden_inputs), opset=result.opset,
            nodes=result.node_count_after)
    if ctx.precision == "int8":
        from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8

        int8_path = ctx.writer.path("onnx/model.int8.onnx")
        ctx.stage(f"quantizing to INT8 with ONNX Runtime ({ctx.request.calib_method}, per-channel)")
        q, seconds = _timed(lambda: quantize_onnx_int8(fp32_path, int8_path, ctx.data.calibration,
                                                       method=ctx.request.calib_method))
        ctx.calibration_details["onnxruntime"] = {"activation_type": q.activation_type,
                                                  "weight_type": q.weight_type, "per_channel": q.per_channel,
                                                  "symmetric": q.symmetric, "reduce_range": q.reduce_range}
        ctx.add([int8_path], format="onnx", runtime="onnxruntime", precision="int8", seconds=seconds,
                logits_of=lambda: onnx_logits(int8_path, ctx.data.golden_inputs), quantization="static QDQ",
                nodes=q.node_count_after)


def _build_openvino(ctx: _Context) -> None:
    from edgecnn.backends.openvino.convert import export_openvino, openvino_logits

    onnx_path = ctx.scratch / "model.fp32.onnx"
    onnx_result, onnx_s = _timed(lambda: ctx.onnx_fp32(onnx_path))
    for precision in ctx.precisions:
        xml = ctx.writer.path(f"openvino/model.{precision}.xml")
        if precision == "int8":
            from edgecnn.backends.openvino.quantize import quantize_openvino_int8

            fp32_xml = ctx.writer.path("openvino/model.fp32.xml")
            ctx.stage("quantizing to INT8 with NNCF (post-training, OpenVINO model)")
            q, seconds = _timed(lambda: quantize_openvino_int8(fp32_xml, xml, ctx.data.calibration))
            ctx.calibration_details["openvino"] = {"preset": q.preset, "fake_quantize_nodes": q.fake_quantize_nodes}
            extra = {"quantization": "NNCF post-training", "fake_quantize_nodes": q.fake_quantize_nodes}
        else:
            ctx.stage(f"converting to OpenVINO IR ({precision})")
            _, seconds = _timed(lambda: export_openvino(onnx_path, xml, precision=precision))
            seconds += onnx_s if precision == "fp32" else 0.0
            extra = {}
        ctx.add([xml, xml.with_suffix(".bin")], format="openvino", runtime="openvino", precision=precision,
                seconds=seconds, logits_of=lambda xml=xml: openvino_logits(xml, ctx.data.golden_inputs),
                **extra)


def _build_tflite(ctx: _Context) -> None:
    from edgecnn.export.tflite import export_tflite, tflite_logits

    for precision in ctx.precisions:
        path = ctx.writer.path(f"tflite/model.{precision}.tflite")
        ctx.stage(f"converting to TFLite with litert-torch ({precision})")
        result = export_tflite(ctx.loaded.model, ctx.preprocess.input_shape, path, precision=precision,
                               calibration=ctx.data.calibration if precision == "int8" else None,
                               **({"int8_scheme": ctx.request.tflite_int8_scheme} if precision == "int8" else {}))
        for warning in result.warnings:
            if warning not in ctx.warnings:
                ctx.warnings.append(warning)
        ctx.add([path], format="tflite", runtime="tflite", precision=precision, seconds=result.export_s,
                logits_of=lambda path=path: tflite_logits(path, ctx.data.golden_inputs),
                batch=result.batch_size, quantization=result.quantization, ops=result.op_counts)
    if not ctx.fusion:
        ctx.fusion = {"note": "TFLite conversion folds BatchNorm inside litert-torch"}


def _build_tensorrt(ctx: _Context) -> None:
    """fp32 ONNX + the fp16 / Q/DQ int8 graphs TensorRT builds from, build_engine.sh and a README.

    The engine itself is built where TensorRT is (the Jetson): here when TensorRT imports, else
    on the device with `bash build_engine.sh` or `edgecnn build`.
    """
    import importlib.util

    from edgecnn.export import tensorrt as trt_export
    from edgecnn.export.onnx import onnx_logits

    fp32_path = ctx.writer.path("onnx/model.fp32.onnx")
    result, seconds = _timed(lambda: ctx.onnx_fp32(fp32_path))
    ctx.add([fp32_path], format="onnx", runtime="onnxruntime", precision="fp32", seconds=seconds,
            logits_of=lambda: onnx_logits(fp32_path, ctx.data.golden_inputs), opset=result.opset,
            purpose="TensorRT engine source")
    ctx.stage("preparing the TensorRT parts (Q/DQ int8 for explicit quantization, build_engine.sh)")
    started = time.perf_counter()
    parts = trt_export.prepare_tensorrt_bundle(
        ctx.writer.root, fp32_path, ctx.profile, input_spec={**ctx.input_record, "batch": "dynamic"},
        model_name=ctx.loaded.name, precision=ctx.precision, calibration_batches=ctx.data.calibration,
        method=ctx.request.calib_method, bundle_name=ctx.request.out.name)
    seconds = time.perf_counter() - started
    for entry in parts.artifacts:
        # The same graphs run in ONNX Runtime with the same Q/DQ semantics: check them here.
        path = ctx.writer.root / entry.path
        ctx.add([path], format=entry.format, runtime=entry.runtime, precision=entry.precision,
                seconds=seconds, logits_of=lambda path=path: onnx_logits(path, ctx.data.golden_inputs),
                **entry.extra)
    ctx.extra_manifest["tensorrt"] = parts.manifest_section
    if importlib.util.find_spec("tensorrt") is not None:
        ctx.stage("TensorRT found here: building the engines")
        results = [trt_export.build_engine(ctx.writer.root / plan.source, ctx.writer.root / plan.engine,
                                           ctx.profile, plan.precision) for plan in parts.plans]
        staging = ctx.writer.root

        def register(root: Path) -> None:
            # The engines were built in the staging folder that has since been renamed to `root`.
            moved = [replace(r, path=root / Path(r.path).relative_to(staging),
                             source=root / Path(r.source).relative_to(staging)) for r in results]
            trt_export.register_engines(root, moved)

        ctx.deferred.append(register)
        ctx.next_steps.append(f"built {len(results)} TensorRT engine(s) on this machine; they run only on "
                              "this GPU and TensorRT version")
    else:
        ctx.next_steps.extend(parts.messages)
