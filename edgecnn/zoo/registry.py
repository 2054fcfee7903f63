"""The model registry: one registration per variant, duplicates refused, aliases resolved loudly.

Modelled on torchvision's `models/_api.py` and timm's `_registry.py`: a builder function is
registered with a small frozen spec that says what the model needs (input size, the smallest input
it accepts, normalization) and where its published weights come from.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable, Literal

from edgecnn.errors import RegistryError, UnknownModelError

Family = Literal["lightweight", "baseline"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """What edgecnn knows about one registered architecture variant."""

    name: str
    family: Family
    builder: Callable[..., object] = field(repr=False, compare=False)
    input_size: tuple[int, int, int]  # default (C, H, W)
    min_size: int  # smallest H (= W) the network accepts
    source: str  # "torchvision", "timm" or "edgecnn" (written here from the paper)
    reference: str  # the paper
    # Published weights: "torchvision:<WeightsEnum.MEMBER>" or "timm:<model.tag>", or None.
    weights: str | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    @property
    def channels(self) -> int:
        return self.input_size[0]

    def build(self, num_classes: int = 1000):
        """Build the network with freshly initialised weights and `num_classes` outputs."""
        if num_classes < 1:
            raise UnknownModelError(f"num_classes must be at least 1, got {num_classes}")
        return self.builder(num_classes=num_classes)

    def input_size_for(self, data_size: int) -> int:
        """The rule used everywhere: the larger of the data's size and the model's minimum."""
        return max(int(data_size), self.min_size)


_MODELS: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}


def register_model(
    name: str,
    *,
    family: Family,
    input_size: tuple[int, int, int],
    min_size: int,
    source: str,
    reference: str,
    weights: str | None = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
):
    """Decorator: register `builder(num_classes=...)` under `name`. A duplicate name is refused."""

    def decorate(builder):
        add_spec(
            ModelSpec(
                name=name,
                family=family,
                builder=builder,
                input_size=tuple(input_size),
                min_size=min_size,
                source=source,
                reference=reference,
                weights=weights,
                mean=tuple(mean),
                std=tuple(std),
            )
        )
        return builder

    return decorate


def add_spec(spec: ModelSpec) -> ModelSpec:
    """Register a ready spec. Refuses names already taken by a model or an alias."""
    if spec.family not in ("lightweight", "baseline"):
        raise RegistryError(f"{spec.name}: family must be 'lightweight' or 'baseline', got {spec.family!r}")
    if spec.name in _MODELS or spec.name in _ALIASES:
        raise RegistryError(f"model name {spec.name!r} is already registered")
    if len(spec.input_size) != 3 or spec.min_size > spec.input_size[1]:
        raise RegistryError(f"{spec.name}: bad input_size {spec.input_size} / min_size {spec.min_size}")
    _MODELS[spec.name] = spec
    return spec


def unregister_model(name: str) -> None:
    """Remove a registration (tests use this to clean up after themselves)."""
    _MODELS.pop(name, None)
    for alias in [a for a, target in _ALIASES.items() if target == name]:
        del _ALIASES[alias]


def register_alias(alias: str, target: str) -> None:
    """Make `alias` resolve to the registered model `target`."""
    if alias in _MODELS or alias in _ALIASES:
        raise RegistryError(f"alias {alias!r} is already taken")
    if target not in _MODELS:
        raise RegistryError(f"alias {alias!r} points to unknown model {target!r}")
    _ALIASES[alias] = target


def resolve_name(name: str) -> str:
    """The registered name for `name` (a name or an alias); unknown names suggest the closest."""
    key = name.strip().lower().replace("-", "_")
    if key in _MODELS:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    candidates = list(_MODELS) + list(_ALIASES)
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.5)
    if not close:
        close = [c for c in candidates if c.startswith(key[:4])][:3]
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise UnknownModelError(f"unknown model {name!r}{hint} (`edgecnn models` lists them all)")


def get_spec(name: str) -> ModelSpec:
    """The spec of a model by name or alias."""
    return _MODELS[resolve_name(name)]


def list_specs() -> list[ModelSpec]:
    """Every registered model, in registration order."""
    return list(_MODELS.values())


def aliases_of(name: str) -> list[str]:
    """The aliases that resolve to `name`."""
    return sorted(a for a, target in _ALIASES.items() if target == name)


def build_model(name: str, num_classes: int = 1000):
    """Build a registered model (by name or alias) with fresh weights."""
    return get_spec(name).build(num_classes=num_classes)
