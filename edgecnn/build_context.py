"""What the export pipeline hands each backend's build step: the request, the model, its samples, and
the bundle being written (`BuildContext`).

A backend's `build(ctx)` writes its artifacts with `ctx.writer.path(...)` and records each with
`ctx.add(...)`, which checks it against the reference logits (PyTorch fp32, or an ONNX source's original
file in ONNX Runtime) on the golden set through the backend's own Runner: the same code that runs it on
the device, handed in by the pipeline as `measure` (this module sits below the backends and imports no
runner). Build steps that need a torch module take `ctx.torch_model`. INT8 is not a build step's
business: the pipeline runs it (edgecnn.pipeline.int8) with the backend's declared INT8 method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgecnn.bundle import BundleWriter, artifact_entry
from edgecnn.errors import BadInputError
from edgecnn.profiles import DeviceProfile
from edgecnn.quantize import DEFAULT_SEARCH_BUDGET_S
from edgecnn.stages import Stage

# Export-time parity gates. fp32/fp16 must reproduce PyTorch; int8 is only refused here when it
# is plainly broken (verify holds the real accuracy gate, with thresholds the user can set).
EXPORT_MIN_AGREEMENT = {"fp32": 0.995, "fp16": 0.98, "int8": 0.80}
PARITY_BATCH = 32
DEFAULT_CALIB_SIZE = 300
DEFAULT_GOLDEN_SIZE = 300


@dataclass
class ExportRequest:
    """What the user asked `edgecnn export` for."""

    source: str  # zoo name, checkpoint path, or a foreign source (edgecnn.sources: timm:NAME, FILE.py:FUNCTION, ...)
    target: str  # device profile name or a .toml path
    out: Path
    precision: str | None = None  # default: the profile's
    force: bool = False
    weights: str | None = None  # zoo/timm/torchvision name only: imagenet | random | FILE
    state_dict: str | None = None  # a name's torchvision-style state dict, or a factory's state dict
    calib_data: str | None = None  # data SPEC, or "noise"
    golden_data: str | None = None  # data SPEC of the golden set (default: a disjoint part of the calibration data)
    calib_size: int = DEFAULT_CALIB_SIZE
    calib_method: str = "minmax"
    data_root: str | None = None
    golden_size: int = DEFAULT_GOLDEN_SIZE
    input_size: int | None = None  # not for a checkpoint: the input side (a foreign model's must be stated)
    # A foreign source's stated preprocessing (edgecnn.sources.StatedPreprocess); timm/torchvision
    # fill what is not stated from their configs.
    resize: int | None = None  # shorter side before the centre crop (default round(input_size / 0.875))
    mean: str | None = None  # "a,b,c" on pixels scaled to [0, 1]
    std: str | None = None
    channels: int | None = None  # 1 or 3
    classes: str | None = None  # class list file: one class a line, the line number its index
    seed: int = 0
    # TFLite int8: "full-integer" (int8 compute, fastest on ai-edge-litert) or "weight-only"
    # (int8 weights, float compute: the one int8 file tflite-runtime 2.14 runs at full speed).
    tflite_int8_scheme: str = "full-integer"
    # INT8 held to verify's gate at export: when it misses, the most sensitive layers are kept in float
    # (edgecnn.quantize), within search_budget seconds. None: verify's int8 default.
    fallback: bool = True
    distill: bool = True  # INT8: the distilled recipe may run when the plain recipes miss the aim
    search_budget: float = DEFAULT_SEARCH_BUDGET_S
    max_drop: float | None = None
    min_agreement: float | None = None
    # A model already loaded (the Python API's edgecnn.load, an in-memory nn.Module): used instead of
    # loading `source`, which then only names it.
    loaded: Any = None


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
class BuildContext:
    """One export in progress: what a backend's build step reads, and where it records its artifacts."""

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
    # Handed in by the pipeline (above the runners): logits of a file through its Runner
    # (edgecnn.bench.candidates.RunnerMeasure), and an edgecnn ONNX graph as a torch module (onnx2torch).
    measure: Any = None
    onnx_to_torch: Callable[..., Any] | None = None
    _from_torchscript: Any = None  # a TorchScript model's onnx2torch module, converted once

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
        """Write the fp32 ONNX graph (exported from torch, BN folded, slimmed; or an ONNX source's own graph,
        normalised) and record the fusion report."""
        write_onnx = getattr(self.loaded, "write_onnx", None)
        if write_onnx is not None:
            return self._source_onnx(write_onnx, path)
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

    def _source_onnx(self, write_onnx: Callable[[Path], Any], path: Path):
        """An ONNX source's graph, normalised; the fusion record read from the graph itself."""
        self.stage("normalising the source ONNX graph (check, names, batch axis, slim)")
        result = write_onnx(path)
        left = result.nodes_after.get("BatchNormalization", 0)
        self.fusion = {
            "batchnorm_modules_folded": result.batchnorm_folded,
            "nodes_before": result.node_count_before,
            "nodes_after": result.node_count_after,
            "batchnorm_nodes_after": left,
            "ops_after": result.nodes_after,
            "opset": result.opset,
            "source": "the source ONNX graph, normalised",
            "notes": list(result.notes),
        }
        if left:
            self.warnings.append(f"{left} BatchNormalization node(s) remain in the source graph (not after a "
                                 "convolution, so nothing folded them): they run as separate layers")
        return result

    @property
    def torch_model(self):
        """The model as a torch module, for targets that build from one (an ONNX source converts here).

        A TorchScript module is not one the tracing converters take: it goes through its own ONNX
        export and onnx2torch, the same road an ONNX source takes.
        """
        what = f"target {self.profile.name} ({self.profile.backend.label})"
        try:
            model = self.loaded.model
            import torch  # loaded already: the model is a torch module

            if not isinstance(model, torch.jit.ScriptModule):
                return model
            if self._from_torchscript is None:  # one conversion for every precision the target builds
                path = self.scratch / "torchscript-for-conversion.onnx"
                self.onnx_fp32(path)
                self._from_torchscript = self.onnx_to_torch(path, what=what)
            return self._from_torchscript
        except BadInputError as exc:
            raise BadInputError(f"{what}: {exc}") from None

    @property
    def reference_label(self) -> str:
        """What the golden logits come from: PyTorch fp32, or an ONNX source's original file."""
        return getattr(self.loaded, "reference_label", "pytorch fp32")

    @property
    def batch_record(self) -> Any:
        """'dynamic', or the batch an ONNX source's graph is fixed to."""
        return getattr(self.loaded, "fixed_batch", None) or "dynamic"

    def add(self, files: list[Path], *, format: str, runtime: str, precision: str, seconds: float,
            batch: Any = "dynamic", check: bool = True, score_options: dict | None = None, **extra: Any) -> None:
        """Record an artifact, after running it through its Runner on the golden set against the reference
        (`score_options`: runner options the check runs it with, e.g. the int8 search's emulation)."""
        if batch == "dynamic":
            batch = self.batch_record
        parity = self._parity(files[0], what=f"{format} {precision} artifact", runtime=runtime, precision=precision,
                              batch=batch, options=score_options) if check else None
        entry = artifact_entry(self.writer.root, files, format=format, runtime=runtime, precision=precision,
                               input={**self.input_record, "batch": batch},
                               export_seconds=round(seconds, 3), parity=parity, **extra)
        self.entries.append(entry)
        self.rows.append({"artifact": entry.path, "format": format, "runtime": runtime, "precision": precision,
                          "bytes": entry.total_bytes, "export_s": round(seconds, 2), "parity": parity,
                          "layers_in_float": int(extra.get("layers_in_float") or 0), "int8": extra.get("int8")})

    def _parity(self, path: Path, *, what: str, runtime: str, precision: str, batch: Any,
                options: dict | None = None) -> dict:
        from edgecnn.compare import compare_logits, enforce, top1

        self.stage(f"checking {what} against {self.reference_label} on {len(self.reference)} samples")
        # the precision as bench and verify pass it, so the check runs the artifact as they do
        candidate = self.measure.logits(runtime, path, self.data.golden_inputs, precision=precision,
                                        batch=batch if isinstance(batch, int) else PARITY_BATCH, options=options)
        result = compare_logits(self.reference, candidate)
        parity = result.to_dict()
        if self.data.labels_meaningful:
            parity["top1"] = top1(candidate, self.data.golden_labels)
            parity["reference_top1"] = top1(self.reference, self.data.golden_labels)
            parity["drop"] = parity["reference_top1"] - parity["top1"]
        # Random weights give near-tied logits, so int8 top-1 agreement there is noise: recorded,
        # not gated (the manifest says accuracy means nothing).
        if self.loaded.accuracy_meaningful or precision != "int8":
            enforce(result, what=what, min_agreement=EXPORT_MIN_AGREEMENT[precision])
        return parity


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(fn(), seconds it took)."""
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started
