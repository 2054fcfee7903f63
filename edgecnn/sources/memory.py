"""A model the user already holds in memory (a torch `nn.Module`), with its preprocessing stated: the
LoadedModel every export takes, without writing a factory file.

Like a factory's model, it states its input (size, mean, std, channels, classes); unlike one, nothing
can load it again later, so its bundle has no live reference to re-run: verify uses the golden logits
stored at export (PyTorch fp32 on this module), which is what a device does anyway.
"""

from __future__ import annotations

import copy
import re
from dataclasses import replace
from typing import Any, Sequence

import torch

import edgecnn
from edgecnn.checkpoint import LoadedModel
from edgecnn.errors import BadInputError
from edgecnn.sources.libraries import FOREIGN_FAMILY
from edgecnn.sources.model import class_names_for, probe_outputs
from edgecnn.sources.stated import Defaults, StatedPreprocess, build_preprocess, read_class_list
from edgecnn.zoo.registry import ModelSpec

MODULE_SOURCE = "module"  # the manifest's model.source for an in-memory module


def module_name(module: Any) -> str:
    """A bundle-friendly name from the module's class: `TinyNet` -> `tinynet`."""
    return re.sub(r"[^a-z0-9_]+", "_", type(module).__name__.lower()).strip("_") or "model"


def load_module(module: Any, *, stated: StatedPreprocess, name: str | None = None,
                class_names: Sequence[str] | None = None) -> LoadedModel:
    """A copy of `module` in eval mode on the CPU, probed for its logits width, with its stated preprocessing."""
    if not isinstance(module, torch.nn.Module):
        raise BadInputError(f"expected a torch nn.Module, got {type(module).__name__}")
    if class_names is not None and stated.classes is not None:
        raise BadInputError("pass the class names either as a list or as a classes file, not both")
    name = name or module_name(module)
    what = f"the in-memory {type(module).__name__}"
    preprocess = build_preprocess(stated, Defaults(), what=what)
    # A copy: export folds BatchNorm and quantizes, and the user's module stays theirs to train on.
    model = copy.deepcopy(module).cpu().eval()
    outputs = probe_outputs(model, preprocess.input_shape, what=what)
    listed = tuple(str(c) for c in class_names) if class_names is not None else (
        read_class_list(stated.classes) if stated.classes is not None else None)
    names = class_names_for(listed, None, outputs, stated.classes or "(class_names)")
    spec = ModelSpec(name=name, family=FOREIGN_FAMILY, builder=_fixed_builder(what), input_size=preprocess.input_shape,
                     min_size=preprocess.size, source=MODULE_SOURCE, reference=what)
    provenance = {"source": MODULE_SOURCE, "weights": "in memory", "accuracy_meaningful": True, "arch": name,
                  "origin": f"{type(module).__module__}.{type(module).__qualname__}", "stated": stated.given(),
                  "torch_version": str(torch.__version__), "edgecnn_version": edgecnn.__version__}
    return LoadedModel(model=model, spec=spec, preprocess=replace(preprocess, class_names=names),
                       class_names=names, provenance=provenance)


def _fixed_builder(what: str):
    def build(num_classes: int = 1000):
        raise BadInputError(f"{what} is a fixed model: edgecnn cannot rebuild it with {num_classes} classes")

    return build


__all__ = ["MODULE_SOURCE", "load_module", "module_name"]
