"""A .tflite file's ops named by the PyTorch modules they compute (what explain and the search show)."""

from __future__ import annotations

from edgecnn.quantize import Layer


def weighted_modules(model) -> dict[str, str]:
    """{module path: type name} of the model's convolutions and linears (what int8 quantizes)."""
    from torch import nn

    return {name: type(m).__name__ for name, m in model.named_modules()
            if name and isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))}


def layer_names(model, ops) -> dict[str, str]:
    """{tensor name: module path} for the file's ops: what `edgecnn explain` shows without the model.

    By litert-torch's call paths first; the convolutions and linears it cannot name (the classifier's
    output is renamed `serving_default_...`) by their order, where the file's and the model's line up."""
    from edgecnn.backends.tflite.sensitivity import module_keys, resolve

    weighted = weighted_modules(model)
    keys = module_keys(model)
    names = {op.node: found for op in ops if (found := resolve(op.node, keys, set(weighted)))}
    ordered = [op for op in ops if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    if len(ordered) == len(weighted):
        for op, module in zip(ordered, weighted):
            names.setdefault(op.node, module)
    return names


def module_layers(model, ops) -> list[Layer]:
    """The model's convolutions and linears as layers (node = module path), each with the SQNR of the
    file's op that computes it (named by litert-torch's call path, else paired in order)."""
    names = layer_names(model, ops)
    sqnr = {names[op.node]: op.sqnr_db for op in ops if op.node in names}
    return [Layer(node=name, op=kind, user_name=name, sqnr_db=sqnr.get(name))
            for name, kind in weighted_modules(model).items()]
