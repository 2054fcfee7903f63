"""What an ONNX source's graph goes through before a target takes it: normalising (checker, edgecnn's
input/output names, the stated H/W, a dynamic batch axis where that is safe, onnxslim) for the targets
that read ONNX, and onnx2torch for the targets that build from a torch module."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgecnn.errors import BadInputError, require
from edgecnn.export.onnx import OnnxGraphFile, checked
from edgecnn.sources.onnx_file import BATCH_DIM, INPUT_NAME, OUTPUT_NAME, GraphInput, TorchConversionError

# A graph whose batch was made dynamic must give the original's logits to within float noise.
_BATCH_RTOL = 1e-4
# Targets that read the ONNX file itself (named for the user; the registry's labels).
ONNX_READERS = "ONNX Runtime, OpenVINO and TensorRT"
# The opset onnx2torch covers best: a graph of a newer opset is brought down to it when one of its ops needs it.
_CONVERTER_OPSET = 17


@dataclass(frozen=True, kw_only=True)
class OnnxGraphResult(OnnxGraphFile):
    """What normalising wrote and did to the user's graph."""

    fixed_batch: int | None  # None: dynamic batch axis

    @property
    def batchnorm_folded(self) -> int:
        return self.nodes_before.get("BatchNormalization", 0) - self.nodes_after.get("BatchNormalization", 0)


def _check(onnx, model, what: str) -> None:
    checked(onnx, model, what=what, error=BadInputError)


def _rename(model, old: str, new: str) -> None:
    """Rename tensor `old` to `new` everywhere in the graph (no-op when equal)."""
    if old == new:
        return
    graph = model.graph
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new


def _set_dims(value, dims: list[int | str]) -> None:
    shape = value.type.tensor_type.shape
    for dim, wanted in zip(shape.dim, dims):
        if isinstance(wanted, str):
            dim.Clear()
            dim.dim_param = wanted
        else:
            dim.Clear()
            dim.dim_value = wanted


def _prepared(path: Path, graph: GraphInput, input_shape) -> Any:
    """The user's graph, checked, with edgecnn's names and the stated (C, H, W) fixed in."""
    onnx = require("onnx", "export", "reading ONNX models")
    model = onnx.load(str(path))
    _check(onnx, model, str(path))
    taken = {name for node in model.graph.node for name in (*node.input, *node.output)}
    for old, new in ((graph.input_name, INPUT_NAME), (graph.output_name, OUTPUT_NAME)):
        if old != new and new in taken:
            raise BadInputError(f"{path}: a tensor other than the graph's {old!r} is named {new!r}; rename it")
        _rename(model, old, new)
    batch = graph.batch if graph.batch is not None else BATCH_DIM
    _set_dims(model.graph.input[0], [batch, *input_shape])
    out_dims = model.graph.output[0].type.tensor_type.shape.dim
    if out_dims and graph.batch is None and not out_dims[0].dim_value:
        out_dims[0].Clear()
        out_dims[0].dim_param = BATCH_DIM
    return model


def _slim(onnx, model, notes: list[str]) -> tuple[Any, float]:
    """onnxslim's graph when it succeeds and checks, else `model` with a note."""
    onnxslim = require("onnxslim", "export", "ONNX graph slimming")
    started = time.perf_counter()
    try:
        slimmed = onnxslim.slim(model)
        if slimmed is not None:
            onnx.checker.check_model(slimmed)
    except Exception as exc:  # noqa: BLE001 - onnxslim raises whatever its passes raise
        notes.append(f"onnxslim failed ({(str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]}); "
                     "the graph is kept as given")
        slimmed = None
    if slimmed is None:
        return model, time.perf_counter() - started
    return slimmed, time.perf_counter() - started


def _with_dynamic_batch(onnx, model, reference: Callable[[np.ndarray], np.ndarray], input_shape,
                        fixed: int) -> Any | None:
    """`model` with its static batch made dynamic, when it then gives the original's logits at other batches."""
    from edgecnn.backends import runtime_for_path
    from edgecnn.inference import run_logits

    candidate = onnx.ModelProto()
    candidate.CopyFrom(model)
    del candidate.graph.value_info[:]  # shapes inferred for the fixed batch no longer hold
    _set_dims(candidate.graph.input[0], [BATCH_DIM, *input_shape])
    _set_dims(candidate.graph.output[0], [BATCH_DIM] + [d.dim_value or d.dim_param for d in
                                                        candidate.graph.output[0].type.tensor_type.shape.dim][1:])
    samples = np.random.default_rng(0).standard_normal((fixed * 2 + 1, *input_shape), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="edgecnn-onnx-") as folder:
        trial = Path(folder) / "dynamic.onnx"
        onnx.save(candidate, str(trial))
        try:
            got, _ = run_logits(runtime_for_path(trial), trial, samples, threads=1, batch=len(samples))
        except Exception:  # noqa: BLE001 - a graph that bakes the batch into a Reshape fails here
            return None
    want = reference(samples)
    if got.shape != want.shape:
        return None
    scale = max(float(np.abs(want).max()), 1.0)
    return candidate if float(np.abs(got - want).max()) <= _BATCH_RTOL * scale else None


def normalise(source: Path, path: Path, *, graph: GraphInput, input_shape,
              reference: Callable[[np.ndarray], np.ndarray]) -> OnnxGraphResult:
    """Write the user's graph, normalised, at `path` (atomically)."""
    from edgecnn.export.onnx import op_counts

    onnx = require("onnx", "export", "reading ONNX models")
    input_shape = tuple(int(d) for d in input_shape)
    original = onnx.load(str(source))
    nodes_before = op_counts(original)
    model = _prepared(source, graph, input_shape)
    notes: list[str] = []
    fixed = graph.batch
    if fixed is not None:
        dynamic = _with_dynamic_batch(onnx, model, reference, input_shape, fixed)
        if dynamic is not None:
            model, fixed = dynamic, None
            notes.append(f"the graph's static batch {graph.batch} was made dynamic (checked at another batch)")
        else:
            notes.append(f"the graph's batch stays {fixed}: it gives other logits (or fails) at other batches")
    model, slim_s = _slim(onnx, model, notes)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        onnx.save(model, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return OnnxGraphResult(path=path, opset=graph.opset, input_name=INPUT_NAME, output_name=OUTPUT_NAME,
                           input_shape=input_shape, nodes_before=nodes_before, nodes_after=op_counts(model),
                           fixed_batch=fixed, slim_s=slim_s, notes=notes)


def _within_converter_opsets(onnx, model) -> Any:
    """The graph at opset 17 when onnx2torch lacks a converter for one of its ops at the graph's own opset.

    onnx2torch registers each op at the opsets it knows (Reshape: 5, 13, 14); a graph from a newer exporter
    (opset 19+: Reshape-19) is semantically the same at 17 for these ops, and ONNX's version converter
    says so or refuses. The original graph is kept when conversion fails or does not help.
    """
    if _first_unconvertible(model) is None:
        return model
    try:
        converted = onnx.version_converter.convert_version(model, _CONVERTER_OPSET)
    except Exception:  # noqa: BLE001 - the converter refuses what it cannot map; _unconvertible names it
        return model
    return converted if _first_unconvertible(converted) is None else model


def _first_unconvertible(model) -> tuple[int, Any, int] | None:
    """(index, node, opset) of the first node onnx2torch has no converter for, or None."""
    from onnx2torch.node_converters.registry import get_converter

    opsets = {o.domain or "": o.version for o in model.opset_import}
    for index, node in enumerate(model.graph.node):
        try:
            get_converter(domain=node.domain or "", operation_type=node.op_type, version=opsets.get(node.domain or "", 0))
        except NotImplementedError:
            return index, node, opsets.get(node.domain or "", 0)
    return None


def _unconvertible(model, what: str) -> None:
    """Refuse, naming op and node, a graph with a node onnx2torch has no converter for."""
    found = _first_unconvertible(model)
    if found is not None:
        index, node, opset = found
        raise TorchConversionError(
            f"{what}: onnx2torch cannot convert op {node.op_type} (node {node.name or f'#{index}'!r}, opset "
            f"{opset}), and this target builds from a torch module; {ONNX_READERS} read the "
            "ONNX file itself and can take it")


def _flatten_reshapes(onnx, model) -> int:
    """Turn `Reshape(x, [0|-1, K])` that flattens (N, C, H, W) -> (N, C*H*W) into `Flatten(axis=1)`.

    onnx2torch's Reshape reads its shape tensor at run time (a data-dependent branch on zeros), which
    litert-torch's tracer cannot follow; Flatten is static. Only a reshape that shape inference proves to
    be a flatten from axis 1 is rewritten. Returns how many were.
    """
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input]:
        dims = value.type.tensor_type.shape.dim
        ranks[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:  # torch's exporter writes small shapes as Constant nodes
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    rewritten = 0
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) != 2 or node.input[1] not in constants:
            continue
        shape, dims = [int(v) for v in constants[node.input[1]].ravel()], ranks.get(node.input[0])
        if len(shape) != 2 or not dims or len(dims) < 2 or None in dims[1:]:
            continue
        # Keeps the batch: 0 (copy), -1, or the batch a fixed-batch graph bakes in (e.g. [1, K]).
        if shape[0] not in (0, -1) and not (dims[0] is not None and shape[0] == dims[0]):
            continue
        if shape[1] not in (-1, int(np.prod(dims[1:]))) or (shape[0] == -1 and shape[1] == -1):
            continue
        node.op_type, inputs = "Flatten", [node.input[0]]
        del node.input[:]
        node.input.extend(inputs)
        del node.attribute[:]
        node.attribute.append(onnx.helper.make_attribute("axis", 1))
        rewritten += 1
    return rewritten


def torch_module_from_onnx(path: Path, *, what: str) -> Any:
    """An edgecnn-exported ONNX graph (input `input`, dynamic batch) as an eval-mode torch module."""
    onnx = require("onnx", "export", "reading ONNX models")
    return _convert(onnx, onnx.load(str(path)), what)


def _convert(onnx, model, what: str) -> Any:
    onnx2torch = require("onnx2torch", "all", "converting an ONNX graph for targets built from a torch module")
    # onnxslim first: torch's exporter shares weights through Identity nodes onnx2torch cannot follow.
    model, _ = _slim(onnx, model, [])
    _flatten_reshapes(onnx, model)
    model = _within_converter_opsets(onnx, model)
    _unconvertible(model, what)
    try:
        module = onnx2torch.convert(model)
    except Exception as exc:  # noqa: BLE001 - the converter raises whatever its node converters raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise TorchConversionError(f"{what}: onnx2torch cannot convert the graph ({type(exc).__name__}: {first}), "
                                   f"and this target builds from a torch module; {ONNX_READERS} read the ONNX "
                                   "file itself and can take it") from None
    _static_reshapes(module)
    return module.eval()


def _static_reshapes(module) -> int:
    """Give every onnx2torch Reshape whose shape is a constant that shape as Python ints.

    onnx2torch's Reshape reads its shape tensor at run time (`torch.any(shape == 0)`), a data-dependent
    branch litert-torch's tracer cannot guard on; with the constant unpacked the reshape is static. Returns
    how many were rewritten.
    """
    import torch

    rewritten = 0
    for node in list(module.graph.nodes):
        target = module.get_submodule(node.target) if node.op == "call_module" else None
        if type(target).__name__ != "OnnxReshape" or len(node.args) != 2 or node.args[1].op != "get_attr":
            continue
        shape = _attr(module, node.args[1].target)
        if not isinstance(shape, torch.Tensor) or shape.ndim != 1:
            continue
        node.op, node.target = "call_function", _reshape_to
        node.args = (node.args[0], tuple(int(v) for v in shape.tolist()))
        rewritten += 1
    if rewritten:
        module.graph.eliminate_dead_code()
        module.recompile()
    return rewritten


def _attr(module, dotted: str):
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


def _reshape_to(x, shape: tuple[int, ...]):
    """ONNX Reshape with a constant shape: 0 copies the input's dimension (allowzero=0), -1 is inferred."""
    return x.reshape(tuple(x.shape[i] if d == 0 else d for i, d in enumerate(shape)))


def to_torch(path: Path, *, what: str, graph: GraphInput, input_shape) -> Any:
    """The graph as an eval-mode torch module (onnx2torch on the slimmed graph), or one line on why not."""
    onnx = require("onnx", "export", "reading ONNX models")
    # onnx2torch ships with every torch-based target's host extra; `all` names them together.
    require("onnx2torch", "all", "converting an ONNX source for targets built from a torch module")
    return _convert(onnx, _prepared(path, graph, tuple(int(d) for d in input_shape)), what)
