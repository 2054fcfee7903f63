"""`FILE.onnx` as a source: a classifier graph from any framework (one NCHW image input, one logits output).

Its reference is the original file in ONNX Runtime fp32, so checking it needs no torch. Targets that read
ONNX get the user's graph, normalised (onnx.checker, onnxslim, names and a dynamic batch axis where safe);
targets that need a torch module get one from onnx2torch, converted only when they ask for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

import edgecnn
from edgecnn.errors import BadInputError, require
from edgecnn.preprocess import PreprocessSpec
from edgecnn.sources.parse import ONNX as ONNX_KIND, SourceRef
from edgecnn.sources.stated import Defaults, StatedPreprocess, build_preprocess, read_class_list

# Names every runner and the TensorRT bundle parts read edgecnn's graphs by.
INPUT_NAME, OUTPUT_NAME, BATCH_DIM = "input", "logits", "batch"
_PROBE_BATCH = 2


class TorchConversionError(BadInputError):
    """onnx2torch cannot turn the graph into a torch module (an op it lacks, a pattern it cannot map)."""


@dataclass(frozen=True)
class GraphInput:
    """What the graph says about its one input: names and (N, C, H, W), None where dynamic."""

    input_name: str
    output_name: str
    dims: tuple[int | None, int | None, int | None, int | None]
    opset: int

    @property
    def batch(self) -> int | None:
        return self.dims[0]


@dataclass
class OnnxSource:
    """A loaded ONNX classifier: what every command reads of a LoadedModel, plus the file itself."""

    path: Path
    spec: Any  # edgecnn.zoo.ModelSpec
    preprocess: PreprocessSpec
    class_names: tuple[str, ...]
    graph: GraphInput
    provenance: dict = field(default_factory=dict)
    _torch_model: Any = None

    name = property(lambda self: self.spec.name)
    num_classes = property(lambda self: len(self.class_names))
    accuracy_meaningful = property(lambda self: bool(self.provenance.get("accuracy_meaningful", False)))
    from_checkpoint = property(lambda self: False)
    checkpoint = property(lambda self: None)

    @property
    def runtime(self) -> str:
        """The runtime the original file is the reference in (the registry's reader of .onnx files)."""
        from edgecnn.backends import runtime_for_path

        return runtime_for_path(self.path)

    @property
    def reference_label(self) -> str:
        return f"{self.runtime} fp32 (the original ONNX file)"

    @property
    def fixed_batch(self) -> int | None:
        """The batch the graph is fixed to, when normalising could not make it dynamic (set by write_onnx)."""
        return self.provenance.get("fixed_batch")

    def reference_logits(self, inputs: np.ndarray) -> np.ndarray:
        """fp32 logits of the original file, through the same Runner bench and verify use."""
        from edgecnn.inference import run_logits

        logits, _ = run_logits(self.runtime, self.path, inputs, threads=None, batch=self.graph.batch or 32,
                               options={"input_shape": list(self.preprocess.input_shape)})
        return logits

    @property
    def model(self):
        """The graph as a torch module (onnx2torch), converted once, when a torch-only target asks."""
        if self._torch_model is None:
            from edgecnn.sources.onnx_graph import to_torch

            self._torch_model = to_torch(self.path, what=str(self.path), graph=self.graph,
                                         input_shape=self.preprocess.input_shape)
        return self._torch_model

    def write_onnx(self, path: Path) -> Any:
        """The user's graph, normalised, at `path`; an OnnxExportResult-like record of what changed."""
        from edgecnn.sources.onnx_graph import normalise

        result = normalise(self.path, path, graph=self.graph, input_shape=self.preprocess.input_shape,
                           reference=self.reference_logits)
        if result.fixed_batch is not None:
            self.provenance["fixed_batch"] = result.fixed_batch
        return result


def read_model(path: Path, *, what: str):
    """The ModelProto of `path`, or one line on why it is none."""
    onnx = require("onnx", "export", "reading ONNX models")
    if not path.is_file():
        raise BadInputError(f"{what}: no such ONNX file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, onnx its own types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise BadInputError(f"{what} is not an ONNX model: {first}") from None
    if not model.graph.node:
        raise BadInputError(f"{what} is not an ONNX model (no graph nodes)")
    return model


def graph_input(model, *, what: str) -> GraphInput:
    """The one NCHW input and one output of a classifier graph; anything else refused in one line."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise BadInputError(f"{what} has {len(inputs)} inputs ({names}); edgecnn takes a classifier with one "
                            "NCHW image input")
    outputs = list(model.graph.output)
    if len(outputs) != 1:
        raise BadInputError(f"{what} has {len(outputs)} outputs; edgecnn takes one (N, classes) logits output")
    tensor = inputs[0].type.tensor_type
    if not tensor.HasField("shape") or len(tensor.shape.dim) != 4:
        rank = len(tensor.shape.dim) if tensor.HasField("shape") else "unknown"
        raise BadInputError(f"{what}'s input {inputs[0].name!r} has rank {rank}, not 4: edgecnn takes one NCHW "
                            "image tensor")
    if tensor.elem_type != 1:  # TensorProto.FLOAT
        raise BadInputError(f"{what}'s input {inputs[0].name!r} is not float32: edgecnn feeds normalised "
                            "float32 images")
    dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return GraphInput(inputs[0].name, outputs[0].name, dims, int(opset))


def _defaults(graph: GraphInput, stated: StatedPreprocess, what: str) -> Defaults:
    """What the graph fixes: its channels and, when static, its square side."""
    _, channels, height, width = graph.dims
    if channels is None and stated.channels is None:
        raise BadInputError(f"{what}'s input has a dynamic channel axis: pass --channels 1|3")
    if channels is not None and stated.channels is not None and stated.channels != channels:
        raise BadInputError(f"--channels {stated.channels} but {what} takes {channels} channel(s)")
    if (height is None) != (width is None) or height is not None and height != width:
        raise BadInputError(f"{what} takes {height or '?'} x {width or '?'} inputs; edgecnn takes square images "
                            "(a dynamic or equal height and width)")
    if height is None and stated.input_size is None:
        raise BadInputError(f"{what}'s input height and width are dynamic: pass --input-size S (the square side "
                            "it was trained at)")
    if height is not None and stated.input_size not in (None, height):
        raise BadInputError(f"--input-size {stated.input_size} but {what} takes {height} x {width} inputs "
                            "(drop --input-size)")
    return Defaults(input_size=height, channels=channels or stated.channels or 3,
                    notes={"onnx_input": [d if d is not None else "dynamic" for d in graph.dims]})


def load_onnx(ref: SourceRef, *, weights: str | None, state_dict, num_classes: int | None,
              stated: StatedPreprocess, need_normalization: bool = True) -> OnnxSource:
    """Load `FILE.onnx` with its stated preprocessing; probe it once in ONNX Runtime for its class count."""
    from edgecnn.sources.libraries import FOREIGN_FAMILY
    from edgecnn.zoo.registry import ModelSpec

    if weights is not None or state_dict is not None:
        raise BadInputError(f"--weights/--state-dict do not go with {ref.text}: an ONNX file holds its weights")
    path = Path(ref.target).expanduser()
    graph = graph_input(read_model(path, what=ref.text), what=ref.text)
    classes = read_class_list(stated.classes) if stated.classes is not None else None
    preprocess = build_preprocess(stated, _defaults(graph, stated, ref.text), what=ref.text,
                                  need_normalization=need_normalization)
    spec = ModelSpec(name=ref.name, family=FOREIGN_FAMILY, builder=_fixed_builder(ref),
                     input_size=preprocess.input_shape, min_size=preprocess.size, source=ONNX_KIND,
                     reference=ref.text)
    provenance = {"source": ONNX_KIND, "weights": ONNX_KIND, "accuracy_meaningful": True, "arch": spec.name,
                  "origin": ref.text, "file": str(path.resolve()), "stated": stated.given(),
                  "onnx_input": [d if d is not None else "dynamic" for d in graph.dims],
                  "onnx_opset": graph.opset, "edgecnn_version": edgecnn.__version__}
    source = OnnxSource(path=path, spec=spec, preprocess=preprocess, class_names=(), graph=graph,
                        provenance=provenance)
    outputs = _probe_outputs(source, what=ref.text)
    if num_classes is not None and num_classes != outputs:
        raise BadInputError(f"{ref.text} has {outputs} outputs, not the {num_classes} classes asked for")
    names = _class_names(classes, outputs, stated.classes)
    source.class_names = names
    source.preprocess = replace(preprocess, class_names=names)
    return source


def _probe_outputs(source: OnnxSource, *, what: str) -> int:
    """Run zeros through the original file: its class count, or one line on why it is no classifier."""
    batch = source.graph.batch or _PROBE_BATCH
    try:
        logits = source.reference_logits(np.zeros((batch, *source.preprocess.input_shape), np.float32))
    except BadInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the runtime raises, the graph is the cause
        raise BadInputError(f"{what} does not run on a (N, {', '.join(map(str, source.preprocess.input_shape))}) "
                            f"input: {(str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]}") from None
    if logits.ndim != 2 or logits.shape[0] != batch:
        raise BadInputError(f"{what} returns a tensor of shape {tuple(logits.shape)} for a batch of {batch}, "
                            "not (N, classes) logits")
    return int(logits.shape[1])


def _class_names(listed, outputs: int, file) -> tuple[str, ...]:
    if listed is None:
        return tuple(str(i) for i in range(outputs))
    if len(listed) != outputs:
        raise BadInputError(f"--classes {file} lists {len(listed)} classes but the model has {outputs} outputs "
                            "(the line number is the class index)")
    return tuple(listed)


def _fixed_builder(ref: SourceRef):
    def build(num_classes: int = 1000):
        raise BadInputError(f"{ref.text} is a fixed model: edgecnn cannot rebuild it with {num_classes} classes")

    return build
