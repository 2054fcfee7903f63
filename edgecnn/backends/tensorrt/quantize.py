"""Q/DQ INT8 ONNX for TensorRT's explicit quantization (host side, no TensorRT needed).

Symmetric int8 activations and weights (zero points 0), per-channel weights on the output-channel
axis, per-tensor activations, float biases, and Q/DQ placed where TensorRT fuses: on the inputs of
weighted layers and on the identity branch of residual adds, never between a conv/gemm and its
activation or on the logits. The model comes from NVIDIA ModelOpt when it is installed, else from
ONNX Runtime's quantizer followed by the placement pass here; either way `check_tensorrt_qdq`
must find nothing wrong with it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecnn.backends.tensorrt.graph import ACTIVATIONS, consumers_of, producers_of, rename_inputs, save_model
from edgecnn.backends.tensorrt.qdq_check import check_tensorrt_qdq
from edgecnn.errors import BadInputError, CheckFailedError, require

if TYPE_CHECKING:  # pragma: no cover
    from edgecnn.compare import Progress

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
QUANTIZERS = ("auto", "onnxruntime", "modelopt")
_MODELOPT_METHODS = {"minmax": "max", "entropy": "entropy"}
# Producers whose quantized output TensorRT does not want: it quantizes after the fused activation
# (and after the residual add), not between the weighted layer and what it fuses with.
_FUSING_PRODUCERS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Add"}


@dataclass(frozen=True)
class TensorRTQuantResult:
    """What `quantize_qdq_int8` wrote, and the Q/DQ rule check of it (empty: all rules hold)."""

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


def quantize_qdq_int8(
    onnx_path: str | os.PathLike,
    out_path: str | os.PathLike,
    calibration_batches: np.ndarray,
    *,
    method: str = "minmax",
    backend: str = "auto",
    percentile: float = 99.999,
    reduce_range: bool = True,
    progress: "Progress | None" = None,
    nodes_to_exclude: tuple[str, ...] = (),
) -> TensorRTQuantResult:
    """Write a Q/DQ INT8 ONNX model for TensorRT's explicit quantization at `out_path`.

    `backend="auto"` uses NVIDIA ModelOpt when it is installed and the method is one it has, else
    ONNX Runtime's quantizer. Raises CheckFailedError when the result breaks a TensorRT rule.
    `nodes_to_exclude` (node names) stay float: TensorRT builds them in fp16/fp32.
    """
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    method = _check_arguments(onnx_path, method, backend)
    if backend == "modelopt" or (backend == "auto" and method in _MODELOPT_METHODS and _modelopt_available()):
        if method not in _MODELOPT_METHODS:
            raise BadInputError(f"ModelOpt has no {method!r} calibration: use minmax or entropy, or backend onnxruntime")
        return _quantize_modelopt(onnx_path, out_path, calibration_batches, _MODELOPT_METHODS[method],
                                  nodes_to_exclude=tuple(nodes_to_exclude))

    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8

    onnx = require("onnx", "export", "TensorRT Q/DQ quantization")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgecnn-trtq-") as workdir:
        raw = Path(workdir) / "qdq.onnx"
        result = quantize_onnx_int8(onnx_path, raw, calibration_batches, method=method, symmetric=True,
                                    # 7-bit weights: TensorRT loses nothing measurable, and the host's
                                    # ONNX Runtime check of this same graph then does not saturate
                                    # on AVX2 CPUs (8-bit: MobileNet v2 on digits dropped 1.5 points).
                                    per_channel=True, reduce_range=reduce_range, percentile=percentile,
                                    progress=progress, nodes_to_exclude=tuple(nodes_to_exclude))
        model = onnx.load(str(raw))
        removed = _place_qdq_for_tensorrt(model)
        onnx.checker.check_model(model)
        save_model(onnx, model, out_path)
    return _quant_result(onnx, out_path, source=onnx_path, backend="onnxruntime", method=method,
                         size=result.calibration_size, removed=removed, seconds=time.perf_counter() - started,
                         excluded=tuple(nodes_to_exclude))


def _check_arguments(onnx_path: Path, method: str, backend: str) -> str:
    method = method.lower()
    if method not in CALIBRATION_METHODS:
        raise BadInputError(f"unknown calibration method {method!r}: choose one of {', '.join(CALIBRATION_METHODS)}")
    if backend not in QUANTIZERS:
        raise BadInputError(f"unknown quantization backend {backend!r}: choose auto, onnxruntime or modelopt")
    if not onnx_path.is_file():
        raise BadInputError(f"ONNX model not found: {onnx_path}")
    return method


def _modelopt_available() -> bool:
    try:
        return importlib.util.find_spec("modelopt.onnx.quantization") is not None
    except (ImportError, ValueError):
        return False


def _quantize_modelopt(onnx_path: Path, out_path: Path, calibration_batches: np.ndarray,
                       modelopt_method: str, nodes_to_exclude: tuple[str, ...] = ()) -> TensorRTQuantResult:
    """NVIDIA ModelOpt's ONNX PTQ: its Q/DQ placement follows TensorRT's own rules."""
    quantization = require("modelopt.onnx.quantization", "export", "TensorRT Q/DQ quantization with ModelOpt")
    onnx = require("onnx", "export", "TensorRT Q/DQ quantization")
    from edgecnn.compare import check_samples

    images = check_samples(calibration_batches)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgecnn-modelopt-") as workdir:
        raw = Path(workdir) / "qdq.onnx"
        quantization.quantize(onnx_path=str(onnx_path), quantize_mode="int8", calibration_data=images,
                              calibration_method=modelopt_method, calibration_eps=["cpu"],
                              output_path=str(raw), log_level="WARNING",
                              # ModelOpt matches these as regular expressions: anchored exact names.
                              **({"nodes_to_exclude": [f"^{re.escape(n)}$" for n in nodes_to_exclude]}
                                 if nodes_to_exclude else {}))
        save_model(onnx, onnx.load(str(raw)), out_path)
    method = {"max": "minmax"}.get(modelopt_method, modelopt_method)
    return _quant_result(onnx, out_path, source=onnx_path, backend="modelopt", method=method,
                         size=int(images.shape[0]), removed=0, seconds=time.perf_counter() - started,
                         excluded=nodes_to_exclude)


def _quant_result(onnx: Any, out_path: Path, *, source: Path, backend: str, method: str, size: int,
                  removed: int, seconds: float, excluded: tuple[str, ...] = ()) -> TensorRTQuantResult:
    # A layer excluded on purpose is what the "not fed by DequantizeLinear" rule reports: not a problem.
    problems = [p for p in check_tensorrt_qdq(out_path) if not any(f"'{name}'" in p for name in excluded)]
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


def _place_qdq_for_tensorrt(model: Any) -> int:
    """Take out the Q/DQ pairs that stop TensorRT's fusions; returns how many were removed.

    ONNX Runtime's symmetric QDQ quantizes every tensor between quantizable ops. For TensorRT a
    Q/DQ pair on the output of a conv/gemm/add whose consumers are activations or a residual add
    splits conv+bias+activation (and conv+add) into separate int8 layers with an extra rounding,
    and a pair on the logits only costs accuracy. Without them TensorRT quantizes after the fused
    activation, as its Q/DQ placement guide recommends.
    """
    graph = model.graph
    doomed = _fusion_breaking_pairs(graph)
    if not doomed:
        return 0
    renames = {dq.output[0]: q.input[0] for q, dqs in doomed for dq in dqs}
    removed = {id(node) for q, dqs in doomed for node in (q, *dqs)}
    _keep_output_names(graph, renames)
    kept = [n for n in graph.node if id(n) not in removed]
    rename_inputs(kept, renames)
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    for info in [v for v in graph.value_info if v.name in renames]:
        graph.value_info.remove(info)
    return len(doomed)


def _fusion_breaking_pairs(graph: Any) -> list[tuple[Any, list]]:
    """(QuantizeLinear, its DequantizeLinears) on the logits or between a fusing producer and its fusion."""
    producers, consumers = producers_of(graph), consumers_of(graph)
    graph_outputs = {o.name for o in graph.output}
    doomed = []
    for q in graph.node:
        if q.op_type != "QuantizeLinear":
            continue
        dqs = consumers.get(q.output[0], [])
        if not dqs or any(d.op_type != "DequantizeLinear" for d in dqs):
            continue
        producer = producers.get(q.input[0])
        outputs = {d.output[0] for d in dqs}
        users = [u for out in outputs for u in consumers.get(out, [])]
        after_fusing = (
            producer is not None and producer.op_type in _FUSING_PRODUCERS and users
            and all(u.op_type in ACTIVATIONS or u.op_type == "Add" for u in users)
        )
        if outputs & graph_outputs or after_fusing:
            doomed.append((q, dqs))
    return doomed


def _keep_output_names(graph: Any, renames: dict[str, str]) -> None:
    """A graph output keeps its name: its producer writes it directly (and `renames` forgets it)."""
    producers = producers_of(graph)
    graph_outputs = {o.name for o in graph.output}
    for old, new in list(renames.items()):
        if old not in graph_outputs:
            continue
        producer = producers[new]
        for index, name in enumerate(producer.output):
            if name == new:
                producer.output[index] = old
        rename_inputs(graph.node, {new: old})
        del renames[old]
