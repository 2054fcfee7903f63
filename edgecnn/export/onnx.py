"""PyTorch -> ONNX: export with a dynamic batch axis, check, slim, and prove BatchNorm is gone.

The TorchScript exporter (`dynamo=False`) is used for every opset. In torch 2.14 the default
dynamo exporter needs `onnxscript` (not a dependency of edgecnn) and silently exports at
opset >= 18 whatever is asked for, while device profiles ask for 13-17 (TensorRT 8.5 on a
Jetson Nano, older ONNX Runtime builds). The TorchScript exporter honours the opset and, in
eval mode, folds each BatchNorm into the convolution before it. onnxslim then removes the
Identity/Constant noise and fuses what is left (Conv+Add bias, Gemm, ...).
"""

from __future__ import annotations

import os
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.export.torch_eval import eval_mode
from edgecnn.compare import check_samples
from edgecnn.errors import BadInputError, CheckFailedError, disk_full_cause, disk_full_error, require

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "FusionError",
    "OnnxExportError",
    "OnnxExportResult",
    "OnnxGraphFile",
    "export_onnx",
    "op_counts",
]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_DIM = "batch"
MIN_OPSET = 11  # Clip with min/max inputs, dynamic Reshape/Flatten as CNN exports need
# The TorchScript exporter's ceiling; read from torch when it says, else this value.
_FALLBACK_MAX_OPSET = 20

# The legacy exporter warns on every call that it is deprecated; the choice is deliberate
# (see the module docstring), so those two lines are noise for users.
_EXPORTER_NOISE = (
    r".*legacy TorchScript-based ONNX export.*",
    r".*The feature will be removed.*",
)


class OnnxExportError(BadInputError):
    """The model cannot be exported to ONNX as asked (unsupported op at this opset, bad shape)."""


class FusionError(CheckFailedError):
    """A BatchNormalization node survived export and slimming: the graph is not deployable."""


class NodeCounts:
    """Totals of the `nodes_before` / `nodes_after` op-type counts of a graph-rewriting step's result."""

    nodes_before: dict[str, int]
    nodes_after: dict[str, int]

    @property
    def node_count_before(self) -> int:
        return sum(self.nodes_before.values())

    @property
    def node_count_after(self) -> int:
        return sum(self.nodes_after.values())


@dataclass(frozen=True, kw_only=True)
class OnnxGraphFile(NodeCounts):
    """An fp32 ONNX graph written for the build steps, with the fields they read: what `export_onnx` wrote
    from a torch model, or a user's own graph normalised (sources.onnx_graph)."""

    path: Path
    opset: int
    input_name: str
    output_name: str
    input_shape: tuple[int, int, int]  # (C, H, W)
    nodes_before: dict[str, int]  # op type -> count, as it came (torch's export, the user's file)
    nodes_after: dict[str, int]  # op type -> count, after onnxslim
    slim_s: float
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class OnnxExportResult(OnnxGraphFile):
    """What `export_onnx` wrote and what it did to the graph; the batch axis is dynamic."""

    batchnorm_modules: int  # BatchNorm layers in the torch model, all folded away
    export_s: float
    bytes: int
    exporter: str = "torchscript"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["input_shape"] = list(self.input_shape)
        data["node_count_before"] = self.node_count_before
        data["node_count_after"] = self.node_count_after
        return data


def _max_opset() -> int:
    try:
        from torch.onnx import _constants

        return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _FALLBACK_MAX_OPSET))
    except ImportError:  # pragma: no cover - private module moved
        return _FALLBACK_MAX_OPSET


def _check_input_shape(input_shape) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
        raise BadInputError(
            f"input shape must be (C, H, W) with positive integers; got {input_shape!r}"
        )
    return tuple(int(d) for d in shape)  # type: ignore[return-value]


def op_counts(model) -> dict[str, int]:
    """Node count per op type of an ONNX model (a ModelProto or a path), most frequent first."""
    if not hasattr(model, "graph"):
        onnx = require("onnx", "export", "reading ONNX models")
        model = onnx.load(str(model), load_external_data=False)
    counts = Counter(node.op_type for node in model.graph.node)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _example_batch(sample, input_shape) -> np.ndarray:
    """Two example images: a batch of 1 lets the tracer freeze the batch axis."""
    if sample is None:
        rng = np.random.default_rng(0)
        return rng.standard_normal((2, *input_shape), dtype=np.float32)
    array = np.asarray(sample, dtype=np.float32)
    if array.ndim == 3:
        array = array[None]
    array = check_samples(array, input_shape)
    if array.shape[0] == 1:
        array = np.concatenate([array, array], axis=0)
    return np.ascontiguousarray(array[:2])



def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _check_request(torch, model, input_shape, opset) -> tuple[tuple[int, int, int], int]:
    """Refuse a bad shape, an opset the exporter lacks or a non-module; (C, H, W), max opset."""
    input_shape = _check_input_shape(input_shape)
    max_opset = _max_opset()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= max_opset:
        raise BadInputError(
            f"opset {opset!r} is not supported: choose one from {MIN_OPSET} to {max_opset}"
        )
    if not isinstance(model, torch.nn.Module):
        raise BadInputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    return input_shape, max_opset


def _example_tensor(torch, model, sample, input_shape):
    """The tracing example as a tensor on the model's device."""
    example = _example_batch(sample, input_shape)
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    return torch.from_numpy(example).to(device)


def _torch_export(torch, model, example_tensor, tmp: Path, *, opset: int, max_opset: int) -> float:
    """torch.onnx.export (TorchScript exporter) to `tmp`; seconds taken. Failures say why."""
    started = time.perf_counter()
    with eval_mode(model), warnings.catch_warnings(), torch.inference_mode(False):
        for pattern in _EXPORTER_NOISE:
            warnings.filterwarnings("ignore", message=pattern)
        try:
            torch.onnx.export(
                model,
                (example_tensor,),
                str(tmp),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamic_axes={INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}},
                do_constant_folding=True,
                training=torch.onnx.TrainingMode.EVAL,
            )
        except Exception as exc:  # the exporter raises many unrelated types
            full = disk_full_cause(exc)
            if full is not None:  # a full disk is not an opset problem
                raise disk_full_error(full, str(tmp.parent)) from exc
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise OnnxExportError(
                f"torch.onnx.export failed at opset {opset}: {first_line[:300]} "
                f"(an operator this opset lacks? try a newer opset, up to {max_opset})"
            ) from exc
    return time.perf_counter() - started


def _slim(onnx, exported, notes: list[str]) -> tuple[Any, float]:
    """onnxslim's graph (checked), or `exported` with a note if onnxslim fails; seconds taken."""
    onnxslim = require("onnxslim", "export", "ONNX graph slimming")
    started = time.perf_counter()
    slimmed = onnxslim.slim(exported)
    slim_s = time.perf_counter() - started
    if slimmed is None:  # onnxslim returns None when its own check fails
        notes.append("onnxslim failed its own check; the unslimmed graph is kept")
        return exported, slim_s
    _check_model(onnx, slimmed, "after onnxslim")
    return slimmed, slim_s


def _check_folded(nodes_after: dict[str, int]) -> None:
    leftover = nodes_after.get("BatchNormalization", 0)
    if leftover:
        raise FusionError(
            f"{leftover} BatchNormalization node(s) remain after export and slimming: a "
            "BatchNorm that does not directly follow a convolution or linear layer cannot "
            "be folded; move it after a conv, or fold it into the next layer by hand"
        )


def export_onnx(
    model,
    input_shape: tuple[int, int, int],
    path: str | os.PathLike,
    *,
    opset: int = 17,
    sample: np.ndarray | None = None,
    slim: bool = True,
) -> OnnxExportResult:
    """Export `model` to ONNX at `path` (dynamic batch, BN folded, slimmed); raise if BN remains.

    `sample` is an optional preprocessed NCHW batch used as the tracing example (random
    normal data otherwise); its first two images are used.
    """
    import torch

    onnx = require("onnx", "export", "ONNX export")
    input_shape, max_opset = _check_request(torch, model, input_shape, opset)
    path = Path(path)
    example_tensor = _example_tensor(torch, model, sample, input_shape)
    batchnorm_modules = sum(
        isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()
    )

    tmp = _atomic_target(path)
    notes: list[str] = []
    try:
        export_s = _torch_export(torch, model, example_tensor, tmp, opset=opset, max_opset=max_opset)
        exported = onnx.load(str(tmp))
        _check_model(onnx, exported, "as exported by torch")
        nodes_before = op_counts(exported)
        final, slim_s = _slim(onnx, exported, notes) if slim else (exported, 0.0)
        nodes_after = op_counts(final)
        _check_io(final, input_shape)
        _check_folded(nodes_after)
        if final is not exported:
            onnx.save(final, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

    return OnnxExportResult(
        path=path,
        opset=opset,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        input_shape=input_shape,
        batchnorm_modules=batchnorm_modules,
        nodes_before=nodes_before,
        nodes_after=nodes_after,
        export_s=export_s,
        slim_s=slim_s,
        bytes=path.stat().st_size,
        notes=notes,
    )


def checked(onnx, model, *, what: str, error: type[Exception] = CheckFailedError) -> Any:
    """`model` when onnx.checker accepts it; else `error` with the checker's first line, naming `what`.

    Our own export failing the checker is a failed check (exit 1); a user's file failing it is bad
    input (the caller passes BadInputError)."""
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first_line = (str(exc).strip().splitlines() or ["invalid model"])[0]
        raise error(f"onnx.checker rejects {what}: {first_line[:300]}") from None
    return model


def _check_model(onnx, model, stage: str) -> None:
    checked(onnx, model, what=f"the model {stage}")


def _check_io(model, input_shape) -> None:
    """The deployed graph must keep the names and the symbolic batch axis runners rely on."""
    inputs = [i for i in model.graph.input]
    outputs = [o for o in model.graph.output]
    if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in outputs] != [OUTPUT_NAME]:
        raise CheckFailedError(
            f"exported graph has inputs {[i.name for i in inputs]} and outputs "
            f"{[o.name for o in outputs]}, expected [{INPUT_NAME!r}] and [{OUTPUT_NAME!r}]"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4 or dims[0].dim_value != 0 or not dims[0].dim_param:
        raise CheckFailedError(
            "exported graph lost its dynamic batch axis (the model's forward probably "
            "depends on the batch size, e.g. a reshape to a fixed batch)"
        )
    static = tuple(d.dim_value for d in dims[1:])
    if static != tuple(input_shape):
        raise CheckFailedError(
            f"exported graph takes (C, H, W) = {static}, expected {tuple(input_shape)}"
        )
