"""PyTorch -> TFLite / LiteRT through litert-torch: fp32, fp16 weights, int8 (full-integer or weights).

Every artifact takes float32 NCHW images and returns float32 logits, at a fixed batch (1 by
default; TFLite tensors have static shapes, a runner may resize the input tensor). An int8
artifact computes in int8 inside: a QUANTIZE op after the input and a DEQUANTIZE op before the
output are part of the graph, so callers never see quantized tensors.

INT8 is litert-torch's PT2E quantizer (int8 activations, asymmetric per-tensor; int8 weights,
symmetric per-channel by default because per-tensor weights collapse depthwise networks),
calibrated on the real, preprocessed calibration images. With torch 2.14, `torch.export` no
longer records the `source_fn_stack` that litert-torch's annotators for add, mul, cat and
max-pool look for, so those ops stayed float between DEQUANTIZE/QUANTIZE pairs (MobileNet v2:
9 of its 10 residual adds); `_annotate_by_target` annotates them by their aten target instead,
and the export checks that no float compute is left.

Runtime compatibility (measured on this x86-64 machine, see benchmarks/tflite_runtimes.py
--per-op): tflite-runtime 2.14, the last tflite-runtime release and still what Raspberry Pi OS
users pip-install, was built without XNNPACK's quantized-operator support: its default XNNPACK
delegate takes no op that computes in int8. Cut into one-op models, none of the 72 ops of
MobileNet v2's int8 file is delegated there (ai-edge-litert 2.3 delegates all 72), and a graph
without float tensors gets no delegate at all, which is what TFLite's source does when built
without XNNPACK_DELEGATE_ENABLE_QS8/QU8. The int8 ops run on the built-in kernels instead,
mostly in DEPTHWISE_CONV_2D, whose int8 kernel on x86 is no faster than the reference one
(MobileNet v2 224x224, 1 thread: fp32 26 ms, int8 148 ms there; 15 and 14 ms on ai-edge-litert).
Nothing in the file changes which delegate flags a runtime was built with: with per-tensor
weights, int8 I/O (the one-op models) or NHWC I/O the int8 ops stay undelegated too. What does
run delegated on 2.14 is float compute with weights stored small: fp16, or int8 weight-only
(`int8_scheme="weight-only"`: a quarter of the fp32 size, fp32 speed on both runtimes, no int8
speed-up; 26 ms on 2.14, 14 ms on ai-edge-litert in the run above). `tflite_compatibility` says so and names the runtime
to install for int8 speed. On ARM the built-in int8 kernels have NEON paths that x86 lacks, so
the size of the gap on a Raspberry Pi was not measured here.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgecnn.errors import BadInputError, CheckFailedError, require
from edgecnn.compare import (
    ParityResult,
    Progress,
    check_samples,
    compare_logits,
    enforce,
    torch_logits,
)

__all__ = [
    "INPUT_LAYOUT",
    "INT8_SCHEMES",
    "PRECISIONS",
    "TensorSpec",
    "TfliteExportError",
    "TfliteExportResult",
    "TfliteGraph",
    "TfliteOp",
    "TfliteWeight",
    "check_parity",
    "describe_tflite",
    "export_tflite",
    "tflite_compatibility",
    "tflite_logits",
]

PRECISIONS = ("fp32", "fp16", "int8")
# full-integer: int8 weights and activations (the int8 speed-up, needs an int8-capable XNNPACK);
# weight-only: int8 weights dequantized to float32 at load, float compute (fp32 speed, 1/4 size,
# delegated to XNNPACK by every runtime, tflite-runtime 2.14 included).
INT8_SCHEMES = ("full-integer", "weight-only")
INPUT_LAYOUT = "NCHW"
# Images per forward pass while calibrating (when the model exports with a dynamic batch).
CALIBRATION_BATCH = 16

# Ops that carry weights: their input 1 is the weight tensor.
_WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D")
# Ops that only move or convert data; everything else computes.
_CONVERSION_OPS = ("QUANTIZE", "DEQUANTIZE")
_QUANTIZED_DTYPES = ("int8", "uint8", "int16")


class TfliteExportError(BadInputError):
    """litert-torch could not convert or quantize the model as asked."""


# --------------------------------------------------------------------------------------------
# Reading a .tflite flatbuffer
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output as stored in the file."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None  # quantized tensors only
    zero_point: int | None = None


@dataclass(frozen=True)
class TfliteOp:
    """One operator: builtin name, operator version and the dtypes it reads and writes."""

    index: int
    name: str
    version: int
    input_dtypes: tuple[str, ...]
    output_dtypes: tuple[str, ...]

    @property
    def quantized(self) -> bool:
        """Computes on quantized integers (QUANTIZE/DEQUANTIZE only convert, so they are not)."""
        return self.name not in _CONVERSION_OPS and any(
            d in _QUANTIZED_DTYPES for d in self.input_dtypes[:1] + self.output_dtypes
        )

    @property
    def float_compute(self) -> bool:
        return self.name not in _CONVERSION_OPS and any(
            d in ("float32", "float16") for d in self.input_dtypes[:1] + self.output_dtypes
        )


@dataclass(frozen=True)
class TfliteWeight:
    """The weight tensor of a conv / fully-connected op, as stored (before any DEQUANTIZE)."""

    op_index: int
    op: str
    shape: tuple[int, ...]
    dtype: str  # storage dtype: float32, float16 (dequantized at load), int8, ...
    scales: int  # number of quantization scales: 0 float, 1 per-tensor, >1 per-channel
    quantized_dimension: int | None


@dataclass(frozen=True)
class TfliteGraph:
    """What a .tflite file contains, read from its flatbuffer (main subgraph)."""

    ops: tuple[TfliteOp, ...]
    weights: tuple[TfliteWeight, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    custom_ops: tuple[str, ...] = ()
    subgraphs: int = 1

    def op_counts(self) -> dict[str, int]:
        """Operator name -> count, most frequent first."""
        counts = Counter(op.name for op in self.ops)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def op_versions(self) -> dict[str, list[int]]:
        """Operator name -> the versions used."""
        versions: dict[str, set[int]] = {}
        for op in self.ops:
            versions.setdefault(op.name, set()).add(op.version)
        return {name: sorted(v) for name, v in sorted(versions.items())}

    def quantized_ops(self) -> dict[str, int]:
        return dict(Counter(op.name for op in self.ops if op.quantized))

    def float_compute_ops(self) -> dict[str, int]:
        return dict(Counter(op.name for op in self.ops if op.float_compute))

    def to_dict(self) -> dict[str, Any]:
        return {
            "op_counts": self.op_counts(),
            "op_versions": self.op_versions(),
            "inputs": [asdict(t) for t in self.inputs],
            "outputs": [asdict(t) for t in self.outputs],
            "weights": [asdict(w) for w in self.weights],
            "custom_ops": list(self.custom_ops),
        }


def _schema():
    """The TFLite flatbuffer schema module (ships with ai-edge-litert and litert-converter)."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        try:
            from litert_converter import schema_py_generated as schema
        except ImportError:
            schema = require("ai_edge_litert.schema_py_generated", "litert", "reading .tflite files")
    return schema


def _enum_names(enum_class) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


def describe_tflite(path: str | os.PathLike) -> TfliteGraph:
    """Read ops (with versions and dtypes), conv/FC weights and I/O of a .tflite file."""
    schema = _schema()
    data = Path(path).read_bytes()
    try:
        model = schema.Model.GetRootAs(data, 0)
        if model.SubgraphsLength() == 0:
            raise ValueError("no subgraph")
        graph = model.Subgraphs(0)
    except Exception as exc:  # flatbuffers raises assorted types on garbage
        raise BadInputError(f"{Path(path).name} is not a readable .tflite file: {exc}") from exc
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = {k: v.lower() for k, v in _enum_names(schema.TensorType).items()}

    def dtype(index: int) -> str:
        return type_names.get(graph.Tensors(index).Type(), "unknown")

    def has_data(index: int) -> bool:
        buffer = model.Buffers(graph.Tensors(index).Buffer())
        return buffer is not None and (buffer.DataLength() > 0 or buffer.Offset() > 0)

    def spec(index: int) -> TensorSpec:
        tensor = graph.Tensors(index)
        quant = tensor.Quantization()
        scale = zero_point = None
        if quant is not None and quant.ScaleLength() == 1:
            scale = float(quant.Scale(0))
            zero_point = int(quant.ZeroPoint(0)) if quant.ZeroPointLength() else 0
        shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        return TensorSpec(tensor.Name().decode(), shape, dtype(index), scale, zero_point)

    producers: dict[int, int] = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        for j in range(op.OutputsLength()):
            producers[op.Outputs(j)] = i

    ops, weights, custom = [], [], []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = op_names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            custom.append((code.CustomCode() or b"?").decode())
        inputs = [op.Inputs(j) for j in range(op.InputsLength()) if op.Inputs(j) >= 0]
        outputs = [op.Outputs(j) for j in range(op.OutputsLength())]
        ops.append(
            TfliteOp(
                i, name, int(code.Version()),
                tuple(dtype(t) for t in inputs), tuple(dtype(t) for t in outputs),
            )
        )
        if name in _WEIGHTED_OPS and len(inputs) > 1:
            weight_index = inputs[1]
            # fp16 / weight-only files store the weight behind a DEQUANTIZE op.
            producer = producers.get(weight_index)
            if not has_data(weight_index) and producer is not None:
                source = graph.Operators(producer)
                source_code = model.OperatorCodes(source.OpcodeIndex())
                if op_names.get(
                    max(source_code.BuiltinCode(), source_code.DeprecatedBuiltinCode())
                ) == "DEQUANTIZE" and has_data(source.Inputs(0)):
                    weight_index = source.Inputs(0)
            tensor = graph.Tensors(weight_index)
            quant = tensor.Quantization()
            scales = quant.ScaleLength() if quant is not None else 0
            weights.append(
                TfliteWeight(
                    op_index=i,
                    op=name,
                    shape=tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else (),
                    dtype=dtype(weight_index),
                    scales=int(scales),
                    quantized_dimension=int(quant.QuantizedDimension()) if scales else None,
                )
            )
    return TfliteGraph(
        ops=tuple(ops),
        weights=tuple(weights),
        inputs=tuple(spec(graph.Inputs(i)) for i in range(graph.InputsLength())),
        outputs=tuple(spec(graph.Outputs(i)) for i in range(graph.OutputsLength())),
        custom_ops=tuple(custom),
        subgraphs=int(model.SubgraphsLength()),
    )


# --------------------------------------------------------------------------------------------
# Runtime compatibility
# --------------------------------------------------------------------------------------------

# Highest operator version each builtin op has in tflite-runtime 2.14's op resolver, probed
# one op at a time (a version above this fails to load: "Didn't find op for builtin opcode").
# Ops missing here are unknown to 2.14 (STABLEHLO_*, ops added after 2.14).
_TFLITE_RUNTIME_2_14_MAX_VERSION = {
    "ABS": 5, "ADD": 5, "ADD_N": 1, "ARG_MAX": 3, "ARG_MIN": 3, "ASSIGN_VARIABLE": 1, "ATAN2":
    1, "AVERAGE_POOL_2D": 3, "BATCH_MATMUL": 4, "BATCH_TO_SPACE_ND": 4,
    "BIDIRECTIONAL_SEQUENCE_LSTM": 3, "BIDIRECTIONAL_SEQUENCE_RNN": 3, "BITCAST": 1,
    "BITWISE_XOR": 1, "BROADCAST_ARGS": 1, "BROADCAST_TO": 3, "BUCKETIZE": 1, "CALL_ONCE": 1,
    "CAST": 5, "CEIL": 1, "COMPLEX_ABS": 1, "CONCATENATION": 4, "CONV_2D": 7, "CONV_3D": 1,
    "CONV_3D_TRANSPOSE": 1, "COS": 1, "CUMSUM": 1, "DENSIFY": 1, "DEPTHWISE_CONV_2D": 7,
    "DEPTH_TO_SPACE": 2, "DEQUANTIZE": 5, "DIV": 2, "DYNAMIC_UPDATE_SLICE": 1, "ELU": 1,
    "EMBEDDING_LOOKUP": 3, "EMBEDDING_LOOKUP_SPARSE": 1, "EQUAL": 4, "EXP": 2, "EXPAND_DIMS": 1,
    "FAKE_QUANT": 2, "FILL": 4, "FLOOR": 1, "FLOOR_DIV": 3, "FLOOR_MOD": 2, "FULLY_CONNECTED":
    10, "GATHER": 6, "GATHER_ND": 4, "GELU": 2, "GREATER": 2, "GREATER_EQUAL": 3, "HARD_SWISH":
    1, "HASHTABLE": 1, "HASHTABLE_FIND": 1, "HASHTABLE_IMPORT": 1, "HASHTABLE_LOOKUP": 1,
    "HASHTABLE_SIZE": 1, "IF": 1, "IMAG": 1, "L2_NORMALIZATION": 2, "L2_POOL_2D": 1,
    "LEAKY_RELU": 2, "LESS": 3, "LESS_EQUAL": 2, "LOCAL_RESPONSE_NORMALIZATION": 1, "LOG": 1,
    "LOGICAL_AND": 1, "LOGICAL_NOT": 1, "LOGICAL_OR": 1, "LOGISTIC": 3, "LOG_SOFTMAX": 2,
    "LSH_PROJECTION": 1, "LSTM": 4, "MATRIX_DIAG": 1, "MATRIX_SET_DIAG": 1, "MAXIMUM": 4,
    "MAX_POOL_2D": 3, "MEAN": 3, "MINIMUM": 4, "MIRROR_PAD": 3, "MUL": 7, "MULTINOMIAL": 1,
    "NEG": 1, "NON_MAX_SUPPRESSION_V4": 1, "NON_MAX_SUPPRESSION_V5": 1, "NOT_EQUAL": 3,
    "ONE_HOT": 1, "PACK": 4, "PAD": 4, "PADV2": 4, "POW": 1, "PRELU": 1, "QUANTIZE": 3,
    "RANDOM_STANDARD_NORMAL": 1, "RANDOM_UNIFORM": 1, "RANGE": 2, "RANK": 1, "READ_VARIABLE": 1,
    "REAL": 1, "REDUCE_ALL": 1, "REDUCE_ANY": 1, "REDUCE_MAX": 3, "REDUCE_MIN": 3,
    "REDUCE_PROD": 2, "RELU": 3, "RELU6": 3, "RELU_0_TO_1": 1, "RELU_N1_TO_1": 1, "RESHAPE": 1,
    "RESIZE_BILINEAR": 4, "RESIZE_NEAREST_NEIGHBOR": 4, "REVERSE_SEQUENCE": 1, "REVERSE_V2": 3,
    "RFFT2D": 1, "RIGHT_SHIFT": 1, "RNN": 3, "ROUND": 1, "RSQRT": 2, "SCATTER_ND": 1,
    "SEGMENT_SUM": 1, "SELECT": 4, "SELECT_V2": 2, "SHAPE": 1, "SIGN": 2, "SIN": 1, "SKIP_GRAM":
    1, "SLICE": 6, "SOFTMAX": 3, "SPACE_TO_BATCH_ND": 4, "SPACE_TO_DEPTH": 2, "SPARSE_TO_DENSE":
    3, "SPLIT": 4, "SPLIT_V": 2, "SQRT": 1, "SQUARE": 1, "SQUARED_DIFFERENCE": 2, "SQUEEZE": 2,
    "STRIDED_SLICE": 8, "SUB": 5, "SUM": 2, "SVDF": 4, "TANH": 3, "TILE": 3, "TOPK_V2": 3,
    "TRANSPOSE": 6, "TRANSPOSE_CONV": 4, "UNIDIRECTIONAL_SEQUENCE_LSTM": 4,
    "UNIDIRECTIONAL_SEQUENCE_RNN": 3, "UNIQUE": 1, "UNPACK": 4, "UNSORTED_SEGMENT_MAX": 1,
    "UNSORTED_SEGMENT_MIN": 1, "UNSORTED_SEGMENT_PROD": 1, "UNSORTED_SEGMENT_SUM": 1,
    "VAR_HANDLE": 1, "WHERE": 2, "WHILE": 1, "ZEROS_LIKE": 1,
}  # fmt: skip

INSTALL_LITERT = "pip install ai-edge-litert (or 'edgecnn[litert]'; tested here with 2.3.0)"


def _format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} x{n}" for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def tflite_compatibility(path: str | os.PathLike) -> list[str]:
    """Warnings for runtimes that cannot run the .tflite at `path` at all, or not at full speed.

    Checks the file against tflite-runtime 2.14 (the last tflite-runtime release, still what
    Raspberry Pi OS users pip-install on Python 3.11): operators or versions it lacks, and
    quantized operators its XNNPACK delegate does not take. An empty list: no known problem.
    """
    return _compatibility(describe_tflite(path), Path(path).name)


def _compatibility(graph: TfliteGraph, name: str) -> list[str]:
    found: list[str] = []

    unknown = sorted(
        {op.name for op in graph.ops if op.name not in _TFLITE_RUNTIME_2_14_MAX_VERSION and op.name != "CUSTOM"}
    )
    too_new = sorted(
        {
            f"{op.name} v{op.version} (2.14 has up to v{_TFLITE_RUNTIME_2_14_MAX_VERSION[op.name]})"
            for op in graph.ops
            if op.name in _TFLITE_RUNTIME_2_14_MAX_VERSION
            and op.version > _TFLITE_RUNTIME_2_14_MAX_VERSION[op.name]
        }
    )
    if unknown or too_new:
        parts = []
        if unknown:
            parts.append("operators it does not know: " + ", ".join(unknown))
        if too_new:
            parts.append("operator versions newer than it has: " + ", ".join(too_new))
        found.append(
            f"{name} does not load on tflite-runtime 2.14 ({'; '.join(parts)}); "
            f"{INSTALL_LITERT} on the device"
        )
    if graph.custom_ops:
        found.append(
            f"{name} has custom operators ({', '.join(sorted(set(graph.custom_ops)))}) that stock "
            "TFLite runtimes do not register; the runtime must be built with them"
        )

    quantized = graph.quantized_ops()
    if quantized:
        found.append(
            f"{name} computes in int8 ({_format_counts(quantized)}). tflite-runtime 2.14 (the "
            "last tflite-runtime release) was built without XNNPACK's int8 support: its XNNPACK "
            "delegate takes none of these ops, which run on its built-in int8 kernels instead "
            "(measured on x86-64 with 1-2 threads, MobileNet v2 224x224: 10-16x slower there than "
            "on ai-edge-litert, and 5-6x slower than the fp32 file; not measured on an ARM board). "
            "For int8 speed, "
            f"{INSTALL_LITERT} on the device; to stay on tflite-runtime 2.14, deploy the fp32 or "
            "fp16 file, or an int8 weight-only file (int8_scheme='weight-only': 1/4 of the fp32 "
            "size, fp32 speed)"
        )
    return found


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


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


def _check_input_shape(input_shape) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
        raise BadInputError(f"input shape must be (C, H, W) with positive integers; got {input_shape!r}")
    return tuple(int(d) for d in shape)  # type: ignore[return-value]


def _version(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


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


@contextlib.contextmanager
def _eval_mode(model) -> Iterator[Any]:
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


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
) -> TfliteExportResult:
    """Convert `model` to a .tflite at `path`: float32 NCHW input, float32 logits, fixed batch.

    precision: fp32; fp16 (float16 weights, dequantized to float32 when the runtime loads the
    file); int8 (full-integer: int8 weights, per-channel unless `per_channel=False`, and int8
    activations calibrated on `calibration`, a preprocessed NCHW float32 array, required).
    `int8_scheme="weight-only"` instead stores int8 weights and computes in float32: no
    calibration, no int8 speed-up, a quarter of the fp32 size, and fp32 speed on every runtime
    (tflite-runtime 2.14 cannot run full-integer files fast, see `tflite_compatibility`).
    `batch_size` is the batch baked into the file (TFLite tensors are static; 1 is what edge
    devices run, a runner may resize the input). The result lists op counts and warnings.
    """
    import torch

    if precision not in PRECISIONS:
        raise BadInputError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if int8_scheme not in INT8_SCHEMES:
        raise BadInputError(f"int8_scheme must be one of {', '.join(INT8_SCHEMES)}; got {int8_scheme!r}")
    full_integer = precision == "int8" and int8_scheme == "full-integer"
    input_shape = _check_input_shape(input_shape)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise BadInputError(f"batch_size must be a positive integer; got {batch_size!r}")
    batch_size = int(batch_size)
    if not isinstance(model, torch.nn.Module):
        raise BadInputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if full_integer:
        if calibration is None:
            raise BadInputError(
                "int8 needs calibration images: pass a preprocessed NCHW float32 array of real "
                "samples (a few hundred), e.g. from the checkpoint's training data"
            )
        calibration = check_samples(calibration, input_shape)
    litert_torch = require("litert_torch", "tflite", "TFLite export")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")

    if full_integer:
        example = calibration[:batch_size]
        if example.shape[0] < batch_size:
            example = np.resize(example, (batch_size, *input_shape)).astype(np.float32)
    else:
        example = np.random.default_rng(0).standard_normal((batch_size, *input_shape), dtype=np.float32)
    sample_args = (torch.from_numpy(np.ascontiguousarray(example)),)

    quantization = None
    calibration_s = None
    notes: list[str] = []
    started = time.perf_counter()
    try:
        with _eval_mode(model), _quiet_litert(), torch.inference_mode(False):
            try:
                if precision == "fp32":
                    content = litert_torch.convert(model, sample_args).model_content()
                elif precision == "fp16":
                    content = _convert_recipe(litert_torch, model, sample_args, "fp16", per_channel)
                    quantization = {"weights": "float16", "activations": "float32"}
                elif not full_integer:
                    content = _convert_recipe(litert_torch, model, sample_args, "int8", per_channel)
                    quantization = {
                        "method": "ai-edge-quantizer weight-only (litert-torch recipe)",
                        "weights": "int8 symmetric " + ("per-channel" if per_channel else "per-tensor"),
                        "activations": "float32 (weights dequantized at load)",
                        "scheme": "weight-only",
                    }
                else:
                    content, quantization, calibration_s = _convert_int8(
                        litert_torch, model, input_shape, sample_args, calibration, per_channel
                    )
                    content = _float_io(content)
            except BadInputError:
                raise
            except Exception as exc:  # litert-torch / torch.export raise many unrelated types
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise TfliteExportError(
                    f"litert-torch could not convert the model to {precision} TFLite: "
                    f"{first_line[:300]}"
                ) from exc
        tmp.write_bytes(bytes(content))
        graph = describe_tflite(tmp)
        _check_io(graph, (batch_size, *input_shape))
        found = []
        if full_integer:
            leftovers = graph.float_compute_ops()
            if leftovers:
                found.append(
                    f"int8 export left {sum(leftovers.values())} op(s) computing in float between "
                    f"DEQUANTIZE/QUANTIZE pairs ({_format_counts(leftovers)}): no int8 rule for "
                    "them, so they run slower and split the XNNPACK graph"
                )
        if precision == "int8":
            not_per_channel = [
                w for w in graph.weights
                if w.op in ("CONV_2D", "DEPTHWISE_CONV_2D") and w.dtype == "int8" and w.scales <= 1
                and w.shape and w.shape[0 if w.op == "CONV_2D" else -1] > 1
            ]
            if per_channel and not_per_channel:
                found.append(f"{len(not_per_channel)} conv weight(s) are not per-channel quantized")
        found.extend(_compatibility(graph, path.name))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    export_s = time.perf_counter() - started
    if batch_size != 1:
        notes.append(f"exported at a fixed batch of {batch_size}")
    if precision == "int8" and not full_integer and calibration is not None:
        notes.append("calibration images unused: weight-only int8 keeps activations in float32")

    return TfliteExportResult(
        path=path,
        precision=precision,
        input_shape=(batch_size, *input_shape),
        input_dtype=graph.inputs[0].dtype,
        output_dtype=graph.outputs[0].dtype,
        input_layout=INPUT_LAYOUT,
        batch_size=batch_size,
        bytes=path.stat().st_size,
        export_s=export_s,
        calibration_s=calibration_s,
        calibration_samples=int(calibration.shape[0]) if full_integer else None,
        quantization=quantization,
        op_counts=graph.op_counts(),
        op_versions=graph.op_versions(),
        warnings=found,
        notes=notes,
        tool_versions={
            "torch": _version("torch"),
            "litert-torch": _version("litert-torch"),
            "ai-edge-litert": _version("ai-edge-litert"),
            "torchao": _version("torchao"),
        },
    )


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


# --------------------------------------------------------------------------------------------
# INT8: PT2E quantization
# --------------------------------------------------------------------------------------------


def _convert_recipe(litert_torch, model, sample_args, weights: str, per_channel: bool) -> bytes:
    """fp16 or int8 weight-only file: litert-torch converts, then ai-edge-quantizer rewrites weights.

    Both leave activations float32: each weight is stored small and dequantized by a DEQUANTIZE
    op, which XNNPACK folds into the float weights when the file loads.
    """
    from litert_torch.generative.quantize import quant_attrs, quant_recipes

    if weights == "fp16":
        recipe = quant_recipes.full_fp16_recipe()
    else:
        granularity = quant_attrs.Granularity.CHANNELWISE if per_channel else quant_attrs.Granularity.NONE
        recipe = quant_recipes.full_weight_only_recipe(
            weight_dtype=quant_attrs.Dtype.INT8, granularity=granularity
        )
    # ai-edge-quantizer print()s sizes and a progress bar; a library call stays silent.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return litert_torch.convert(model, sample_args, quant_config=recipe).model_content()


def _convert_int8(litert_torch, model, input_shape, sample_args, calibration, per_channel):
    """Quantize with PT2E (calibrating on `calibration`), then convert; returns bytes, scheme, s."""
    import torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = _full_integer_quantizer_class()().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=per_channel)
    )
    exported, calibration_batch = _export_for_calibration(model, input_shape, calibration)
    prepared = prepare_pt2e(exported, quantizer)
    started = time.perf_counter()
    with torch.no_grad():
        for start in range(0, calibration.shape[0], calibration_batch):
            prepared(torch.from_numpy(calibration[start : start + calibration_batch]))
    calibration_s = time.perf_counter() - started
    converted = convert_pt2e(prepared, fold_quantize=False)
    edge_model = litert_torch.convert(
        converted, sample_args, quant_config=QuantConfig(pt2e_quantizer=quantizer)
    )
    scheme = {
        "method": "litert-torch PT2E static quantization",
        "weights": "int8 symmetric " + ("per-channel" if per_channel else "per-tensor"),
        "activations": "int8 asymmetric per-tensor",
        "activation_observer": "histogram",
        "bias": "int32",
        "io": "float32 (QUANTIZE / DEQUANTIZE inside the graph)",
    }
    return edge_model.model_content(), scheme, calibration_s


def _export_for_calibration(model, input_shape, calibration):
    """torch.export with a dynamic batch so calibration runs in batches; batch 1 as fallback."""
    import torch

    pair = np.resize(calibration[:2], (2, *input_shape)).astype(np.float32)
    try:
        batch = torch.export.Dim("batch", min=1, max=4096)
        exported = torch.export.export(
            model, (torch.from_numpy(pair),), dynamic_shapes=({0: batch},), strict=False
        ).module()
        return exported, CALIBRATION_BATCH
    except Exception:  # a forward that fixes the batch size: calibrate image by image
        exported = torch.export.export(model, (torch.from_numpy(pair[:1]),), strict=False).module()
        return exported, 1


_QUANTIZER_CLASS = None


def _full_integer_quantizer_class():
    """litert-torch's PT2EQuantizer plus annotations by aten target (built lazily: heavy imports)."""
    global _QUANTIZER_CLASS
    if _QUANTIZER_CLASS is None:
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer

        class FullIntegerPT2EQuantizer(PT2EQuantizer):
            """Annotates what litert-torch's source-partition annotators miss under torch>=2.9."""

            def transform_for_annotation(self, model):
                _decompose_hardsigmoid(model)
                return super().transform_for_annotation(model)

            def annotate(self, model):
                # litert-torch print()s a line per ResNet-style add+relu it cannot fuse.
                with contextlib.redirect_stdout(io.StringIO()):
                    model = super().annotate(model)
                _annotate_by_target(model, self.global_config)
                return model

        _QUANTIZER_CLASS = FullIntegerPT2EQuantizer
    return _QUANTIZER_CLASS


def _decompose_hardsigmoid(gm) -> None:
    """hardsigmoid(x) -> hardtanh(x + 3, 0, 6) * (1/6), before annotation.

    TFLite has no HARD_SIGMOID: litert-torch lowers it to ADD, RELU6 and MUL after PT2E has
    placed its quantize/dequantize pair around the whole op, so the three stayed float
    (MobileNet v3's squeeze-excite blocks). Spelled out in aten ops, each one is quantized.
    """
    import torch

    aten = torch.ops.aten
    targets = {aten.hardsigmoid.default, aten.hardsigmoid_.default}
    if os.environ.get("EDGECNN_TFLITE_DECOMPOSE_HARDSWISH") == "1":
        targets |= {aten.hardswish.default, aten.hardswish_.default}
    changed = False
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in targets:
            continue
        with gm.graph.inserting_before(node):
            shifted = gm.graph.call_function(aten.add.Tensor, (node.args[0], 3.0))
            clamped = gm.graph.call_function(aten.hardtanh.default, (shifted, 0.0, 6.0))
            scaled = gm.graph.call_function(aten.mul.Tensor, (clamped, 1.0 / 6.0))
            created = [shifted, clamped, scaled]
            if node.target in (aten.hardswish.default, aten.hardswish_.default):
                scaled = gm.graph.call_function(aten.mul.Tensor, (node.args[0], scaled))
                created.append(scaled)
        for new in created:
            new.meta.update({k: v for k, v in node.meta.items() if k in ("nn_module_stack", "stack_trace")})
            if "val" in node.meta:
                new.meta["val"] = node.meta["val"]
        node.replace_all_uses_with(scaled)
        gm.graph.erase_node(node)
        changed = True
    if changed:
        gm.graph.lint()
        gm.recompile()


def _annotate_by_target(gm, config) -> None:
    """Quantize adds, muls, concats, pools, activations and data movement in the int8 region.

    litert-torch finds add/mul/cat/max-pool through `source_fn_stack` metadata, which
    `torch.export` (non-strict, torch 2.14) no longer records; without this pass they stay float
    between DEQUANTIZE/QUANTIZE ops. One pass in graph order: an op is annotated when its input
    is already quantized, so the int8 region grows from the convolutions.
    """
    import operator

    import torch
    from litert_torch.quantize.pt2e_quantizer_utils import (
        get_input_act_qspec,
        get_output_act_qspec,
    )
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    aten = torch.ops.aten
    binary = {aten.add.Tensor, aten.add_.Tensor, aten.mul.Tensor, aten.mul_.Tensor, aten.sub.Tensor}
    relus = {aten.relu.default, aten.relu_.default}
    # Output range is the input's (or inside it): share the input's quantization parameters.
    sharing = {
        aten.max_pool2d.default, aten.adaptive_avg_pool2d.default, aten.avg_pool2d.default,
        aten.mean.dim, aten.hardtanh.default, aten.hardtanh_.default, aten.view.default,
        aten.reshape.default, aten.flatten.using_ints, aten.permute.default, aten.transpose.int,
        aten.contiguous.default, aten.clone.default, aten.dropout.default, aten.dropout_.default,
        aten.squeeze.dim, aten.squeeze.dims, aten.unsqueeze.default, aten.pixel_shuffle.default,
        aten.upsample_nearest2d.vec, aten.slice.Tensor,
    }
    # Output range differs from the input's: a fresh observer on the output.
    fresh_output = relus | {
        aten.hardswish.default, aten.hardswish_.default, aten.hardsigmoid.default,
        aten.hardsigmoid_.default, aten.upsample_bilinear2d.vec,
    }
    splits = {aten.chunk.default, aten.split.Tensor, aten.split_with_sizes.default, aten.unbind.int}
    input_qspec = get_input_act_qspec(config)
    output_qspec = get_output_act_qspec(config)
    if input_qspec is None or output_qspec is None:  # dynamic quantization: weights only
        return

    def annotated(node) -> bool:
        ann = node.meta.get("quantization_annotation")
        return ann is not None and ann._annotated

    def quantized(node) -> bool:
        ann = node.meta.get("quantization_annotation") if isinstance(node, torch.fx.Node) else None
        return ann is not None and ann.output_qspec is not None

    def set_annotation(node, inputs, output) -> None:
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map=inputs, output_qspec=output, _annotated=True
        )

    for node in gm.graph.nodes:
        if node.op != "call_function" or annotated(node):
            continue
        target = node.target
        first = node.args[0] if node.args else None
        if target in binary:
            operands = [a for a in node.args[:2] if isinstance(a, torch.fx.Node)]
            if not operands or not any(quantized(a) for a in operands):
                continue
            inputs = {a: input_qspec for a in operands}
            users = list(node.users)
            if len(users) == 1 and users[0].target in relus and not annotated(users[0]):
                set_annotation(node, inputs, None)  # ADD/MUL with a fused RELU
                set_annotation(users[0], {}, output_qspec)
            else:
                set_annotation(node, inputs, output_qspec)
        elif target == aten.cat.default:
            tensors = [t for t in first if isinstance(t, torch.fx.Node)]
            if not tensors or not any(quantized(t) for t in tensors):
                continue
            shared = SharedQuantizationSpec((tensors[0], node))
            inputs = {tensors[0]: input_qspec, **{t: shared for t in tensors[1:]}}
            set_annotation(node, inputs, shared)
        elif target in sharing and quantized(first):
            shared = SharedQuantizationSpec(first)
            set_annotation(node, {first: shared}, shared)
        elif target in fresh_output and quantized(first):
            set_annotation(node, {first: SharedQuantizationSpec(first)}, output_qspec)
        elif target in splits and quantized(first):
            shared = SharedQuantizationSpec(first)
            set_annotation(node, {first: shared}, None)
            for user in node.users:
                if user.target is operator.getitem and not annotated(user):
                    set_annotation(user, {}, shared)


# --------------------------------------------------------------------------------------------
# Float32 I/O for an int8 graph
# --------------------------------------------------------------------------------------------


def _float_io(content: bytes) -> bytes:
    """Give a quantized graph float32 inputs/outputs: QUANTIZE first, DEQUANTIZE last.

    litert-torch folds the input quantization into an int8 graph input; a float input keeps
    the file a drop-in replacement for the fp32 one (same feeding code, same golden logits),
    and the in-graph QUANTIZE is delegated (on ai-edge-litert) instead of done in numpy.
    """
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(content, 0))
    graph = model.subgraphs[0]
    quantized_types = {schema.TensorType.INT8, schema.TensorType.UINT8, schema.TensorType.INT16}

    def opcode(builtin: int, version: int) -> int:
        for index, code in enumerate(model.operatorCodes):
            if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and code.version == version:
                return index
        code = schema.OperatorCodeT()
        code.builtinCode = builtin
        code.deprecatedBuiltinCode = min(builtin, 127)
        code.version = version
        model.operatorCodes.append(code)
        return len(model.operatorCodes) - 1

    def float_twin(index: int) -> int:
        """A new float32 tensor that takes over the name of quantized tensor `index`."""
        old = graph.tensors[index]
        new = schema.TensorT()
        new.name = old.name
        new.shape = old.shape
        new.shapeSignature = old.shapeSignature
        new.type = schema.TensorType.FLOAT32
        new.hasRank = old.hasRank
        model.buffers.append(schema.BufferT())
        new.buffer = len(model.buffers) - 1
        old.name = (old.name or b"") + b"_quantized"
        graph.tensors.append(new)
        return len(graph.tensors) - 1

    def make_op(code_index: int, source: int, target: int):
        op = schema.OperatorT()
        op.opcodeIndex = code_index
        op.inputs = np.array([source], dtype=np.int32)
        op.outputs = np.array([target], dtype=np.int32)
        return op

    renamed: dict[int, int] = {}
    inputs = [int(i) for i in graph.inputs]
    for position, index in enumerate(inputs):
        if graph.tensors[index].type in quantized_types:
            twin = float_twin(index)
            graph.operators.insert(0, make_op(opcode(schema.BuiltinOperator.QUANTIZE, 2), twin, index))
            inputs[position] = renamed[index] = twin
    outputs = [int(i) for i in graph.outputs]
    for position, index in enumerate(outputs):
        if graph.tensors[index].type in quantized_types:
            twin = float_twin(index)
            graph.operators.append(make_op(opcode(schema.BuiltinOperator.DEQUANTIZE, 2), index, twin))
            outputs[position] = renamed[index] = twin
    if not renamed:
        return content
    graph.inputs = np.array(inputs, dtype=np.int32)
    graph.outputs = np.array(outputs, dtype=np.int32)
    for signature in model.signatureDefs or []:
        if signature.subgraphIndex not in (0, None):
            continue
        for tensor_map in list(signature.inputs or []) + list(signature.outputs or []):
            tensor_map.tensorIndex = renamed.get(tensor_map.tensorIndex, tensor_map.tensorIndex)
    builder = flatbuffers.Builder(len(content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# --------------------------------------------------------------------------------------------
# Running and parity
# --------------------------------------------------------------------------------------------


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            Interpreter = require("ai_edge_litert.interpreter", "litert", "running .tflite files").Interpreter
    return Interpreter


def tflite_logits(
    path: str | os.PathLike,
    samples: np.ndarray,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Logits of the .tflite at `path` on preprocessed NCHW `samples`, in its own batch size."""
    samples = check_samples(samples)
    interpreter = _interpreter_class()(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]
    batch = int(source["shape"][0])
    if tuple(source["shape"][1:]) != samples.shape[1:]:
        raise BadInputError(
            f"{Path(path).name} takes {list(source['shape'][1:])} per image; samples are "
            f"{list(samples.shape[1:])}"
        )
    in_scale, in_zero = source["quantization"]
    out_scale, out_zero = target["quantization"]
    outputs = []
    total = samples.shape[0]
    for start in range(0, total, batch):
        chunk = samples[start : start + batch]
        count = chunk.shape[0]
        if count < batch:  # a short last chunk is padded to the file's fixed batch
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - count, axis=0)])
        if source["dtype"] != np.float32:
            info = np.iinfo(source["dtype"])
            chunk = np.clip(np.round(chunk / in_scale + in_zero), info.min, info.max)
        interpreter.set_tensor(source["index"], chunk.astype(source["dtype"]))
        interpreter.invoke()
        logits = interpreter.get_tensor(target["index"])[:count]
        if target["dtype"] != np.float32:
            logits = (logits.astype(np.float32) - out_zero) * out_scale
        outputs.append(np.asarray(logits, dtype=np.float32))
        if progress is not None:
            progress(min(start + batch, total), total)
    return np.concatenate(outputs, axis=0)


def check_parity(
    model,
    tflite_path: str | os.PathLike,
    samples: np.ndarray,
    *,
    min_agreement: float | None = None,
    max_abs_diff: float | None = None,
    threads: int | None = None,
    reference_logits: np.ndarray | None = None,
) -> ParityResult:
    """Compare the .tflite against PyTorch on real `samples`; ParityError below the thresholds.

    `reference_logits` skips re-running PyTorch (then `model` may be None).
    """
    samples = check_samples(samples)
    if reference_logits is None:
        reference_logits = torch_logits(model, samples)
    candidate = tflite_logits(tflite_path, samples, threads=threads)
    return enforce(
        compare_logits(reference_logits, candidate),
        what=f"TFLite on {Path(tflite_path).name}",
        min_agreement=min_agreement,
        max_abs_diff=max_abs_diff,
    )
