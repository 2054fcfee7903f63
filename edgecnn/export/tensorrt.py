"""TensorRT target: what the host prepares, and what the device runs to build the engine.

TensorRT cannot be installed on a host without NVIDIA's index, and an engine only runs on the
TensorRT version and GPU that built it, so the work is split:

on the host (here, no TensorRT needed)
    `quantize_for_tensorrt`   Q/DQ INT8 ONNX for TensorRT's explicit quantization (symmetric int8,
                              zero points 0, per-channel weights, Q/DQ placed for TensorRT fusion)
    `check_tensorrt_qdq`      the TensorRT Q/DQ rules, as a list of problems
    `convert_onnx_fp16`       an fp16 graph with float32 I/O: TensorRT 11 takes fp16 from the graph
    `plan_engines`            which engine to build from which ONNX, at which precision
    `write_build_script`      `build_engine.sh`: finds trtexec, detects TensorRT 8.x/10.x/11.x and
                              builds each engine with that version's flags
    `write_device_readme`     the bundle's README: what to run on the device
    `prepare_tensorrt_bundle` all of the above for one bundle (what `export --target jetson` calls)

on the device (TensorRT 8.2 .. 11.x)
    `build_engine`            the TensorRT Python API: optimization profile for the profile's batch
                              range, workspace limit, timing cache, DLA with GPU fallback
    `register_engines`        add built engines (sha256 + provenance) to the bundle manifest

Precision by TensorRT version: 8.x/10.x build fp16 with the FP16 builder flag and a Q/DQ graph
with the INT8 flag; 11.x removed both flags (every network is strongly typed), so fp16 comes from
the fp16 graph and int8 from the Q/DQ graph alone.

Only numpy and edgecnn's core are imported here: `edgecnn build` runs this module on a Jetson.
onnx, onnxruntime, tensorrt and modelopt are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from edgecnn.atomic import write_bytes_atomic, write_text_atomic
from edgecnn.errors import BadInputError, CheckFailedError, require
from edgecnn.backends.tensorrt.runner import (
    REBUILD_HINT,
    machine_provenance,
    provenance_mismatches,
    provenance_path,
    read_provenance,
)

if TYPE_CHECKING:  # pragma: no cover
    from edgecnn.bundle import ArtifactEntry
    from edgecnn.compare import Progress
    from edgecnn.profiles import DeviceProfile

__all__ = [
    "BUILD_SCRIPT_NAME",
    "EngineBuildResult",
    "EnginePlan",
    "TensorRTBundleParts",
    "TensorRTQuantResult",
    "build_engine",
    "check_tensorrt_qdq",
    "convert_onnx_fp16",
    "engine_provenance",
    "parse_trt_version",
    "plan_engines",
    "prepare_tensorrt_bundle",
    "quantize_for_tensorrt",
    "register_engines",
    "write_build_script",
    "write_device_readme",
]

BUILD_SCRIPT_NAME = "build_engine.sh"
README_NAME = "README.md"
ENGINE_DIR = "tensorrt"
TIMING_CACHE = f"{ENGINE_DIR}/timing.cache"
QDQ_SUFFIX = ".int8.qdq.onnx"
FP16_SUFFIX = ".fp16.onnx"
DEFAULT_WORKSPACE_MB = 1024
DEFAULT_BATCH = {"min": 1, "opt": 1, "max": 8}
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")

# Ops TensorRT fuses into the weighted layer in front of them (conv/gemm + bias + activation).
_ACTIVATIONS = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Elu", "Selu",
                "Softplus", "Tanh", "PRelu", "ThresholdedRelu"}
# Producers whose quantized output TensorRT does not want: it quantizes after the fused activation
# (and after the residual add), not between the weighted layer and what it fuses with.
_FUSING_PRODUCERS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Add"}
# Weighted ops and the axis of their output channels in the weight tensor.
_WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1}
_FLOAT, _FLOAT16 = 1, 10  # onnx.TensorProto data types


# --- versions -------------------------------------------------------------------------------------


def parse_trt_version(text: str) -> tuple[int, int, int]:
    """(major, minor, patch) from '10.3.0.30', '8.6.1', '10.3.0.30-1+cuda12.5' or a trtexec 'v100300'/'v8502'."""
    text = str(text).strip()
    banner = re.fullmatch(r"v?(\d{4,6})", text)
    if banner:
        digits = banner.group(1)
        if len(digits) == 4:  # 8.x banners: v8502 = 8.5.2
            return int(digits[0]), int(digits[1]), int(digits[2:])
        return int(digits[:-4]), int(digits[-4:-2]), int(digits[-2:])  # v100300 = 10.3.0
    parts = re.findall(r"\d+", text.split("-")[0])
    if not parts:
        raise BadInputError(f"cannot read a TensorRT version from {text!r}")
    numbers = [int(p) for p in parts[:3]] + [0] * (3 - len(parts[:3]))
    return numbers[0], numbers[1], numbers[2]


def engine_provenance() -> dict[str, Any]:
    """This machine's TensorRT version, GPU name, compute capability and JetPack/L4T (when found)."""
    return machine_provenance()


# --- INT8 by explicit quantization ------------------------------------------------------------------


@dataclass(frozen=True)
class TensorRTQuantResult:
    """What `quantize_for_tensorrt` wrote, and the Q/DQ rule check of it (empty: all rules hold)."""

    path: Path
    source: Path
    backend: str  # onnxruntime | modelopt
    calibration_method: str
    calibration_size: int
    qdq_pairs_removed: int  # Q/DQ pairs taken out so TensorRT can fuse (0 for modelopt)
    quantize_linear: int
    dequantize_linear: int
    quantize_s: float
    bytes: int
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"], data["source"] = str(self.path), str(self.source)
        return data


def quantize_for_tensorrt(
    onnx_path: str | os.PathLike,
    out_path: str | os.PathLike,
    calibration_batches: np.ndarray,
    *,
    method: str = "minmax",
    backend: str = "auto",
    percentile: float = 99.999,
    progress: "Progress | None" = None,
) -> TensorRTQuantResult:
    """Write a Q/DQ INT8 ONNX model for TensorRT's explicit quantization at `out_path`.

    Symmetric int8 activations and weights (zero point 0), per-channel weights on the output-channel
    axis, per-tensor activations, float biases. Q/DQ sit on the inputs of weighted layers and on the
    identity branch of residual adds, never between a conv/gemm and its activation or on the logits,
    so TensorRT fuses conv+bias+activation(+add) into one int8 kernel. `backend="auto"` uses NVIDIA
    ModelOpt when it is installed and the method is one it has, else ONNX Runtime's quantizer.
    Raises CheckFailedError when the result breaks a TensorRT rule.
    """
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    method = method.lower()
    if method not in CALIBRATION_METHODS:
        raise BadInputError(f"unknown calibration method {method!r}: choose one of {', '.join(CALIBRATION_METHODS)}")
    if backend not in ("auto", "onnxruntime", "modelopt"):
        raise BadInputError(f"unknown quantization backend {backend!r}: choose auto, onnxruntime or modelopt")
    if not onnx_path.is_file():
        raise BadInputError(f"ONNX model not found: {onnx_path}")
    modelopt_methods = {"minmax": "max", "entropy": "entropy"}
    if backend == "modelopt" or (backend == "auto" and method in modelopt_methods and _modelopt_available()):
        if method not in modelopt_methods:
            raise BadInputError(f"ModelOpt has no {method!r} calibration: use minmax or entropy, or backend onnxruntime")
        return _quantize_modelopt(onnx_path, out_path, calibration_batches, modelopt_methods[method])

    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8

    onnx = require("onnx", "export", "TensorRT Q/DQ quantization")
    started = time.perf_counter()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgecnn-trtq-") as workdir:
        raw = Path(workdir) / "qdq.onnx"
        result = quantize_onnx_int8(onnx_path, raw, calibration_batches, method=method, symmetric=True,
                                    # 7-bit weights: TensorRT loses nothing measurable, and the host's
                                    # ONNX Runtime check of this same graph then does not saturate
                                    # on AVX2 CPUs (8-bit: MobileNet v2 on digits dropped 1.5 points).
                                    per_channel=True, reduce_range=True, percentile=percentile, progress=progress)
        model = onnx.load(str(raw))
        removed = _place_qdq_for_tensorrt(model)
        onnx.checker.check_model(model)
        _save_atomic(onnx, model, out_path)
    return _quant_result(onnx, out_path, onnx_path, "onnxruntime", method, result.calibration_size, removed,
                         time.perf_counter() - started)


def _modelopt_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("modelopt.onnx.quantization") is not None
    except (ImportError, ValueError):
        return False


def _quantize_modelopt(onnx_path: Path, out_path: Path, calibration_batches: np.ndarray,
                       modelopt_method: str) -> TensorRTQuantResult:
    """NVIDIA ModelOpt's ONNX PTQ: its Q/DQ placement follows TensorRT's own rules."""
    quantization = require("modelopt.onnx.quantization", "export", "TensorRT Q/DQ quantization with ModelOpt")
    onnx = require("onnx", "export", "TensorRT Q/DQ quantization")
    from edgecnn.compare import check_samples

    images = check_samples(calibration_batches)
    started = time.perf_counter()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgecnn-modelopt-") as workdir:
        raw = Path(workdir) / "qdq.onnx"
        quantization.quantize(onnx_path=str(onnx_path), quantize_mode="int8", calibration_data=images,
                              calibration_method=modelopt_method, calibration_eps=["cpu"],
                              output_path=str(raw), log_level="WARNING")
        model = onnx.load(str(raw))
        _save_atomic(onnx, model, out_path)
    return _quant_result(onnx, out_path, onnx_path, "modelopt", {"max": "minmax"}.get(modelopt_method, modelopt_method),
                         int(images.shape[0]), 0, time.perf_counter() - started)


def _quant_result(onnx, out_path: Path, source: Path, backend: str, method: str, size: int, removed: int,
                  seconds: float) -> TensorRTQuantResult:
    problems = check_tensorrt_qdq(out_path)
    if problems:
        raise CheckFailedError(
            f"the Q/DQ model for TensorRT breaks {len(problems)} rule(s): {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
        )
    ops = [n.op_type for n in onnx.load(str(out_path), load_external_data=False).graph.node]
    return TensorRTQuantResult(
        path=out_path, source=source, backend=backend, calibration_method=method, calibration_size=size,
        qdq_pairs_removed=removed, quantize_linear=ops.count("QuantizeLinear"),
        dequantize_linear=ops.count("DequantizeLinear"), quantize_s=seconds, bytes=out_path.stat().st_size,
    )


def _save_atomic(onnx, model, path: Path) -> None:
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        onnx.save(model, str(staged))
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)


def _place_qdq_for_tensorrt(model) -> int:
    """Take out the Q/DQ pairs that stop TensorRT's fusions; returns how many were removed.

    ONNX Runtime's symmetric QDQ quantizes every tensor between quantizable ops. For TensorRT a
    Q/DQ pair on the output of a conv/gemm/add whose consumers are activations or a residual add
    splits conv+bias+activation (and conv+add) into separate int8 layers with an extra rounding,
    and a pair on the logits only costs accuracy. Without them TensorRT quantizes after the fused
    activation, as its Q/DQ placement guide recommends.
    """
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    doomed: list[tuple[Any, Any]] = []
    for q in graph.node:
        if q.op_type != "QuantizeLinear":
            continue
        dqs = consumers.get(q.output[0], [])
        if not dqs or any(d.op_type != "DequantizeLinear" for d in dqs):
            continue
        tensor = q.input[0]
        producer = producers.get(tensor)
        outputs = {d.output[0] for d in dqs}
        users = [u for out in outputs for u in consumers.get(out, [])]
        on_logits = bool(outputs & graph_outputs)
        after_fusing = (
            producer is not None and producer.op_type in _FUSING_PRODUCERS and users
            and all(u.op_type in _ACTIVATIONS or u.op_type == "Add" for u in users)
        )
        if on_logits or after_fusing:
            doomed.append((q, dqs))
    renames: dict[str, str] = {}
    removed_nodes = set()
    for q, dqs in doomed:
        for dq in dqs:
            renames[dq.output[0]] = q.input[0]
            removed_nodes.add(id(dq))
        removed_nodes.add(id(q))
    if not doomed:
        return 0
    # A graph output keeps its name: the producer writes it directly.
    for old, new in list(renames.items()):
        if old in graph_outputs:
            producer = producers[new]
            for index, name in enumerate(producer.output):
                if name == new:
                    producer.output[index] = old
            for node in graph.node:
                for index, name in enumerate(node.input):
                    if name == new:
                        node.input[index] = old
            del renames[old]
    kept = [n for n in graph.node if id(n) not in removed_nodes]
    for node in kept:
        for index, name in enumerate(node.input):
            if name in renames:
                node.input[index] = renames[name]
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:
        graph.initializer.remove(init)
    stale = [vi for vi in graph.value_info if vi.name in renames]
    for vi in stale:
        graph.value_info.remove(vi)
    return len(doomed)


def check_tensorrt_qdq(onnx_path: str | os.PathLike) -> list[str]:
    """The ways a Q/DQ ONNX model breaks TensorRT's explicit-quantization rules (empty list: none).

    Checks: only standard ONNX-domain ops; every Q/DQ is int8 with zero point 0; activation scales
    are scalars (per-tensor); weight scales are per-channel on the output-channel axis with one
    positive scale per channel; every Conv/ConvTranspose/Gemm/MatMul takes its data and weight
    through DequantizeLinear; no Q/DQ between a weighted layer and the activation it fuses with;
    the logits leave the graph in float.
    """
    onnx = require("onnx", "export", "checking a Q/DQ model")
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path), load_external_data=False)
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    problems: list[str] = []

    def value(name: str):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in constants:
            for attr in constants[name].attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
        return None

    def label(node) -> str:
        return f"{node.op_type} {node.name or node.output[0]!r}"

    foreign = sorted({n.domain for n in graph.node if n.domain not in ("", "ai.onnx")})
    if foreign:
        problems.append(f"ops from domain(s) {', '.join(foreign)}: TensorRT parses standard ONNX ops only")
    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not any(n.op_type == "QuantizeLinear" for n in qdq):
        problems.append("no QuantizeLinear node: this is not a Q/DQ model")
    weight_dqs = set()
    for node in graph.node:
        if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            for index, role in ((0, "data"), (1, "weight")):
                source = producers.get(node.input[index]) if len(node.input) > index else None
                if source is None or source.op_type != "DequantizeLinear":
                    problems.append(f"{label(node)}: its {role} input is not fed by DequantizeLinear, "
                                    "so TensorRT runs it in float")
                elif index == 1:
                    weight_dqs.add(id(source))
                    axis = _WEIGHT_AXIS.get(node.op_type)
                    if node.op_type == "Gemm":
                        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
                        axis = 0 if trans_b else 1
                    elif node.op_type == "MatMul":
                        axis = 1
                    _check_weight_dq(source, axis, value, label, problems)
    for node in qdq:
        scale = value(node.input[1]) if len(node.input) > 1 else None
        zero = value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scale is None:
            problems.append(f"{label(node)}: scale is not a constant")
            continue
        if np.any(~np.isfinite(scale)) or np.any(scale <= 0):
            problems.append(f"{label(node)}: scales must be finite and positive")
        if zero is None:
            if node.op_type == "QuantizeLinear":
                # Without a zero point ONNX quantizes to uint8, which TensorRT does not take.
                problems.append(f"{label(node)}: no zero point, so it quantizes to uint8 (TensorRT needs int8)")
        else:
            if zero.dtype != np.int8:
                problems.append(f"{label(node)}: quantizes to {zero.dtype} (TensorRT needs int8)")
            if np.any(zero != 0):
                problems.append(f"{label(node)}: zero point is not 0 (TensorRT needs symmetric quantization)")
        if id(node) not in weight_dqs and np.asarray(scale).size != 1:
            problems.append(f"{label(node)}: activation scale has {np.asarray(scale).size} values "
                            "(TensorRT needs one per tensor)")
        if node.op_type == "QuantizeLinear":
            producer = producers.get(node.input[0])
            users = [u for d in consumers.get(node.output[0], []) for u in consumers.get(d.output[0], [])]
            if (producer is not None and producer.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")
                    and users and all(u.op_type in _ACTIVATIONS for u in users)):
                problems.append(f"{label(node)}: Q/DQ between {label(producer)} and its activation stops "
                                "TensorRT fusing them")
    outputs = {o.name for o in graph.output}
    for name in outputs:
        producer = producers.get(name)
        if producer is not None and producer.op_type == "DequantizeLinear":
            problems.append(f"graph output {name!r} comes out of DequantizeLinear: the logits lose precision "
                            "for no speed")
    return problems


def _check_weight_dq(dq, axis: int | None, value, label, problems: list[str]) -> None:
    weight = value(dq.input[0])
    scale = value(dq.input[1]) if len(dq.input) > 1 else None
    if weight is None or scale is None:
        problems.append(f"{label(dq)}: weight or scale is not a constant")
        return
    if weight.dtype != np.int8:
        problems.append(f"{label(dq)}: weights stored as {weight.dtype}, expected int8")
    dq_axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    channels = weight.shape[axis] if axis is not None and weight.ndim > axis else None
    if np.asarray(scale).size == 1 and channels not in (None, 1):
        problems.append(f"{label(dq)}: weight scale is per-tensor; TensorRT wants one per output channel")
    elif np.asarray(scale).size != 1:
        if axis is not None and dq_axis % max(weight.ndim, 1) != axis:
            problems.append(f"{label(dq)}: weight scales on axis {dq_axis}, expected the output-channel axis {axis}")
        if channels is not None and np.asarray(scale).size != channels:
            problems.append(f"{label(dq)}: {np.asarray(scale).size} weight scales for {channels} output channels")


# --- fp16 graph for TensorRT 11 -----------------------------------------------------------------------


def convert_onnx_fp16(onnx_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """An fp16 copy of a float32 ONNX model whose input and output stay float32.

    TensorRT 11 builds every network strongly typed: precision comes from the graph, not from a
    builder flag. Weights and constants become fp16, a Cast follows the input and precedes the
    output, so runners and the golden set keep feeding float32. Resize's roi/scales stay float32
    (the ONNX spec types them so).
    """
    onnx = require("onnx", "export", "fp16 ONNX conversion")
    from onnx import helper, numpy_helper

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    model = onnx.load(str(onnx_path))
    graph = model.graph
    keep_float = {node.input[i] for node in graph.node if node.op_type == "Resize"
                  for i in (1, 2) if len(node.input) > i and node.input[i]}
    for init in graph.initializer:
        if init.data_type == _FLOAT and init.name not in keep_float:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] not in keep_float:
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == _FLOAT:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16)))
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == _FLOAT:
                    attr.i = _FLOAT16
        if node.op_type in ("ConstantOfShape",):
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == _FLOAT:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16)))
    casts_in, casts_out = [], []
    for graph_input in graph.input:
        if graph_input.type.tensor_type.elem_type != _FLOAT:
            continue
        half = f"{graph_input.name}__fp16"
        for node in graph.node:
            for index, name in enumerate(node.input):
                if name == graph_input.name:
                    node.input[index] = half
        casts_in.append(helper.make_node("Cast", [graph_input.name], [half], to=_FLOAT16,
                                         name=f"{graph_input.name}_to_fp16"))
    for graph_output in graph.output:
        if graph_output.type.tensor_type.elem_type != _FLOAT:
            continue
        half = f"{graph_output.name}__fp16"
        for node in graph.node:
            for index, name in enumerate(node.output):
                if name == graph_output.name:
                    node.output[index] = half
            for index, name in enumerate(node.input):
                if name == graph_output.name:
                    node.input[index] = half
        casts_out.append(helper.make_node("Cast", [half], [graph_output.name], to=_FLOAT,
                                          name=f"{graph_output.name}_to_fp32"))
    nodes = casts_in + list(graph.node) + casts_out
    del graph.node[:]
    graph.node.extend(nodes)
    # Intermediate types changed; let consumers re-infer them rather than trust stale float32 entries.
    del graph.value_info[:]
    onnx.checker.check_model(model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _save_atomic(onnx, model, out_path)
    return out_path


# --- engine plans, build script, README -------------------------------------------------------------


@dataclass(frozen=True)
class EnginePlan:
    """One engine to build on the device: from which ONNX, at which precision, to which file."""

    precision: str  # fp32 | fp16 | int8
    source: str  # ONNX relative to the bundle root (the Q/DQ model for int8)
    engine: str  # engine file relative to the bundle root
    source_fp16: str | None = None  # fp16 graph for TensorRT 11 (fp16 plans only)
    input_name: str = "input"
    input_shape: tuple[int, int, int] = (3, 224, 224)  # C, H, W

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        return data

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "EnginePlan":
        try:
            return cls(precision=str(payload["precision"]), source=str(payload["source"]),
                       engine=str(payload["engine"]), source_fp16=payload.get("source_fp16") or None,
                       input_name=str(payload.get("input_name") or "input"),
                       input_shape=tuple(int(v) for v in payload["input_shape"]))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInputError(f"manifest: malformed TensorRT engine plan {payload!r} ({exc})") from None


def _trt_settings(profile: "DeviceProfile") -> dict[str, Any]:
    settings = dict(profile.tensorrt or {})
    batch = {**DEFAULT_BATCH, **dict(settings.get("batch") or {})}
    batch["max"] = min(int(batch["max"]), int(profile.max_batch))
    batch["min"] = max(1, min(int(batch["min"]), batch["max"]))
    batch["opt"] = min(max(int(batch["opt"]), batch["min"]), batch["max"])
    return {
        "batch": batch,
        "workspace_mb": int(settings.get("workspace_mb") or DEFAULT_WORKSPACE_MB),
        "dla": bool(settings.get("dla", False)),
        "dla_cores": int(settings.get("dla_cores") or (1 if settings.get("dla") else 0)),
    }


def plan_engines(artifacts: Iterable["ArtifactEntry | dict"], profile: "DeviceProfile", *,
                 precisions: Sequence[str] | None = None, input_shape: Sequence[int] | None = None,
                 stem: str = "model") -> list[EnginePlan]:
    """The engines to build from a bundle's ONNX artifacts, one per precision.

    fp32 and fp16 engines come from the fp32 ONNX (fp16 also records the fp16 graph TensorRT 11
    needs, when the bundle has one); int8 comes from the Q/DQ model (artifact precision int8).
    `precisions` defaults to the profile's default precision, plus fp16 next to int8 as the
    reference the int8 engine is compared with on the device.
    """
    entries = [_as_dict(a) for a in artifacts]
    onnx_of = {}
    for entry in entries:
        if entry.get("format") == "onnx":
            onnx_of.setdefault(str(entry.get("precision")), entry)
    if precisions is None:
        precisions = [profile.default_precision]
        if profile.default_precision == "int8" and "fp16" in profile.precisions:
            precisions.append("fp16")
    plans = []
    for precision in dict.fromkeys(precisions):
        profile.check_precision(precision)
        source = onnx_of.get("int8" if precision == "int8" else "fp32")
        if source is None:
            what = "the Q/DQ int8 ONNX" if precision == "int8" else "the fp32 ONNX"
            raise BadInputError(f"the bundle has no {what} to build a {precision} TensorRT engine from: "
                                "re-export it with edgecnn export ... --target " + profile.name)
        fp16 = onnx_of.get("fp16") if precision == "fp16" else None
        shape = input_shape or (source.get("input") or {}).get("shape")
        if not shape:
            raise BadInputError(f"{source['path']}: the manifest records no input shape")
        shape = [int(v) for v in shape][-3:]
        plans.append(EnginePlan(precision=precision, source=str(source["path"]),
                                engine=f"{ENGINE_DIR}/{stem}.{precision}.engine",
                                source_fp16=str(fp16["path"]) if fp16 else None,
                                input_name=str((source.get("input") or {}).get("name") or "input"),
                                input_shape=(shape[0], shape[1], shape[2])))
    return plans


def _as_dict(artifact: Any) -> dict[str, Any]:
    return artifact.to_dict() if hasattr(artifact, "to_dict") else dict(artifact)


def _as_plans(artifacts: Sequence[Any], profile: "DeviceProfile") -> list[EnginePlan]:
    if artifacts and all(isinstance(a, EnginePlan) for a in artifacts):
        return list(artifacts)
    return plan_engines(artifacts, profile)


def write_build_script(bundle_root: str | os.PathLike, artifacts: Sequence["EnginePlan | ArtifactEntry | dict"],
                       profile: "DeviceProfile") -> Path:
    """Write `build_engine.sh` into the bundle: builds every planned engine on the device with trtexec.

    The script finds trtexec (`$TRTEXEC`, /usr/src/tensorrt/bin/trtexec, PATH), reads the TensorRT
    version (`$EDGECNN_TRT_VERSION`, dpkg, python3 -c 'import tensorrt', the trtexec banner) and
    picks the flags of that version: 8.x/10.x --fp16/--int8, 11.x the strongly typed graph;
    --workspace (8.0-8.3) or --memPoolSize; --skipInference (8.6+) or --buildOnly. `DRY_RUN=1`
    prints the trtexec commands instead of running them. `artifacts` are EnginePlans, or the
    bundle's artifact entries to plan from.
    """
    root = Path(bundle_root)
    plans = _as_plans(list(artifacts), profile)
    if not plans:
        raise BadInputError("no TensorRT engine to build: the plan is empty")
    settings = _trt_settings(profile)
    from edgecnn import __version__

    lines = []
    for plan in plans:
        c, h, w = plan.input_shape
        lines.append("build_one " + " ".join(shlex.quote(str(v)) for v in (
            plan.precision, plan.source, plan.source_fp16 or "", plan.engine, plan.input_name, f"{c}x{h}x{w}")))
    text = (_SCRIPT_TEMPLATE
            .replace("@VERSION@", __version__)
            .replace("@TARGET@", profile.name)
            .replace("@WORKSPACE_MB@", str(settings["workspace_mb"]))
            .replace("@BATCH_MIN@", str(settings["batch"]["min"]))
            .replace("@BATCH_OPT@", str(settings["batch"]["opt"]))
            .replace("@BATCH_MAX@", str(settings["batch"]["max"]))
            .replace("@DLA_CORES@", str(settings["dla_cores"] if settings["dla"] else 0))
            .replace("@TIMING_CACHE@", TIMING_CACHE)
            .replace("@BUILDS@", "\n".join(lines)))
    path = root / BUILD_SCRIPT_NAME
    write_text_atomic(path, text)
    os.chmod(path, 0o755)
    return path


def write_device_readme(bundle_root: str | os.PathLike, *, model_name: str, profile: "DeviceProfile",
                        plans: Sequence[EnginePlan] = (), bundle_name: str | None = None) -> Path:
    """Write the bundle's README.md: what to copy, what to run on the device, in order."""
    root = Path(bundle_root)
    name = bundle_name or _final_name(root)
    trt = profile.tensorrt or {}
    versions = ", ".join(f"JetPack {v}" for v in trt.get("jetpack", [])) or "a CUDA machine"
    engines = "\n".join(f"- `{p.engine}`: {p.precision}, from `{p.source}`" for p in plans) or "- (none planned)"
    dla = ("\nThis board has DLA: add `--dla-core 0` to either build command to run the layers DLA supports "
           "there (fp16/int8 only; the rest falls back to the GPU).\n" if trt.get("dla") else "")
    text = f"""# {model_name} for {profile.name} (TensorRT)

This bundle holds the ONNX models, not the engine: a TensorRT engine only runs on the TensorRT
version and GPU that built it, so it is built on the device. Written for {versions}
(TensorRT {", ".join(trt.get("tensorrt", [])) or "8.6, 10.x or 11.x"}).

## On the device

1. Copy this folder to the device: `scp -r {name} user@device:~/` and `cd {name}`
2. Build the engine(s), either with edgecnn (`pip install 'edgecnn[tensorrt]'`; JetPack already
   has TensorRT itself):

       edgecnn build .

   or with NVIDIA's trtexec, nothing to install (it runs `edgecnn build .` at the end when edgecnn
   is there, which adds the engines to manifest.json with their sha256 and provenance):

       bash {BUILD_SCRIPT_NAME}

   `DRY_RUN=1 bash {BUILD_SCRIPT_NAME}` prints the trtexec commands without running them.
3. Measure and check them:

       edgecnn bench .
       edgecnn verify .
{dla}
Engines to build:

{engines}

Set the power mode before measuring (`sudo nvpmodel -m 0 && sudo jetson_clocks` on a Jetson).
An engine copied to another device, or kept across a JetPack/TensorRT upgrade, is refused with
"{REBUILD_HINT}".
"""
    path = root / README_NAME
    write_text_atomic(path, text)
    return path


def _final_name(root: Path) -> str:
    """The bundle's name: BundleWriter builds in a hidden '.NAME.XXXXXX' folder renamed on commit."""
    match = re.fullmatch(r"\.(.+)\.[A-Za-z0-9_]{8}", root.name)
    return match.group(1) if match else root.name


@dataclass
class TensorRTBundleParts:
    """What `prepare_tensorrt_bundle` added to a bundle being written."""

    artifacts: list  # ArtifactEntry for the fp16 graph and the Q/DQ model (the fp32 ONNX is the caller's)
    plans: list[EnginePlan]
    manifest_section: dict  # goes under manifest["tensorrt"]
    files: list[Path]  # build_engine.sh, README.md
    quantization: TensorRTQuantResult | None = None
    messages: list[str] = field(default_factory=list)  # what to tell the user


def prepare_tensorrt_bundle(bundle_root: str | os.PathLike, fp32_onnx: str | os.PathLike,
                            profile: "DeviceProfile", *, input_spec: dict, model_name: str,
                            precision: str | None = None, calibration_batches: np.ndarray | None = None,
                            method: str = "minmax", bundle_name: str | None = None,
                            progress: "Progress | None" = None) -> TensorRTBundleParts:
    """Add the TensorRT parts to a bundle under construction (host side, no TensorRT needed).

    `fp32_onnx` is the exported fp32 model already inside `bundle_root`; `input_spec` is the
    manifest's artifact input dict ({shape [C,H,W], layout, dtype, batch}). Writes the fp16 graph
    (for TensorRT 11) when an fp16 engine is planned, the Q/DQ model when int8 is, plus
    build_engine.sh and README.md. The caller adds `artifacts` to the manifest and puts
    `manifest_section` under manifest["tensorrt"]. `bundle_name` is the folder name the user
    will see (default: the final name of a BundleWriter folder).
    """
    from edgecnn.bundle import artifact_entry

    root = Path(bundle_root)
    fp32_onnx = Path(fp32_onnx)
    precision = profile.check_precision(precision or profile.default_precision)
    precisions = [precision] + (["fp16"] if precision == "int8" and "fp16" in profile.precisions else [])
    stem = fp32_onnx.name.removesuffix(".onnx").removesuffix(".fp32")
    entries: list[dict] = [{"path": fp32_onnx.relative_to(root).as_posix(), "format": "onnx",
                            "precision": "fp32", "input": input_spec}]
    artifacts, quant = [], None
    if "fp16" in precisions:
        fp16_path = convert_onnx_fp16(fp32_onnx, fp32_onnx.with_name(stem + FP16_SUFFIX))
        entry = artifact_entry(root, [fp16_path], format="onnx", runtime="onnxruntime", precision="fp16",
                               input=input_spec, purpose="TensorRT 11 fp16 engine source (strongly typed)")
        artifacts.append(entry)
        entries.append(entry.to_dict())
    if "int8" in precisions:
        if calibration_batches is None:
            raise BadInputError("an int8 TensorRT bundle needs calibration images: pass --calib-data SPEC")
        quant = quantize_for_tensorrt(fp32_onnx, fp32_onnx.with_name(stem + QDQ_SUFFIX), calibration_batches,
                                      method=method, progress=progress)
        entry = artifact_entry(root, [quant.path], format="onnx", runtime="onnxruntime", precision="int8",
                               input=input_spec, quantization={**quant.to_dict(), "path": quant.path.name,
                                                               "source": quant.source.name,
                                                               "scheme": "tensorrt-qdq-symmetric"})
        artifacts.append(entry)
        entries.append(entry.to_dict())
    plans = plan_engines(entries, profile, precisions=precisions, stem=stem)
    script = write_build_script(root, plans, profile)
    name = bundle_name or _final_name(root)
    readme = write_device_readme(root, model_name=model_name, profile=profile, plans=plans, bundle_name=name)
    settings = _trt_settings(profile)
    section = {"engines": [p.to_dict() for p in plans], "build_script": BUILD_SCRIPT_NAME,
               "timing_cache": TIMING_CACHE, **settings,
               "written_for": {k: profile.tensorrt[k] for k in ("jetpack", "tensorrt", "l4t") if k in profile.tensorrt}}
    messages = [
        f"the TensorRT engine is built on the device: copy {name}/ there and run "
        f"`bash {BUILD_SCRIPT_NAME}` (trtexec) or `edgecnn build .`, then `edgecnn bench .` and `edgecnn verify .`"
    ]
    return TensorRTBundleParts(artifacts=artifacts, plans=plans, manifest_section=section,
                               files=[script, readme], quantization=quant, messages=messages)


# --- on the device: build and register engines -------------------------------------------------------


@dataclass(frozen=True)
class EngineBuildResult:
    """An engine built (or adopted) on this device."""

    path: Path
    precision: str
    source: Path
    provenance: dict
    build_s: float
    adopted: bool = False  # built earlier (e.g. by build_engine.sh) and still valid here

    @property
    def sidecar(self) -> Path:
        return provenance_path(self.path)


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, profile: "DeviceProfile",
                 precision: str, *, timing_cache: str | os.PathLike | None = None, dla_core: int | None = None,
                 onnx_fp16_path: str | os.PathLike | None = None, workspace_mb: int | None = None,
                 batch: dict | None = None, verbose: bool = False) -> EngineBuildResult:
    """Build a serialized TensorRT engine from ONNX with TensorRT's Python API (8.2 .. 11.x).

    One optimization profile over the profile's batch range (min/opt/max) when the ONNX batch is
    dynamic, the workspace limit, the timing cache read from and written back to `timing_cache`,
    DLA core `dla_core` with GPU fallback. fp16/int8 set the builder flags on 8.x/10.x; on 11.x
    (strongly typed) fp16 builds `onnx_fp16_path` and int8 the Q/DQ graph as it is. Writes the
    engine and its provenance sidecar atomically.
    """
    trt = require("tensorrt", "tensorrt", "building TensorRT engines")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    precision = profile.check_precision(precision)
    version = parse_trt_version(trt.__version__)
    major = version[0]
    if version < (8, 2, 0):
        raise BadInputError(f"TensorRT {trt.__version__} is too old: edgecnn builds with TensorRT 8.2 or newer")
    strongly_typed = major >= 11
    source = onnx_path
    if strongly_typed and precision == "fp16":
        if onnx_fp16_path is None or not Path(onnx_fp16_path).is_file():
            raise BadInputError(
                f"TensorRT {trt.__version__} takes fp16 from the graph (no FP16 builder flag since 11.0) and the "
                "bundle has no fp16 ONNX: re-export the bundle with this edgecnn, or build fp32/int8"
            )
        source = Path(onnx_fp16_path)
    if not source.is_file():
        raise BadInputError(f"ONNX model not found: {source}")
    settings = _trt_settings(profile)
    batch_range = {**settings["batch"], **(batch or {})}
    workspace = int(workspace_mb or settings["workspace_mb"])

    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if major < 10:  # implicit batch is gone in 10; on 8.x explicit batch must be asked for
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise CheckFailedError(f"TensorRT {trt.__version__} cannot parse {source.name}: "
                               + ("; ".join(errors[:3]) or "unknown parser error"))
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace << 20)
    else:  # TensorRT 8.2/8.3
        config.max_workspace_size = workspace << 20
    if not strongly_typed:
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif precision == "int8":
            # Explicit quantization: the Q/DQ graph carries the scales, no calibrator is set.
            config.set_flag(trt.BuilderFlag.INT8)

    if network.num_inputs != 1:
        raise BadInputError(f"{source.name} has {network.num_inputs} inputs; edgecnn engines take one image input")
    tensor = network.get_input(0)
    shape = list(tensor.shape)
    if shape and shape[0] == -1:
        chw = shape[1:]
        if any(d < 0 for d in chw):
            raise BadInputError(f"{source.name} has a dynamic image size {shape}: export it with a fixed size")
        optimization = builder.create_optimization_profile()
        optimization.set_shape(tensor.name, (batch_range["min"], *chw), (batch_range["opt"], *chw),
                               (batch_range["max"], *chw))
        config.add_optimization_profile(optimization)

    cache_path = Path(timing_cache) if timing_cache else None
    if cache_path is not None and hasattr(config, "create_timing_cache"):
        data = cache_path.read_bytes() if cache_path.is_file() else b""
        cache = config.create_timing_cache(data)
        config.set_timing_cache(cache, ignore_mismatch=False)

    if dla_core is not None:
        available = int(getattr(builder, "num_DLA_cores", 0))
        if not settings["dla"] or available == 0:
            raise BadInputError(f"target {profile.name} has no DLA here (this device reports {available} DLA cores)")
        if not 0 <= dla_core < available:
            raise BadInputError(f"--dla-core {dla_core}: this device has DLA cores 0..{available - 1}")
        if precision == "fp32":
            raise BadInputError("DLA runs fp16 or int8 only: build with --precision fp16 or int8 for DLA")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    build_s = time.perf_counter() - started
    if serialized is None:
        raise CheckFailedError(f"TensorRT {trt.__version__} failed to build {engine_path.name} "
                               "(rerun with EDGECNN_DEBUG=1 for TensorRT's log)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(engine_path, bytes(serialized))
    if cache_path is not None and hasattr(config, "get_timing_cache"):
        cache = config.get_timing_cache()
        if cache is not None:
            write_bytes_atomic(cache_path, bytes(cache.serialize()))

    from edgecnn.bundle import file_sha256

    provenance = {
        **machine_provenance(trt),
        "precision": precision,
        "dla_core": dla_core,
        "source": source.name,
        "source_sha256": file_sha256(source),
        "workspace_mb": workspace,
        "batch": {k: int(batch_range[k]) for k in ("min", "opt", "max")},
        "strongly_typed": strongly_typed,
        "built_with": "edgecnn (TensorRT Python API)",
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_s": round(build_s, 3),
    }
    write_text_atomic(provenance_path(engine_path), json.dumps(provenance, indent=2) + "\n")
    return EngineBuildResult(path=engine_path, precision=precision, source=source, provenance=provenance,
                             build_s=build_s)


def adoptable_engine(engine_path: str | os.PathLike, source_paths: Sequence[str | os.PathLike],
                     current: dict[str, Any] | None = None) -> dict | None:
    """The provenance of an existing engine that is valid on this machine and built from one of
    `source_paths` as they are now (e.g. by build_engine.sh), else None."""
    from edgecnn.bundle import file_sha256

    engine_path = Path(engine_path)
    if not engine_path.is_file():
        return None
    recorded = read_provenance(engine_path)
    if recorded is None:
        return None
    if provenance_mismatches(recorded, current if current is not None else machine_provenance()):
        return None
    hashes = {file_sha256(p) for p in source_paths if p and Path(p).is_file()}
    return recorded if recorded.get("source_sha256") in hashes else None


def register_engines(bundle_root: str | os.PathLike, results: Sequence[EngineBuildResult],
                     input_spec: dict | None = None) -> Path:
    """Add (or replace) the engines' entries in the bundle's manifest.json, atomically.

    Each entry lists the engine and its provenance sidecar with their sha256, so bench/verify
    refuse an engine that changed after it was registered.
    """
    from edgecnn.bundle import MANIFEST_NAME, artifact_entry, load_bundle

    root = Path(bundle_root).resolve()
    bundle = load_bundle(root)
    manifest = dict(bundle.manifest)
    spec = dict(input_spec or (manifest.get("input") or {}))
    entries = [e.to_dict() for e in bundle.artifacts]
    for result in results:
        engine = Path(result.path).resolve()
        new = artifact_entry(root, [engine, provenance_path(engine)], format="tensorrt", runtime="tensorrt",
                             precision=result.precision, input=spec,
                             batch_range=result.provenance.get("batch"), provenance=result.provenance,
                             source=Path(result.source).resolve().relative_to(root).as_posix()
                             if Path(result.source).resolve().is_relative_to(root) else str(result.source))
        entries = [e for e in entries if e.get("path") != new.path] + [new.to_dict()]
    manifest["artifacts"] = entries
    path = root / MANIFEST_NAME
    write_text_atomic(path, json.dumps(manifest, indent=2) + "\n")
    return path


_SCRIPT_TEMPLATE = r'''#!/usr/bin/env bash
# Build the TensorRT engines of this bundle on the device that will run them.
# Written by edgecnn @VERSION@ for target @TARGET@.
#
#   bash build_engine.sh [--precision fp32|fp16|int8] [--dla-core N] [--force]
#
# Environment: TRTEXEC (path to trtexec), EDGECNN_TRT_VERSION (skip detection, e.g. 10.3.0),
# EDGECNN_WORKSPACE_MB, DRY_RUN=1 (print the trtexec commands, run nothing).
# Engines only run on the TensorRT version and GPU that built them: build them here.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
DRY_RUN="${DRY_RUN:-0}"
WORKSPACE_MB="${EDGECNN_WORKSPACE_MB:-@WORKSPACE_MB@}"
BATCH_MIN=@BATCH_MIN@
BATCH_OPT=@BATCH_OPT@
BATCH_MAX=@BATCH_MAX@
DLA_CORES=@DLA_CORES@
TIMING_CACHE="@TIMING_CACHE@"
ONLY_PRECISION=""
DLA_CORE=""
FORCE=0

die() { echo "build_engine.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --precision) ONLY_PRECISION="${2:-}"; shift 2 ;;
    --precision=*) ONLY_PRECISION="${1#*=}"; shift ;;
    --dla-core) DLA_CORE="${2:-}"; shift 2 ;;
    --dla-core=*) DLA_CORE="${1#*=}"; shift ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
case "$ONLY_PRECISION" in ""|fp32|fp16|int8) ;; *) die "--precision must be fp32, fp16 or int8" ;; esac
if [ -n "$DLA_CORE" ]; then
  case "$DLA_CORE" in *[!0-9]*) die "--dla-core takes a core number" ;; esac
  [ "$DLA_CORES" -gt 0 ] || die "target @TARGET@ has no DLA"
  [ "$DLA_CORE" -lt "$DLA_CORES" ] || die "target @TARGET@ has DLA cores 0..$((DLA_CORES - 1))"
fi

find_trtexec() {
  if [ -n "${TRTEXEC:-}" ]; then echo "$TRTEXEC"; return 0; fi
  if [ -x /usr/src/tensorrt/bin/trtexec ]; then echo /usr/src/tensorrt/bin/trtexec; return 0; fi
  command -v trtexec 2>/dev/null && return 0
  return 1
}

# "10.3.0.30-1+cuda12.5" -> 10.3.0 ; trtexec banner "[TensorRT v100300]" -> 10.3.0, "v8502" -> 8.5.2
detect_version() {
  local v=""
  if [ -n "${EDGECNN_TRT_VERSION:-}" ]; then echo "$EDGECNN_TRT_VERSION"; return 0; fi
  if command -v dpkg-query >/dev/null 2>&1; then
    for pkg in tensorrt libnvinfer-bin libnvinfer10 libnvinfer8; do
      v="$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)"
      [ -n "$v" ] && { echo "${v%%-*}"; return 0; }
    done
  fi
  v="$(python3 -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null || true)"
  [ -n "$v" ] && { echo "$v"; return 0; }
  if [ -n "$TRTEXEC_BIN" ]; then
    v="$("$TRTEXEC_BIN" --help 2>&1 | sed -n 's/.*TensorRT v\([0-9]*\).*/\1/p' | head -n 1)"
    if [ -n "$v" ]; then
      if [ "${#v}" -le 4 ]; then echo "${v:0:1}.${v:1:1}.$((10#${v:2}))"; else
        echo "$((10#${v:0:${#v}-4})).$((10#${v:${#v}-4:2})).$((10#${v:${#v}-2:2}))"; fi
      return 0
    fi
  fi
  return 1
}

TRTEXEC_BIN="$(find_trtexec || true)"
if [ -z "$TRTEXEC_BIN" ]; then
  [ "$DRY_RUN" = "1" ] || die "trtexec not found (JetPack has it in /usr/src/tensorrt/bin; set TRTEXEC=/path/to/trtexec)"
  TRTEXEC_BIN=trtexec
fi
TRT_VERSION="$(detect_version || true)"
[ -n "$TRT_VERSION" ] || die "cannot tell the TensorRT version: set EDGECNN_TRT_VERSION (e.g. 10.3.0)"
TRT_MAJOR="${TRT_VERSION%%.*}"
TRT_MINOR="$(echo "$TRT_VERSION" | cut -d. -f2)"
case "$TRT_MAJOR$TRT_MINOR" in *[!0-9]*|"") die "cannot read TensorRT version '$TRT_VERSION'" ;; esac
if [ "$TRT_MAJOR" -lt 8 ] || { [ "$TRT_MAJOR" -eq 8 ] && [ "$TRT_MINOR" -lt 2 ]; }; then
  die "TensorRT $TRT_VERSION is too old: edgecnn engines need TensorRT 8.2 or newer"
fi
echo "TensorRT $TRT_VERSION, trtexec: $TRTEXEC_BIN"

# Everything that ties an engine to this machine, for `edgecnn build .` and the runner to check.
write_provenance() {
  local engine="$1" precision="$2" source="$3" dla="$4"
  local gpu="" cc="" l4t="" sha=""
  if command -v nvidia-smi >/dev/null 2>&1; then
    gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || true)"
    cc="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 || true)"
  fi
  if [ -r /etc/nv_tegra_release ]; then
    l4t="$(sed -n 's/^# R\([0-9]*\) (release), REVISION: \([0-9.]*\),.*/\1.\2/p' /etc/nv_tegra_release)"
  fi
  sha="$(sha256sum "$source" | cut -d' ' -f1)"
  {
    echo "{"
    echo "  \"tensorrt\": \"$TRT_VERSION\","
    [ -n "$gpu" ] && echo "  \"gpu\": \"$gpu\","
    [ -n "$cc" ] && echo "  \"compute_capability\": \"$cc\","
    [ -n "$l4t" ] && echo "  \"l4t\": \"$l4t\","
    echo "  \"precision\": \"$precision\","
    if [ -n "$dla" ]; then echo "  \"dla_core\": $dla,"; else echo "  \"dla_core\": null,"; fi
    echo "  \"source\": \"$(basename "$source")\","
    echo "  \"source_sha256\": \"$sha\","
    echo "  \"workspace_mb\": $WORKSPACE_MB,"
    echo "  \"batch\": {\"min\": $BATCH_MIN, \"opt\": $BATCH_OPT, \"max\": $BATCH_MAX},"
    echo "  \"strongly_typed\": $([ "$TRT_MAJOR" -ge 11 ] && echo true || echo false),"
    echo "  \"built_with\": \"build_engine.sh (trtexec)\","
    echo "  \"built_at\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\""
    echo "}"
  } > "$engine.json"
}

BUILT=0
build_one() {
  local precision="$1" source="$2" source_fp16="$3" engine="$4" input="$5" chw="$6"
  local onnx="$source" dla="" flags=()
  if [ -n "$ONLY_PRECISION" ] && [ "$precision" != "$ONLY_PRECISION" ]; then return 0; fi
  if [ -f "$engine" ] && [ "$FORCE" != "1" ] && [ "$DRY_RUN" != "1" ]; then
    echo "$engine exists: keeping it (--force rebuilds)"; return 0
  fi
  if [ "$TRT_MAJOR" -ge 11 ]; then
    # TensorRT 11: every network is strongly typed; precision comes from the graph.
    case "$precision" in
      fp16)
        [ -n "$source_fp16" ] || die "TensorRT $TRT_VERSION takes fp16 from the graph and this bundle has no fp16 ONNX: re-export it with a current edgecnn"
        onnx="$source_fp16" ;;
    esac
    flags+=(--stronglyTyped)
  else
    case "$precision" in
      fp16) flags+=(--fp16) ;;
      int8) flags+=(--int8) ;;  # explicit quantization: the scales are in the Q/DQ graph
    esac
  fi
  [ -f "$onnx" ] || [ "$DRY_RUN" = "1" ] || die "$onnx is missing: copy the whole bundle folder"
  flags+=("--minShapes=$input:${BATCH_MIN}x$chw" "--optShapes=$input:${BATCH_OPT}x$chw" "--maxShapes=$input:${BATCH_MAX}x$chw")
  if [ "$TRT_MAJOR" -ge 10 ]; then
    flags+=("--memPoolSize=workspace:${WORKSPACE_MB}M")
  elif [ "$TRT_MAJOR" -eq 8 ] && [ "$TRT_MINOR" -lt 4 ]; then
    flags+=("--workspace=$WORKSPACE_MB")
  else
    flags+=("--memPoolSize=workspace:$WORKSPACE_MB")  # 8.4-9.x: plain MiB, no unit suffix
  fi
  flags+=("--timingCacheFile=$TIMING_CACHE")
  if [ -n "$DLA_CORE" ]; then
    if [ "$precision" = "fp32" ]; then
      echo "note: DLA runs fp16/int8 only; $engine stays on the GPU" >&2
    else
      dla="$DLA_CORE"
      flags+=("--useDLACore=$DLA_CORE" --allowGPUFallback)
    fi
  fi
  if [ "$TRT_MAJOR" -gt 8 ] || { [ "$TRT_MAJOR" -eq 8 ] && [ "$TRT_MINOR" -ge 6 ]; }; then
    flags+=(--skipInference)
  else
    flags+=(--buildOnly)
  fi
  local cmd=("$TRTEXEC_BIN" "--onnx=$onnx" "--saveEngine=$engine.tmp" "${flags[@]}")
  if [ "$DRY_RUN" = "1" ]; then
    printf '%q ' "${cmd[@]}"; echo
    return 0
  fi
  mkdir -p "$(dirname "$engine")" "$(dirname "$TIMING_CACHE")"
  echo "building $engine ($precision) from $onnx ..."
  "${cmd[@]}" > "$engine.log" 2>&1 || { tail -n 30 "$engine.log" >&2; die "trtexec failed for $engine (full log: $engine.log)"; }
  mv -f "$engine.tmp" "$engine"
  write_provenance "$engine" "$precision" "$onnx" "$dla"
  BUILT=$((BUILT + 1))
  echo "built $engine"
}

@BUILDS@

if [ "$DRY_RUN" = "1" ]; then exit 0; fi
if command -v edgecnn >/dev/null 2>&1; then
  edgecnn build "$HERE"  # registers the engines in manifest.json (sha256 + provenance)
  echo "next: edgecnn bench $HERE && edgecnn verify $HERE"
else
  echo "built $BUILT engine(s). To benchmark and verify them: pip install 'edgecnn[tensorrt]', then"
  echo "  edgecnn build $HERE && edgecnn bench $HERE && edgecnn verify $HERE"
fi
'''
