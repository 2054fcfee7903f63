"""Static INT8 (QDQ) quantization of an ONNX model with ONNX Runtime's own tool.

`quant_pre_process` (symbolic shape inference + graph optimisation), then `quantize_static`
in QDQ format with per-channel weights, calibrated on real, preprocessed images.

Two flavours:
- the CPU default, for ONNX Runtime's CPU kernels (see `DEFAULT_ACTIVATION_TYPE`);
- `symmetric=True`, for TensorRT's explicit-quantization mode: int8 activations and weights,
  zero point 0 everywhere, per-channel weights on the output-channel axis, per-tensor
  activations, biases left in float (TensorRT quantizes only weights and activations).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import BadInputError, require
from edgecnn.export.onnx import NodeCounts, op_counts
from edgecnn.compare import Progress, check_samples

__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_ACTIVATION_TYPE",
    "DEFAULT_WEIGHT_TYPE",
    "OrtInt8Result",
    "quantize_onnx_int8",
]

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# U8 activations with S8 weights, measured best with benchmarks/int8_speed.py --variants on an
# AVX-512 VNNI CPU (MobileNet v2, 224, batch 1, 2 threads). ORT's CPU kernels are built around
# U8S8: every Conv, Add and pool becomes a fused QLinear* op. With S8 activations ORT has no
# fused int8 Add, so the residual Adds and the 1x1 convs beside them fall back to float between
# Q/DQ pairs (slower than fp32); U8 weights take a slower U8U8 path.
# reduce_range (7-bit weights) is on by default: an artifact is deployed to CPUs we do not know,
# and on x86 without VNNI (AVX2 only) ORT's U8S8 kernels sum pairs of u8*s8 products in int16
# (vpmaddubsw), which saturates with full 8-bit weights. Measured on an AVX2-only EPYC with the
# tiny digits CNN of the tests: 8-bit weights 72.8 % top-1, 7-bit 96.7 %, fp32 96.7 %. On a VNNI
# CPU the two give the same accuracy; the speed is the same kernels either way.
DEFAULT_ACTIVATION_TYPE = "QUInt8"
DEFAULT_WEIGHT_TYPE = "QInt8"
_QUANT_TYPES = ("QUInt8", "QInt8")
# Histogram calibrators keep every intermediate output of a chunk in memory before folding it
# into their histograms; chunks of this many images keep that bounded (~26 MB of activations
# per 224x224 MobileNet v2 image).
_IMAGES_PER_CHUNK = 16


@dataclass(frozen=True)
class OrtInt8Result(NodeCounts):
    """What `quantize_onnx_int8` wrote and how."""

    path: Path
    source: Path
    calibration_method: str
    calibration_size: int
    activation_type: str
    weight_type: str
    per_channel: bool
    symmetric: bool
    reduce_range: bool
    nodes_before: dict[str, int]  # op type -> count of the fp32 graph after pre-processing
    nodes_after: dict[str, int]  # op type -> count of the QDQ graph
    preprocess_s: float
    quantize_s: float  # calibration + quantization
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["source"] = str(self.source)
        return data


def _input_spec(onnx_module, model_path: Path) -> tuple[str, tuple]:
    model = onnx_module.load(str(model_path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise BadInputError(
            f"{model_path.name} has {len(inputs)} inputs; INT8 calibration needs a single image input"
        )
    dims = tuple(
        d.dim_value if d.dim_value > 0 else None for d in inputs[0].type.tensor_type.shape.dim
    )
    return inputs[0].name, dims


def _calibration_reader(base, input_name: str, images: np.ndarray, batch_size: int, progress):
    """A CalibrationDataReader over an NCHW array, in batches, with ranges for chunking."""

    class ArrayReader(base):
        def __init__(self):
            self.batches = [
                images[start : start + batch_size] for start in range(0, len(images), batch_size)
            ]
            self.total = len(images)
            self.start, self.end = 0, len(self.batches)
            self.position = 0
            self.done_images = 0

        def get_next(self):
            if self.position >= self.end:
                return None
            batch = self.batches[self.position]
            self.position += 1
            self.done_images += len(batch)
            if progress is not None:
                progress(min(self.done_images, self.total), self.total)
            return {input_name: batch}

        def __len__(self):
            return len(self.batches)

        def set_range(self, start_index: int, end_index: int):
            self.start, self.end = start_index, min(end_index, len(self.batches))
            self.position = self.start

        def rewind(self):
            self.position = self.start

    return ArrayReader()


def _chunk_batches(n_batches: int, batch_size: int) -> int:
    """Batches per calibration chunk: a divisor of n_batches (ORT requires it), near the target."""
    target = max(1, _IMAGES_PER_CHUNK // batch_size)
    return max(d for d in range(1, min(target, n_batches) + 1) if n_batches % d == 0)


@dataclass(frozen=True)
class _Options:
    """The quantization options of one `quantize_onnx_int8` call, validated and with the default types filled in."""

    method: str
    symmetric: bool
    per_channel: bool
    activation_type: str | None
    weight_type: str | None
    reduce_range: bool
    percentile: float

    def __post_init__(self):
        """Refuse unknown methods/types and out-of-range numbers; fill in the default types."""
        method = self.method.lower()
        if method not in CALIBRATION_METHODS:
            raise BadInputError(
                f"unknown calibration method {method!r}: choose one of {', '.join(CALIBRATION_METHODS)}"
            )
        activation_type, weight_type = self.activation_type, self.weight_type
        if self.symmetric:
            if activation_type not in (None, "QInt8") or weight_type not in (None, "QInt8"):
                raise BadInputError("symmetric (TensorRT) quantization uses QInt8 activations and weights")
            activation_type = weight_type = "QInt8"
        activation_type = activation_type or DEFAULT_ACTIVATION_TYPE
        weight_type = weight_type or DEFAULT_WEIGHT_TYPE
        for label, value in (("activation", activation_type), ("weight", weight_type)):
            if value not in _QUANT_TYPES:
                raise BadInputError(
                    f"unknown {label} type {value!r}: choose one of {', '.join(_QUANT_TYPES)}"
                )
        if not 0 < self.percentile <= 100:
            raise BadInputError(f"percentile must be in (0, 100], got {self.percentile}")
        # Frozen: the normalised values are set the way dataclasses themselves do.
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "activation_type", activation_type)
        object.__setattr__(self, "weight_type", weight_type)

    def result_fields(self) -> dict[str, Any]:
        """The options as `OrtInt8Result` records them."""
        fields = asdict(self)
        fields["calibration_method"] = fields.pop("method")
        del fields["percentile"]
        return fields


def _calibration_batch_size(onnx_path: Path, dims: tuple, images: np.ndarray, batch_size: int) -> int:
    """Check the images fit the model's input; the batch size calibration will feed it."""
    expected = tuple(dims[1:])
    if len(dims) != 4 or any(
        want is not None and want != got for want, got in zip(expected, images.shape[1:])
    ):
        raise BadInputError(
            f"calibration data has shape (C, H, W) = {tuple(images.shape[1:])} but "
            f"{onnx_path.name} takes {expected}: bring it to the model's input size and preprocessing"
        )
    if dims[0] is not None:
        batch_size = dims[0]  # a model exported with a fixed batch takes only that batch
        if len(images) % batch_size:
            raise BadInputError(
                f"{onnx_path.name} has a fixed batch of {batch_size}; give a multiple of "
                f"{batch_size} calibration images (got {len(images)})"
            )
        return batch_size
    # Equal batches: the histogram calibrators stack a chunk's outputs into one array.
    return max(d for d in range(1, min(batch_size, len(images)) + 1) if len(images) % d == 0)


def _prepare(onnx_path: Path, prepared: Path, *, preprocess: bool) -> float:
    """Write the graph quantize_static will read (pre-processed or a copy); seconds taken."""
    started = time.perf_counter()
    if preprocess:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=False)
    else:
        prepared.write_bytes(onnx_path.read_bytes())
    return time.perf_counter() - started


def _extra_options(options: _Options, *, n_batches: int, batch_size: int) -> dict[str, Any]:
    extra: dict[str, Any] = {"CalibStridedMinMax": _chunk_batches(n_batches, batch_size)}
    if options.method == "percentile":
        extra["CalibPercentile"] = options.percentile
    if options.symmetric:
        extra.update(
            ActivationSymmetric=True,
            WeightSymmetric=True,
            # TensorRT wants float biases: it folds them into its own int8 kernels.
            QuantizeBias=False,
        )
    return extra


def _quantize_static_quietly(
    quantization, prepared: Path, output: Path, *, reader, options: _Options, batch_size: int,
    nodes_to_exclude: tuple[str, ...] = (),
) -> float:
    """Calibrate and quantize `prepared` into `output`, muting ORT's chatter; seconds taken."""
    calibrate_method = {
        "minmax": quantization.CalibrationMethod.MinMax,
        "entropy": quantization.CalibrationMethod.Entropy,
        "percentile": quantization.CalibrationMethod.Percentile,
    }[options.method]
    extra_options = _extra_options(options, n_batches=len(reader), batch_size=batch_size)
    # quantize_static logs a pre-processing hint and per-tensor chatter at INFO/WARNING.
    quant_logger = logging.getLogger("onnxruntime.quantization")
    started = time.perf_counter()
    previous_level = quant_logger.level
    quant_logger.setLevel(logging.ERROR)
    # The histogram calibrators print() their progress; stdout belongs to the CLI's output
    # (progress bars go to stderr), so those lines are dropped.
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantization.quantize_static(
                str(prepared),
                str(output),
                reader,
                quant_format=quantization.QuantFormat.QDQ,
                per_channel=options.per_channel,
                reduce_range=options.reduce_range,
                activation_type=getattr(quantization.QuantType, options.activation_type),
                weight_type=getattr(quantization.QuantType, options.weight_type),
                calibrate_method=calibrate_method,
                extra_options=extra_options,
                nodes_to_exclude=list(nodes_to_exclude),
            )
    finally:
        quant_logger.setLevel(previous_level)
    return time.perf_counter() - started


def _check_node_names(onnx, graph_path: Path, names: tuple[str, ...]) -> None:
    if not names:
        return
    present = {node.name for node in onnx.load(str(graph_path), load_external_data=False).graph.node}
    missing = [name for name in names if name not in present]
    if missing:
        raise BadInputError(f"nodes to keep in float not in the graph: {', '.join(missing[:5])}")


def _publish(source: Path, output_path: Path) -> None:
    """Same filesystem as the destination, then rename: no half-written model is ever seen."""
    staged = output_path.with_name(f".{output_path.name}.{os.getpid()}.tmp")
    try:
        staged.write_bytes(source.read_bytes())
        os.replace(staged, output_path)
    finally:
        staged.unlink(missing_ok=True)


def quantize_onnx_int8(
    onnx_path: str | os.PathLike,
    output_path: str | os.PathLike,
    calibration_batches: np.ndarray,
    *,
    method: str = "minmax",
    symmetric: bool = False,
    per_channel: bool = True,
    activation_type: str | None = None,
    weight_type: str | None = None,
    reduce_range: bool = True,
    percentile: float = 99.999,
    batch_size: int = 8,
    preprocess: bool = True,
    progress: Progress | None = None,
    nodes_to_exclude: tuple[str, ...] = (),
) -> OrtInt8Result:
    """Quantize the fp32 ONNX model at `onnx_path` to a static QDQ INT8 model at `output_path`.

    `calibration_batches` is a preprocessed float32 NCHW array (typically 300 images).
    `symmetric=True` gives the TensorRT flavour (int8 everywhere, zero points 0, float bias).
    `nodes_to_exclude` (node names of the pre-processed graph, which the quantized graph keeps) stay float;
    a name the graph does not have is refused, so a typo cannot silently exclude nothing.
    """
    onnx = require("onnx", "export", "ONNX INT8 quantization")
    quantization = require("onnxruntime.quantization", "export", "ONNX INT8 quantization")
    onnx_path, output_path = Path(onnx_path), Path(output_path)
    if not onnx_path.is_file():
        raise BadInputError(f"ONNX model not found: {onnx_path}")
    options = _Options(method=method, symmetric=symmetric, per_channel=per_channel, activation_type=activation_type,
                       weight_type=weight_type, reduce_range=reduce_range, percentile=percentile)
    if batch_size < 1:
        raise BadInputError(f"calibration batch size must be at least 1, got {batch_size}")
    input_name, dims = _input_spec(onnx, onnx_path)
    images = check_samples(calibration_batches)
    batch_size = _calibration_batch_size(onnx_path, dims, images, batch_size)

    output_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgecnn-ortq-") as workdir:
        prepared, quantized = Path(workdir) / "prepared.onnx", Path(workdir) / "quantized.onnx"
        preprocess_s = _prepare(onnx_path, prepared, preprocess=preprocess)
        nodes_before = op_counts(prepared)
        _check_node_names(onnx, prepared, nodes_to_exclude)
        reader = _calibration_reader(
            quantization.CalibrationDataReader, input_name, images, batch_size, progress
        )
        quantize_s = _quantize_static_quietly(
            quantization, prepared, quantized, reader=reader, options=options, batch_size=batch_size,
            nodes_to_exclude=tuple(nodes_to_exclude),
        )
        nodes_after = op_counts(quantized)
        _publish(quantized, output_path)

    return OrtInt8Result(
        path=output_path,
        source=onnx_path,
        calibration_size=int(images.shape[0]),
        nodes_before=nodes_before,
        nodes_after=nodes_after,
        preprocess_s=preprocess_s,
        quantize_s=quantize_s,
        bytes=output_path.stat().st_size,
        **options.result_fields(),
    )
