"""The model registry: one registration per variant, duplicates refused, aliases resolved loudly.

Modelled on torchvision's `models/_api.py` and timm's `_registry.py`: a builder function is
registered with a small frozen spec that says what the model needs (input size, the smallest input
it accepts, normalization) and where its published weights come from.
"""

from __future__ import annotations

import difflib
from collections.abc import MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Literal, Mapping

from edgecnn.errors import RegistryError, UnknownModelError

Family = Literal["lightweight", "baseline"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# What a model's training recipe may change (edgecnn.train applies them): "optimizer" and "lr"
# (used together unless --optimizer/--lr override them), "epochs" (when --epochs is not given),
# and, for a from-scratch run only, "head_bias" (constant bias of the last conv/linear layer),
# "head_init" ("kaiming": Kaiming-normal weights for it), "dropout" (p of every Dropout layer) and
# "bn_momentum" (of every BatchNorm). Initial values and rates only, never the architecture, so
# published and user weights still load into the same builder.
RECIPE_KEYS = ("optimizer", "lr", "epochs", "head_bias", "head_init", "dropout", "bn_momentum")


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
    # Departures from the default training recipe ({} = the default); keys from RECIPE_KEYS.
    recipe: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self):
        # Lists from a caller (or a TOML) become the tuples the spec is compared and hashed by.
        object.__setattr__(self, "input_size", tuple(self.input_size))
        object.__setattr__(self, "mean", tuple(self.mean))
        object.__setattr__(self, "std", tuple(self.std))
        if self.recipe is None:
            object.__setattr__(self, "recipe", {})

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


def register_model(name: str, **spec: Any):
    """Decorator: register `builder(num_classes=...)` under `name`. A duplicate name is refused.

    `spec` holds ModelSpec's other fields (family, input_size, min_size, reference, ...): the field list
    is written once, on ModelSpec. A decorated builder is a model written here, so `source` defaults to
    "edgecnn".
    """

    def decorate(builder):
        add_spec(ModelSpec(name=name, builder=builder, **{"source": "edgecnn", **spec}))
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
    _check_recipe(spec.name, spec.recipe)
    _MODELS[spec.name] = spec
    return spec


def _check_recipe(name: str, recipe: Mapping[str, Any]) -> None:
    if not isinstance(recipe, Mapping):
        raise RegistryError(f"{name}: recipe must be a mapping, got {type(recipe).__name__}")
    unknown = sorted(set(recipe) - set(RECIPE_KEYS))
    if unknown:
        raise RegistryError(f"{name}: unknown recipe key(s) {', '.join(unknown)}; known: {', '.join(RECIPE_KEYS)}")


def set_recipe(name: str, recipe: Mapping[str, Any]) -> ModelSpec:
    """Replace a registered model's training recipe (a new frozen spec in the same place)."""
    spec = get_spec(name)
    _check_recipe(spec.name, recipe)
    _MODELS[spec.name] = replace(spec, recipe=dict(recipe))
    return _MODELS[spec.name]


class RecipeTable(MutableMapping):
    """The registered recipes as a mapping {model name: recipe}, for models that depart from the default.

    A live view of the registry: setting an entry replaces that model's recipe, deleting one
    restores the default recipe.
    """

    def __getitem__(self, name: str) -> Mapping[str, Any]:
        spec = _MODELS.get(name)
        if spec is None or not spec.recipe:
            raise KeyError(name)
        return spec.recipe

    def __setitem__(self, name: str, recipe: Mapping[str, Any]) -> None:
        set_recipe(name, recipe)

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        set_recipe(name, {})

    def __iter__(self) -> Iterator[str]:
        return iter([name for name, spec in _MODELS.items() if spec.recipe])

    def __len__(self) -> int:
        return sum(1 for spec in _MODELS.values() if spec.recipe)


MODEL_RECIPES = RecipeTable()


def recipe_of(name: str) -> Mapping[str, Any]:
    """The training recipe of a model by name or alias ({} for the default recipe)."""
    return get_spec(name).recipe


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
