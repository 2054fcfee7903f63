"""State dicts: unwrapping containers, finding the classifier, loading strictly with one clear error."""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from edgecnn.errors import BadInputError

# Heads that the published ImageNet weights carry but the zoo builds without (aux_logits=False).
_AUX_PREFIXES = ("aux1.", "aux2.", "AuxLogits.")
# torchvision's DenseNet weights predate a rename ("norm.1" -> "norm1"); torchvision remaps them on
# load with this pattern, and so do we.
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def head_keys(spec) -> list[str]:
    """State-dict keys of the classifier: the ones whose shape changes with num_classes."""
    try:
        with torch.device("meta"):
            a, b = spec.build(7).state_dict(), spec.build(11).state_dict()
    except Exception:  # noqa: BLE001 - a builder that does not support meta tensors
        a, b = spec.build(7).state_dict(), spec.build(11).state_dict()
    return [k for k in a if k in b and a[k].shape != b[k].shape]


def infer_num_classes(spec, state_dict: Mapping[str, torch.Tensor]) -> int:
    """The class count a state dict was trained for, read from its classifier weights."""
    heads = head_keys(spec)
    for key in heads:
        if key in state_dict and state_dict[key].ndim >= 1:
            return int(state_dict[key].shape[0])
    raise BadInputError(
        f"the weights do not fit {spec.name}: no classifier key ({', '.join(heads) or 'none'}) found;"
        " wrong architecture?"
    )


def normalize_state_dict(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Unwrap common containers and prefixes: {'state_dict': ...}, {'model': ...}, DDP's 'module.'."""
    for key in ("state_dict", "model_state_dict", "model"):
        inner = state_dict.get(key) if isinstance(state_dict, Mapping) else None
        if isinstance(inner, Mapping):
            state_dict = inner
            break
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise BadInputError("the weights file holds no state dict (expected a mapping of names to tensors)")
    tensors = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise BadInputError("the weights file holds no tensors")
    prefix = "module."
    if all(k.startswith(prefix) for k in tensors):
        tensors = {k[len(prefix):]: v for k, v in tensors.items()}
    renamed = {}
    for key, value in tensors.items():
        match = _DENSENET_OLD_KEY.match(key)
        renamed[match.group(1) + match.group(2) if match else key] = value
    return renamed


def load_weights_into(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, arch: str,
                      skip_keys: tuple[str, ...] = (), origin: str = "the weights") -> None:
    """Load a state dict strictly; a mismatch becomes one BadInputError that says what is wrong.

    `skip_keys` are left at their fresh initialisation (the classifier when fine-tuning published
    weights on another class count).
    """
    expected = model.state_dict()
    state_dict = {k: v for k, v in state_dict.items() if k not in skip_keys}
    # Auxiliary ImageNet heads exist only in the published files: drop them when the model has none.
    state_dict = {k: v for k, v in state_dict.items() if k in expected or not k.startswith(_AUX_PREFIXES)}
    missing = [k for k in expected if k not in state_dict and k not in skip_keys]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        if len(missing) > len(expected) // 2:
            raise BadInputError(
                f"{origin} do not fit {arch}: {len(missing)} of {len(expected)} keys missing"
                f" (e.g. {missing[0]}); wrong architecture?"
            )
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) (e.g. {unexpected[0]})")
        raise BadInputError(f"{origin} do not fit {arch}: {', '.join(parts)}; wrong architecture?")
    for key, value in state_dict.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise BadInputError(
                f"{origin} do not fit {arch}: {key} is {tuple(value.shape)}, the model expects"
                f" {tuple(expected[key].shape)} (a different class count or architecture?)"
            )
    model.load_state_dict(state_dict, strict=not skip_keys)
