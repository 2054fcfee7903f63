"""A model's from-scratch recipe departures (registered in `edgecnn.zoo`) applied to a fresh network."""

from __future__ import annotations

from typing import Any, Mapping

import torch


def head_layer(model: torch.nn.Module) -> torch.nn.Module | None:
    """The last Conv2d or Linear layer in module order: the classifier of every zoo model."""
    last = None
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            last = module
    return last


def _set_all(model: torch.nn.Module, kind: type, attribute: str, value: float) -> None:
    for module in model.modules():
        if isinstance(module, kind):
            setattr(module, attribute, float(value))


def apply_recipe_init(model: torch.nn.Module, recipe: Mapping[str, Any]) -> list[str]:
    """Apply a recipe's from-scratch init departures to `model` in place; the changes, described."""
    changes = []
    head = head_layer(model)
    if head is not None and recipe.get("head_init") == "kaiming":
        torch.nn.init.kaiming_normal_(head.weight, mode="fan_in", nonlinearity="relu")
        changes.append("head_init=kaiming")
    if head is not None and "head_bias" in recipe:
        if head.bias is None:
            raise ValueError(f"recipe head_bias set for a model whose head has no bias: {type(head).__name__}")
        torch.nn.init.constant_(head.bias, float(recipe["head_bias"]))
        changes.append(f"head_bias={recipe['head_bias']}")
    if "dropout" in recipe:
        _set_all(model, torch.nn.Dropout, "p", recipe["dropout"])
        changes.append(f"dropout={recipe['dropout']}")
    if "bn_momentum" in recipe:
        _set_all(model, torch.nn.modules.batchnorm._BatchNorm, "momentum", recipe["bn_momentum"])
        changes.append(f"bn_momentum={recipe['bn_momentum']}")
    return changes
