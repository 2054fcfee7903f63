"""`timm:NAME` and `torchvision:NAME`: any classifier of those libraries, as a ModelSpec the zoo's weight
loading already understands (published weights from the caches, offline refusals, --state-dict), plus
the input its config describes."""

from __future__ import annotations

import difflib
import math

from edgecnn.errors import BadInputError, UnknownModelError, require
from edgecnn.sources.parse import TIMM, TORCHVISION
from edgecnn.sources.stated import Defaults
from edgecnn.zoo.registry import ModelSpec

# A foreign model is no zoo family; the manifest and the report show this instead.
FOREIGN_FAMILY = "external"


def library_spec(kind: str, name: str) -> ModelSpec:
    """The ModelSpec of a timm or torchvision classifier; an unknown name suggests close ones."""
    if not name:
        raise BadInputError(f"{kind}: needs a model name, e.g. {kind}:{'mobilenetv3_large_100' if kind == TIMM else 'mnasnet1_0'}")
    return _timm_spec(name) if kind == TIMM else _torchvision_spec(name)


def library_defaults(kind: str, spec: ModelSpec, model) -> Defaults:
    """The input the library's config describes: size, resize (from crop_pct), mean, std."""
    if kind == TIMM:
        return _timm_defaults(model)
    return _torchvision_defaults(spec)


def _unknown(kind: str, name: str, names: list[str]) -> UnknownModelError:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(f'{kind}:{c}' for c in close)}?" if close else ""
    return UnknownModelError(f"unknown {kind} classifier {name!r}{hint}")


def _timm_spec(name: str) -> ModelSpec:
    timm = require("timm", "torch", "timm: sources")
    if not timm.is_model(name):
        raise _unknown(TIMM, name, timm.list_models())

    def build(num_classes: int = 1000):
        return timm.create_model(name, pretrained=False, num_classes=num_classes)

    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    has_weights = cfg is not None and bool(getattr(cfg, "hf_hub_id", None) or getattr(cfg, "url", None))
    return ModelSpec(name=name, family=FOREIGN_FAMILY, builder=build, input_size=(3, 224, 224), min_size=1,
                     source=TIMM, reference=f"timm {name}", weights=f"timm:{name}" if has_weights else None)


def _torchvision_spec(name: str) -> ModelSpec:
    torchvision = require("torchvision", "torch", "torchvision: sources")
    names = torchvision.models.list_models(module=torchvision.models)  # classifiers only
    if name not in names:
        raise _unknown(TORCHVISION, name, names)

    def build(num_classes: int = 1000):
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)

    weights = None
    try:
        enum = torchvision.models.get_model_weights(name)
        member = enum.DEFAULT
        weights = f"torchvision:{enum.__name__}.{member.name}"
    except (ValueError, KeyError, AttributeError):  # a builder without published weights
        pass
    return ModelSpec(name=name, family=FOREIGN_FAMILY, builder=build, input_size=(3, 224, 224), min_size=1,
                     source=TORCHVISION, reference=f"torchvision {name}", weights=weights)


def _timm_defaults(model) -> Defaults:
    from timm.data import resolve_model_data_config

    config = resolve_model_data_config(model)
    channels, height, width = config["input_size"]
    size = int(height) if height == width else None  # a non-square model needs --input-size
    crop_pct = float(config.get("crop_pct") or 0.875)
    return Defaults(input_size=size, resize=math.floor(size / crop_pct) if size else None,
                    mean=tuple(config["mean"]), std=tuple(config["std"]), channels=int(channels),
                    notes={"interpolation": config.get("interpolation"), "crop_pct": crop_pct})


def _torchvision_defaults(spec: ModelSpec) -> Defaults:
    import torchvision

    if spec.weights is None:
        return Defaults()
    transforms = torchvision.models.get_weight(spec.weights.partition(":")[2]).transforms()
    crop, resize = getattr(transforms, "crop_size", None), getattr(transforms, "resize_size", None)
    mean, std = getattr(transforms, "mean", None), getattr(transforms, "std", None)
    if not crop or mean is None or std is None:
        return Defaults()  # not an image-classification transform: the flags must say it all
    interpolation = getattr(transforms, "interpolation", None)
    return Defaults(input_size=int(crop[0]), resize=int(resize[0]) if resize else None, mean=tuple(mean),
                    std=tuple(std), notes={"interpolation": getattr(interpolation, "value", interpolation)})
