"""Where a model comes from: a zoo name or an edgecnn checkpoint (edgecnn.checkpoint.load_model), or a
foreign source: `timm:NAME`, `torchvision:NAME`, `FILE.py:FUNCTION`, `package.module:FUNCTION`, `FILE.pt2`,
a TorchScript file or `FILE.onnx`. Each gives the same LoadedModel: the model and its preprocessing (an ONNX
file gives an OnnxSource, which reads the same and converts to torch only when a target asks).

- parse: what a SOURCE string names (torch-free)
- stated: --input-size/--resize/--mean/--std/--channels/--classes, checked, into a PreprocessSpec
- libraries: timm and torchvision classifiers as ModelSpecs, their configs' preprocessing
- files: factories, torch.export programs, TorchScript
- model: the LoadedModel of a foreign source (the probe that proves it takes one image tensor)
- onnx_file, onnx_graph: FILE.onnx, its ONNX Runtime reference, its normalised graph and onnx2torch module
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.errors import BadInputError
from edgecnn.sources.parse import ONNX, SourceRef, parse_source, unusable_source
from edgecnn.sources.stated import StatedPreprocess


def is_foreign(source: str | Path) -> bool:
    """True when `source` is not a zoo name or an edgecnn checkpoint."""
    return parse_source(source) is not None


def source_name(source: str | Path) -> str | None:
    """A short model name for a foreign source (bundle folders use it); None for zoo names and checkpoints."""
    ref = parse_source(source)
    return ref.name if ref is not None else None


def load_source(source: str | Path, *, weights: str | None = None, state_dict: str | Path | None = None,
                num_classes: int | None = None, stated: StatedPreprocess | None = None,
                need_normalization: bool = True):
    """Load any SOURCE as a LoadedModel (eval mode, CPU), the one entry point for commands that take a model.

    need_normalization=False lets a command that only looks at the architecture (info) skip --mean/--std.
    """
    stated = stated or StatedPreprocess()
    ref = parse_source(source)
    if ref is None:
        problem = unusable_source(source)
        if problem is not None:
            raise BadInputError(problem)
        extra = [flag for flag in stated.given() if flag != "--input-size"]
        if extra:
            raise BadInputError(f"{', '.join(extra)} describe a foreign model (timm:, torchvision:, FILE.py:FUNCTION, "
                                ".pt2, TorchScript, .onnx); a zoo name or checkpoint brings its own preprocessing")
        from edgecnn.checkpoint import load_model

        return load_model(source, weights=weights, state_dict=state_dict, num_classes=num_classes)
    if ref.kind == ONNX:
        from edgecnn.sources.onnx_file import load_onnx as load
    else:
        from edgecnn.sources.model import load_foreign as load
    loaded = load(ref, weights=weights, state_dict=state_dict, num_classes=num_classes, stated=stated,
                  need_normalization=need_normalization)
    from edgecnn.sources.replay import replay_record

    # How verify loads it again as the live reference (the manifest's model.replay).
    loaded.provenance["replay"] = replay_record(ref, weights=weights, state_dict=state_dict,
                                                input_shape=loaded.preprocess.input_shape)
    return loaded


__all__ = ["SourceRef", "StatedPreprocess", "is_foreign", "load_source", "parse_source", "source_name"]
