"""tflite-runtime 2.14 compatibility: what the last tflite-runtime release cannot load or run fast.

Measured on this x86-64 machine, see benchmarks/tflite_runtimes.py --per-op: tflite-runtime 2.14,
the last tflite-runtime release and still what Raspberry Pi OS users pip-install, was built
without XNNPACK's quantized-operator support: its default XNNPACK delegate takes no op that
computes in int8. Cut into one-op models, none of the 72 ops of MobileNet v2's int8 file is
delegated there (ai-edge-litert 2.3 delegates all 72), and a graph without float tensors gets no
delegate at all, which is what TFLite's source does when built without
XNNPACK_DELEGATE_ENABLE_QS8/QU8. The int8 ops run on the built-in kernels instead, mostly in
DEPTHWISE_CONV_2D, whose int8 kernel on x86 is no faster than the reference one (MobileNet v2
224x224, 1 thread: fp32 26 ms, int8 148 ms there; 15 and 14 ms on ai-edge-litert). Nothing in the
file changes which delegate flags a runtime was built with: with per-tensor weights, int8 I/O
(the one-op models) or NHWC I/O the int8 ops stay undelegated too. What does run delegated on
2.14 is float compute with weights stored small: fp16, or int8 weight-only (`int8_scheme=
"weight-only"`: a quarter of the fp32 size, fp32 speed on both runtimes, no int8 speed-up; 26 ms
on 2.14, 14 ms on ai-edge-litert in the run above). `tflite_compatibility` says so and names the
runtime to install for int8 speed. On ARM the built-in int8 kernels have NEON paths that x86
lacks, so the size of the gap on a Raspberry Pi was not measured here.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgecnn.backends.tflite.flatbuffer import TfliteGraph, describe_tflite, format_counts

__all__ = ["INSTALL_LITERT", "graph_compatibility", "tflite_compatibility"]

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


def tflite_compatibility(path: str | os.PathLike) -> list[str]:
    """Warnings for runtimes that cannot run the .tflite at `path` at all, or not at full speed.

    Checks the file against tflite-runtime 2.14 (the last tflite-runtime release, still what
    Raspberry Pi OS users pip-install on Python 3.11): operators or versions it lacks, and
    quantized operators its XNNPACK delegate does not take. An empty list: no known problem.
    """
    return graph_compatibility(describe_tflite(path), Path(path).name)


def graph_compatibility(graph: TfliteGraph, name: str) -> list[str]:
    """`tflite_compatibility` for a graph already read; `name` is the file name the warnings use."""
    checks = (_load_problem(graph, name), _custom_ops(graph, name), _int8_speed(graph, name))
    return [message for message in checks if message]


def _load_problem(graph: TfliteGraph, name: str) -> str | None:
    table = _TFLITE_RUNTIME_2_14_MAX_VERSION
    unknown = sorted({op.name for op in graph.ops if op.name not in table and op.name != "CUSTOM"})
    too_new = sorted({
        f"{op.name} v{op.version} (2.14 has up to v{table[op.name]})"
        for op in graph.ops if op.name in table and op.version > table[op.name]
    })
    if not unknown and not too_new:
        return None
    parts = []
    if unknown:
        parts.append("operators it does not know: " + ", ".join(unknown))
    if too_new:
        parts.append("operator versions newer than it has: " + ", ".join(too_new))
    return f"{name} does not load on tflite-runtime 2.14 ({'; '.join(parts)}); {INSTALL_LITERT} on the device"


def _custom_ops(graph: TfliteGraph, name: str) -> str | None:
    if not graph.custom_ops:
        return None
    return (f"{name} has custom operators ({', '.join(sorted(set(graph.custom_ops)))}) that stock "
            "TFLite runtimes do not register; the runtime must be built with them")


def _int8_speed(graph: TfliteGraph, name: str) -> str | None:
    quantized = graph.quantized_ops()
    if not quantized:
        return None
    return (
        f"{name} computes in int8 ({format_counts(quantized)}). tflite-runtime 2.14 (the "
        "last tflite-runtime release) was built without XNNPACK's int8 support: its XNNPACK "
        "delegate takes none of these ops, which run on its built-in int8 kernels instead "
        "(measured on x86-64 with 1-2 threads, MobileNet v2 224x224: 10-16x slower there than "
        "on ai-edge-litert, and 5-6x slower than the fp32 file; not measured on an ARM board). "
        "For int8 speed, "
        f"{INSTALL_LITERT} on the device; to stay on tflite-runtime 2.14, deploy the fp32 or "
        "fp16 file, or an int8 weight-only file (int8_scheme='weight-only': 1/4 of the fp32 "
        "size, fp32 speed)"
    )
