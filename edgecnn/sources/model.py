"""A foreign source loaded into the LoadedModel every command takes: the model in eval mode, its stated
(or library-configured) preprocessing, its class names and where it came from."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

import edgecnn
from edgecnn.checkpoint import (
    LoadedModel, imagenet_class_names, infer_num_classes, initial_weights, load_weights_into, normalize_state_dict,
    torch_load,
)
from edgecnn.errors import BadInputError
from edgecnn.sources.files import _first_line, load_file_model, load_state_dict_into
from edgecnn.sources.libraries import FOREIGN_FAMILY, library_defaults, library_spec
from edgecnn.sources.parse import FILE_FACTORY, LIBRARY_KINDS, MODULE_FACTORY, SourceRef
from edgecnn.sources.stated import Defaults, StatedPreprocess, build_preprocess, read_class_list
from edgecnn.zoo.registry import ModelSpec


def load_foreign(ref: SourceRef, *, weights: str | None, state_dict: str | Path | None, num_classes: int | None,
                 stated: StatedPreprocess, need_normalization: bool = True) -> LoadedModel:
    """Load a timm/torchvision classifier, a factory's model, a .pt2 or a TorchScript file."""
    classes = read_class_list(stated.classes) if stated.classes is not None else None
    if ref.kind in LIBRARY_KINDS:
        spec = library_spec(ref.kind, ref.target)
        count = num_classes or (len(classes) if classes else None)
        model, names, provenance = _library_weights(spec, weights, state_dict, count)
        defaults = library_defaults(ref.kind, spec, model)
    else:
        model, provenance = _file_model(ref, weights, state_dict)
        spec, names, defaults = None, None, Defaults()
    preprocess = build_preprocess(stated, defaults, what=ref.text, need_normalization=need_normalization)
    model.eval()
    outputs = probe_outputs(model, preprocess.input_shape, what=ref.text)
    if num_classes is not None and num_classes != outputs:
        raise BadInputError(f"{ref.text} has {outputs} outputs, not the {num_classes} classes asked for")
    class_names = class_names_for(classes, names, outputs, stated.classes)
    if spec is None:
        spec = ModelSpec(name=ref.name, family=FOREIGN_FAMILY, builder=_fixed_builder(ref),
                         input_size=preprocess.input_shape, min_size=preprocess.size, source=ref.kind,
                         reference=ref.text)
    provenance.update(arch=spec.name, origin=ref.text, stated=stated.given(), **defaults.notes,
                      torch_version=str(torch.__version__), edgecnn_version=edgecnn.__version__)
    return LoadedModel(model=model, spec=spec, preprocess=replace(preprocess, class_names=class_names),
                       class_names=class_names, provenance=provenance)


def _library_weights(spec: ModelSpec, weights: str | None, state_dict, count: int | None):
    """(model, class names or None, provenance) of a timm/torchvision classifier with the weights asked for."""
    if state_dict is not None:
        if weights is not None:
            raise BadInputError("pass either --weights or --state-dict, not both")
        file = Path(state_dict).expanduser()
        if not file.is_file():
            raise BadInputError(f"--state-dict: no such file {file}")
        state = normalize_state_dict(torch_load(file, what="state dict"))
        model = spec.build(infer_num_classes(spec, state))
        load_weights_into(model, state, arch=spec.name, origin=str(file))
        return model, None, {"source": spec.source, "weights": f"file:{file}", "accuracy_meaningful": True}
    choice = weights or ("imagenet" if spec.weights else "random")
    if choice == "random":
        return spec.build(count or 1000), None, {"source": spec.source, "weights": "random",
                                                 "accuracy_meaningful": False}
    if choice == "imagenet" and spec.weights is None:
        raise BadInputError(f"{spec.source}:{spec.name} has no published weights: pass --weights random or FILE")
    model, label = initial_weights(spec, 1000, choice)
    names = imagenet_class_names(spec) if choice == "imagenet" else None
    return model, names, {"source": spec.source, "weights": label, "accuracy_meaningful": True}


def _file_model(ref: SourceRef, weights: str | None, state_dict):
    """(model, provenance) of a factory, .pt2 or TorchScript source."""
    if weights is not None:
        raise BadInputError(f"--weights goes with a zoo, timm: or torchvision: name; {ref.text} brings its own "
                            "weights (pass --state-dict FILE to load others into a factory's model)")
    if state_dict is not None and ref.kind not in (FILE_FACTORY, MODULE_FACTORY):
        raise BadInputError(f"--state-dict goes with a factory (FILE.py:FUNCTION); {ref.text} holds its weights")
    model = load_file_model(ref)
    label = load_state_dict_into(model, state_dict, name=ref.name) if state_dict is not None else ref.kind
    provenance = {"source": ref.kind, "weights": label, "accuracy_meaningful": True}
    if ref.kind not in (MODULE_FACTORY,):
        provenance["file"] = str(Path(ref.target).expanduser().resolve())
    return model, provenance


def probe_outputs(model, input_shape: tuple[int, int, int], *, what: str) -> int:
    """Run zero batches of 2 and 1 through the model: its class count, or one line on why it is no classifier."""
    shape = tuple(input_shape)
    with torch.no_grad():
        try:
            output = model(torch.zeros(2, *shape))
        except Exception as exc:  # noqa: BLE001 - whatever the model raises, the fix is the user's
            failure = exc
        else:
            return _logits_width(output, 2, what)
        try:
            model(torch.zeros(1, *shape))
        except Exception:  # noqa: BLE001
            raise BadInputError(
                f"{what} does not take one image tensor of shape (N, {', '.join(map(str, shape))}): "
                f"{_first_line(failure)} (state the input with --input-size/--channels; models with several "
                "inputs cannot be exported)") from None
    raise BadInputError(f"{what} runs on a batch of 1 but not of 2: save it with a dynamic batch axis "
                        "(torch.export: dynamic_shapes={'x': {0: torch.export.Dim('batch')}})")


def _logits_width(output, batch: int, what: str) -> int:
    if not isinstance(output, torch.Tensor):
        raise BadInputError(f"{what} returns a {type(output).__name__}, not one (N, classes) logits tensor")
    if output.ndim != 2 or output.shape[0] != batch:
        raise BadInputError(f"{what} returns a tensor of shape {tuple(output.shape)} for a batch of {batch}, "
                            "not (N, classes) logits")
    return int(output.shape[1])


def class_names_for(listed, library_names, outputs: int, file) -> tuple[str, ...]:
    """The model's class names: the stated list (checked against its outputs), the library's, else 0..N-1."""
    if listed is not None:
        if len(listed) < outputs:
            raise BadInputError(f"--classes {file} lists {len(listed)} classes but the model has {outputs} outputs")
        if len(listed) > outputs:
            raise BadInputError(f"--classes {file} lists {len(listed)} classes but the model has only {outputs} "
                                "outputs (the line number is the class index)")
        return tuple(listed)
    if library_names is not None and len(library_names) == outputs:
        return tuple(library_names)
    return tuple(str(i) for i in range(outputs))


def _fixed_builder(ref: SourceRef):
    def build(num_classes: int = 1000):
        raise BadInputError(f"{ref.text} is a fixed model: edgecnn cannot rebuild it with {num_classes} classes")

    return build
