"""Reading (and, for int8 I/O, rewriting) a .tflite flatbuffer: ops, versions, dtypes, weights, I/O.

Needs only the TFLite schema module that ships with ai-edge-litert (or litert-converter), no torch.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import BadInputError, require

__all__ = ["TensorSpec", "TfliteGraph", "TfliteOp", "TfliteWeight", "describe_tflite", "enum_names",
           "float_io", "format_counts", "schema"]

# Ops that carry weights: their input 1 is the weight tensor.
_WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D")
# Ops that only move or convert data; everything else computes.
_CONVERSION_OPS = ("QUANTIZE", "DEQUANTIZE")
_QUANTIZED_DTYPES = ("int8", "uint8", "int16")


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


def format_counts(counts: dict[str, int]) -> str:
    """'CONV_2D x3, ADD x1': op counts, most frequent first, for warnings."""
    return ", ".join(f"{name} x{n}" for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def schema():
    """The TFLite flatbuffer schema module (ships with ai-edge-litert and litert-converter)."""
    try:
        from ai_edge_litert import schema_py_generated as module
    except ImportError:
        try:
            from litert_converter import schema_py_generated as module
        except ImportError:
            module = require("ai_edge_litert.schema_py_generated", "litert", "reading .tflite files")
    return module


def enum_names(enum_class) -> dict[int, str]:
    """Value -> name of a flatbuffer enum class (BuiltinOperator, TensorType)."""
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


class _Reader:
    """The main subgraph of one parsed flatbuffer, with the lookups describe_tflite needs."""

    def __init__(self, data: bytes, name: str):
        self.schema = schema()
        try:
            self.model = self.schema.Model.GetRootAs(data, 0)
            if self.model.SubgraphsLength() == 0:
                raise ValueError("no subgraph")
            self.graph = self.model.Subgraphs(0)
        except Exception as exc:  # flatbuffers raises assorted types on garbage
            raise BadInputError(f"{name} is not a readable .tflite file: {exc}") from exc
        self.op_names = enum_names(self.schema.BuiltinOperator)
        self.type_names = {k: v.lower() for k, v in enum_names(self.schema.TensorType).items()}

    def dtype(self, index: int) -> str:
        return self.type_names.get(self.graph.Tensors(index).Type(), "unknown")

    def has_data(self, index: int) -> bool:
        buffer = self.model.Buffers(self.graph.Tensors(index).Buffer())
        return buffer is not None and (buffer.DataLength() > 0 or buffer.Offset() > 0)

    def op_name(self, op) -> str:
        code = self.model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        return self.op_names.get(builtin, f"BUILTIN_{builtin}")

    def spec(self, index: int) -> TensorSpec:
        tensor = self.graph.Tensors(index)
        quant = tensor.Quantization()
        scale = zero_point = None
        if quant is not None and quant.ScaleLength() == 1:
            scale = float(quant.Scale(0))
            zero_point = int(quant.ZeroPoint(0)) if quant.ZeroPointLength() else 0
        shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        return TensorSpec(tensor.Name().decode(), shape, self.dtype(index), scale, zero_point)

    def weight(self, op_index: int, name: str, weight_index: int, producers: dict[int, int]) -> TfliteWeight:
        # fp16 / weight-only files store the weight behind a DEQUANTIZE op.
        producer = producers.get(weight_index)
        if not self.has_data(weight_index) and producer is not None:
            source = self.graph.Operators(producer)
            if self.op_name(source) == "DEQUANTIZE" and self.has_data(source.Inputs(0)):
                weight_index = source.Inputs(0)
        tensor = self.graph.Tensors(weight_index)
        quant = tensor.Quantization()
        scales = quant.ScaleLength() if quant is not None else 0
        return TfliteWeight(
            op_index=op_index,
            op=name,
            shape=tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else (),
            dtype=self.dtype(weight_index),
            scales=int(scales),
            quantized_dimension=int(quant.QuantizedDimension()) if scales else None,
        )


def describe_tflite(source: str | os.PathLike | bytes, *, name: str | None = None) -> TfliteGraph:
    """Read ops (with versions and dtypes), conv/FC weights and I/O of a .tflite file (or its bytes)."""
    if isinstance(source, (bytes, bytearray)):
        data, name = bytes(source), name or "the .tflite content"
    else:
        data, name = Path(source).read_bytes(), name or Path(source).name
    reader = _Reader(data, name)
    graph = reader.graph
    producers = {graph.Operators(i).Outputs(j): i
                 for i in range(graph.OperatorsLength()) for j in range(graph.Operators(i).OutputsLength())}
    ops, weights, custom = [], [], []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        op_name = reader.op_name(op)
        if op_name == "CUSTOM":
            custom.append((reader.model.OperatorCodes(op.OpcodeIndex()).CustomCode() or b"?").decode())
        inputs = [op.Inputs(j) for j in range(op.InputsLength()) if op.Inputs(j) >= 0]
        outputs = [op.Outputs(j) for j in range(op.OutputsLength())]
        version = int(reader.model.OperatorCodes(op.OpcodeIndex()).Version())
        ops.append(TfliteOp(i, op_name, version, tuple(reader.dtype(t) for t in inputs),
                            tuple(reader.dtype(t) for t in outputs)))
        if op_name in _WEIGHTED_OPS and len(inputs) > 1:
            weights.append(reader.weight(i, op_name, inputs[1], producers))
    return TfliteGraph(
        ops=tuple(ops),
        weights=tuple(weights),
        inputs=tuple(reader.spec(graph.Inputs(i)) for i in range(graph.InputsLength())),
        outputs=tuple(reader.spec(graph.Outputs(i)) for i in range(graph.OutputsLength())),
        custom_ops=tuple(custom),
        subgraphs=int(reader.model.SubgraphsLength()),
    )


# ------------------------------------------------------------------- float32 I/O for an int8 graph


class _Editor:
    """A mutable (object API) copy of a flatbuffer's main subgraph, for adding I/O conversions."""

    def __init__(self, content: bytes):
        self.schema = schema()
        self.model = self.schema.ModelT.InitFromObj(self.schema.Model.GetRootAs(content, 0))
        self.graph = self.model.subgraphs[0]

    def opcode(self, builtin: int, version: int) -> int:
        for index, code in enumerate(self.model.operatorCodes):
            if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and code.version == version:
                return index
        code = self.schema.OperatorCodeT()
        code.builtinCode = builtin
        code.deprecatedBuiltinCode = min(builtin, 127)
        code.version = version
        self.model.operatorCodes.append(code)
        return len(self.model.operatorCodes) - 1

    def float_twin(self, index: int) -> int:
        """A new float32 tensor that takes over the name of quantized tensor `index`."""
        old = self.graph.tensors[index]
        new = self.schema.TensorT()
        new.name, new.shape, new.shapeSignature = old.name, old.shape, old.shapeSignature
        new.type = self.schema.TensorType.FLOAT32
        new.hasRank = old.hasRank
        self.model.buffers.append(self.schema.BufferT())
        new.buffer = len(self.model.buffers) - 1
        old.name = (old.name or b"") + b"_quantized"
        self.graph.tensors.append(new)
        return len(self.graph.tensors) - 1

    def op(self, builtin: int, source: int, target: int):
        op = self.schema.OperatorT()
        op.opcodeIndex = self.opcode(builtin, 2)
        op.inputs = np.array([source], dtype=np.int32)
        op.outputs = np.array([target], dtype=np.int32)
        return op

    def pack(self, size_hint: int) -> bytes:
        import flatbuffers

        builder = flatbuffers.Builder(size_hint + 4096)
        builder.Finish(self.model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def float_io(content: bytes) -> bytes:
    """Give a quantized graph float32 inputs/outputs: QUANTIZE first, DEQUANTIZE last.

    litert-torch folds the input quantization into an int8 graph input; a float input keeps
    the file a drop-in replacement for the fp32 one (same feeding code, same golden logits),
    and the in-graph QUANTIZE is delegated (on ai-edge-litert) instead of done in numpy.
    """
    editor = _Editor(content)
    graph, types, ops = editor.graph, editor.schema.TensorType, editor.schema.BuiltinOperator
    quantized_types = {types.INT8, types.UINT8, types.INT16}
    renamed: dict[int, int] = {}
    inputs = [int(i) for i in graph.inputs]
    for position, index in enumerate(inputs):
        if graph.tensors[index].type in quantized_types:
            twin = editor.float_twin(index)
            graph.operators.insert(0, editor.op(ops.QUANTIZE, twin, index))
            inputs[position] = renamed[index] = twin
    outputs = [int(i) for i in graph.outputs]
    for position, index in enumerate(outputs):
        if graph.tensors[index].type in quantized_types:
            twin = editor.float_twin(index)
            graph.operators.append(editor.op(ops.DEQUANTIZE, index, twin))
            outputs[position] = renamed[index] = twin
    if not renamed:
        return content
    graph.inputs = np.array(inputs, dtype=np.int32)
    graph.outputs = np.array(outputs, dtype=np.int32)
    for signature in editor.model.signatureDefs or []:
        if signature.subgraphIndex not in (0, None):
            continue
        for tensor_map in list(signature.inputs or []) + list(signature.outputs or []):
            tensor_map.tensorIndex = renamed.get(tensor_map.tensorIndex, tensor_map.tensorIndex)
    return editor.pack(len(content))
