"""PyTorch -> TFLite / LiteRT through litert-torch: fp32, fp16 weights, int8 (full-integer or weights).

Every artifact takes float32 NCHW images and returns float32 logits, at a fixed batch (1 by
default; litert-torch bakes the batch into reshapes, the Runner splits and pads for it). An int8
artifact computes in int8 inside: a QUANTIZE op after the input and a DEQUANTIZE op before the
output are part of the graph, so callers never see quantized tensors. The INT8 schemes are in
quantize.py; what each file needs from a runtime (tflite-runtime 2.14) in compat.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgecnn.export.torch_eval import eval_mode
from edgecnn.atomic import write_bytes_atomic
from edgecnn.backends.tflite.compat import graph_compatibility
from edgecnn.backends.tflite.flatbuffer import TfliteGraph, describe_tflite, format_counts
from edgecnn.backends.tflite.quantize import (
    TfliteContent,
    convert_with_weight_recipe,
    quantize_pt2e_int8,
    quantize_weight_only_int8,
)
from edgecnn.compare import check_samples
from edgecnn.errors import BadInputError, CheckFailedError, require
from edgecnn.host import package_version

__all__ = ["INPUT_LAYOUT", "INT8_SCHEMES", "PRECISIONS", "TfliteExportError", "TfliteExportResult",
           "export_tflite"]

PRECISIONS = ("fp32", "fp16", "int8")
# full-integer: int8 weights and activations (the int8 speed-up, needs an int8-capable XNNPACK);
# weight-only: int8 weights dequantized to float32 at load, float compute (fp32 speed, 1/4 size,
# delegated to XNNPACK by every runtime, tflite-runtime 2.14 included).
INT8_SCHEMES = ("full-integer", "weight-only")
INPUT_LAYOUT = "NCHW"
_TOOLS = ("torch", "litert-torch", "ai-edge-litert", "torchao")


class TfliteExportError(BadInputError):
    """litert-torch could not convert or quantize the model as asked."""


@dataclass(frozen=True)
class TfliteExportResult:
    """What `export_tflite` wrote, how, and what the file needs from a runtime."""

    path: Path
    precision: str  # fp32 | fp16 | int8
    input_shape: tuple[int, int, int, int]  # (N, C, H, W): N is the fixed export batch
    input_dtype: str  # float32 (int8 files quantize inside the graph)
    output_dtype: str  # float32 logits
    input_layout: str  # NCHW
    batch_size: int
    bytes: int
    export_s: float  # total, calibration included
    calibration_s: float | None  # int8 only
    calibration_samples: int | None  # int8 only
    quantization: dict[str, Any] | None  # scheme used: weights, activations, observer, ...
    op_counts: dict[str, int]
    op_versions: dict[str, list[int]]
    warnings: list[str] = field(default_factory=list)  # runtime compatibility, float leftovers
    notes: list[str] = field(default_factory=list)
    tool_versions: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["input_shape"] = list(self.input_shape)
        return data


@dataclass(frozen=True)
class _Job:
    """One checked conversion request."""

    model: Any
    input_shape: tuple[int, int, int]
    precision: str
    calibration: np.ndarray | None
    batch_size: int
    per_channel: bool
    full_integer: bool
    float_modules: tuple[str, ...] = ()  # PyTorch module paths a full-integer file keeps in float


def export_tflite(
    model,
    input_shape: tuple[int, int, int],
    path: str | os.PathLike,
    *,
    precision: str = "fp32",
    calibration: np.ndarray | None = None,
    batch_size: int = 1,
    per_channel: bool = True,
    int8_scheme: str = "full-integer",
    float_modules: tuple[str, ...] = (),
) -> TfliteExportResult:
    """Convert `model` to a .tflite at `path`: float32 NCHW input, float32 logits, fixed batch.

    precision: fp32; fp16 (float16 weights, dequantized to float32 when the runtime loads the
    file); int8 (full-integer: int8 weights, per-channel unless `per_channel=False`, and int8
    activations calibrated on `calibration`, a preprocessed NCHW float32 array, required).
    `int8_scheme="weight-only"` instead stores int8 weights and computes in float32: no
    calibration, no int8 speed-up, a quarter of the fp32 size, and fp32 speed on every runtime
    (tflite-runtime 2.14 cannot run full-integer files fast, see `tflite_compatibility`).
    `batch_size` is the batch baked into the file (TFLite tensors are static; 1 is what edge
    devices run). The file is written only once it passed its checks. The result lists op
    counts and warnings.
    """
    job = _check_job(model, input_shape, precision=precision, calibration=calibration,
                     batch_size=batch_size, per_channel=per_channel, int8_scheme=int8_scheme)
    if float_modules:
        job = replace(job, float_modules=tuple(float_modules))
    path = Path(path)
    started = time.perf_counter()
    converted = _convert(job)
    graph = describe_tflite(converted.content, name=path.name)
    _check_io(graph, (job.batch_size, *job.input_shape))
    found = _conversion_warnings(job, graph) + graph_compatibility(graph, path.name)
    write_bytes_atomic(path, converted.content)
    notes = []
    if job.batch_size != 1:
        notes.append(f"exported at a fixed batch of {job.batch_size}")
    if precision == "int8" and not job.full_integer and calibration is not None:
        notes.append("calibration images unused: weight-only int8 keeps activations in float32")
    return TfliteExportResult(
        path=path, precision=precision, input_shape=(job.batch_size, *job.input_shape),
        input_dtype=graph.inputs[0].dtype, output_dtype=graph.outputs[0].dtype, input_layout=INPUT_LAYOUT,
        batch_size=job.batch_size, bytes=path.stat().st_size, export_s=time.perf_counter() - started,
        calibration_s=converted.calibration_s,
        calibration_samples=int(job.calibration.shape[0]) if job.full_integer else None,
        quantization=converted.quantization, op_counts=graph.op_counts(), op_versions=graph.op_versions(),
        warnings=found, notes=notes, tool_versions={name: package_version(name) for name in _TOOLS},
    )


def _check_job(model, input_shape, *, precision, calibration, batch_size, per_channel, int8_scheme) -> _Job:
    """Refuse bad arguments before any conversion work (BadInputError naming the argument)."""
    import torch

    if precision not in PRECISIONS:
        raise BadInputError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if int8_scheme not in INT8_SCHEMES:
        raise BadInputError(f"int8_scheme must be one of {', '.join(INT8_SCHEMES)}; got {int8_scheme!r}")
    full_integer = precision == "int8" and int8_scheme == "full-integer"
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
        raise BadInputError(f"input shape must be (C, H, W) with positive integers; got {input_shape!r}")
    shape = tuple(int(d) for d in shape)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise BadInputError(f"batch_size must be a positive integer; got {batch_size!r}")
    if not isinstance(model, torch.nn.Module):
        raise BadInputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if full_integer:
        if calibration is None:
            raise BadInputError(
                "int8 needs calibration images: pass a preprocessed NCHW float32 array of real "
                "samples (a few hundred), e.g. from the checkpoint's training data"
            )
        calibration = check_samples(calibration, shape)
    return _Job(model, shape, precision, calibration, int(batch_size), bool(per_channel), full_integer)


def _sample_args(job: _Job) -> tuple:
    """The example input litert-torch traces: real images for int8, else seeded noise."""
    import torch

    if job.full_integer:
        example = job.calibration[:job.batch_size]
        if example.shape[0] < job.batch_size:
            example = np.resize(example, (job.batch_size, *job.input_shape)).astype(np.float32)
    else:
        example = np.random.default_rng(0).standard_normal((job.batch_size, *job.input_shape), dtype=np.float32)
    return (torch.from_numpy(np.ascontiguousarray(example)),)


def _convert(job: _Job) -> TfliteContent:
    """litert-torch's flatbuffer for the job's precision, and how it was quantized."""
    import torch

    litert_torch = require("litert_torch", "tflite", "TFLite export")
    sample_args = _sample_args(job)
    with eval_mode(job.model), _quiet_litert(), torch.inference_mode(False):
        try:
            if job.precision == "fp32":
                return TfliteContent(bytes(litert_torch.convert(job.model, sample_args).model_content()), None)
            if job.precision == "fp16":
                content = convert_with_weight_recipe(litert_torch, job.model, sample_args, weights="fp16",
                                                     per_channel=job.per_channel)
                return TfliteContent(bytes(content), {"weights": "float16", "activations": "float32"})
            if not job.full_integer:
                return quantize_weight_only_int8(job.model, sample_args, per_channel=job.per_channel)
            return quantize_pt2e_int8(job.model, job.input_shape, job.calibration, sample_args=sample_args,
                                      per_channel=job.per_channel, float_modules=job.float_modules)
        except BadInputError:
            raise
        except Exception as exc:  # litert-torch / torch.export raise many unrelated types
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TfliteExportError(
                f"litert-torch could not convert the model to {job.precision} TFLite: {first_line[:300]}"
            ) from exc


def _conversion_warnings(job: _Job, graph: TfliteGraph) -> list[str]:
    """Float compute left in a full-integer file; conv weights that missed per-channel scales."""
    found = []
    if job.full_integer:
        leftovers = graph.float_compute_ops()
        if leftovers:
            found.append(
                f"int8 export left {sum(leftovers.values())} op(s) computing in float between "
                f"DEQUANTIZE/QUANTIZE pairs ({format_counts(leftovers)}): no int8 rule for "
                "them, so they run slower and split the XNNPACK graph"
            )
    if job.precision == "int8" and job.per_channel:
        not_per_channel = [
            w for w in graph.weights
            if w.op in ("CONV_2D", "DEPTHWISE_CONV_2D") and w.dtype == "int8" and w.scales <= 1
            and w.shape and w.shape[0 if w.op == "CONV_2D" else -1] > 1
        ]
        if not_per_channel:
            found.append(f"{len(not_per_channel)} conv weight(s) are not per-channel quantized")
    return found


def _check_io(graph: TfliteGraph, expected: tuple[int, ...]) -> None:
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise CheckFailedError(
            f"the .tflite has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; "
            "an image classifier export must have one of each"
        )
    source, logits = graph.inputs[0], graph.outputs[0]
    if source.shape != tuple(expected) or source.dtype != "float32":
        raise CheckFailedError(
            f"the .tflite input is {source.dtype} {list(source.shape)}, expected float32 {list(expected)}"
        )
    if logits.dtype != "float32" or len(logits.shape) != 2 or logits.shape[0] != expected[0]:
        raise CheckFailedError(
            f"the .tflite output is {logits.dtype} {list(logits.shape)}, expected float32 logits "
            f"of batch {expected[0]}"
        )


@contextlib.contextmanager
def _quiet_litert() -> Iterator[None]:
    """litert-torch prints a progress tree and logs per stage; a library call stays silent."""
    saved = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    loggers = [logging.getLogger(n) for n in ("", "absl", "litert_torch", "torch._export", "torch.export")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.level, logging.ERROR))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if saved is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = saved

