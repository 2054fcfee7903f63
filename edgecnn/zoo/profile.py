"""Per-layer parameters and multiply-adds, counted with forward hooks.

Convention (the one torchvision's model tables, thop and the papers use): one multiply-add (MAC)
is one multiplication plus one addition; only convolutions and fully connected layers are counted
(they are >99 % of the work); batch norm, activations, pooling and element-wise adds count zero.
Numbers are per image (batch 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class LayerStat:
    name: str
    type: str
    output_shape: list[int]
    params: int
    macs: int


@dataclass
class ModelProfile:
    input_size: list[int]  # [C, H, W]
    layers: list[LayerStat] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    total_macs: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def layer_macs(module, output) -> int:
    """Multiply-adds of one call of a conv or linear layer, per image."""
    import torch.nn as nn

    if not hasattr(output, "shape") or output.dim() == 0:
        return 0
    per_image = output.numel() // max(1, output.shape[0])
    if isinstance(module, nn.modules.conv._ConvNd):
        kernel = 1
        for k in module.kernel_size:
            kernel *= k
        if isinstance(module, nn.modules.conv._ConvTransposeNd):
            # each input element is spread over the kernel: count by input instead
            return 0
        return per_image * (module.in_channels // module.groups) * kernel
    if isinstance(module, nn.Linear):
        return per_image * module.in_features
    return 0


def _leaf_modules(model):
    for name, module in model.named_modules():
        if name and next(module.children(), None) is None:
            yield name, module


class _LayerCounter:
    """Forward hooks that record one LayerStat per shown layer as the model runs."""

    def __init__(self):
        self.rows: list[LayerStat] = []
        self.seen: set[int] = set()  # a module called twice (torchvision reuses ReLUs) owns its params once
        self.composite_macs: dict[str, int] = {}

    def row_hook(self, name):
        def hook(module, _inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            first_call = id(module) not in self.seen
            self.seen.add(id(module))
            self.rows.append(
                LayerStat(
                    name=name,
                    type=type(module).__name__,
                    output_shape=list(out.shape[1:]) if hasattr(out, "shape") else [],
                    params=sum(p.numel() for p in module.parameters()) if first_call else 0,
                    macs=layer_macs(module, out) + self.composite_macs.pop(name, 0),
                )
            )

        return hook

    def inner_hook(self, owner):
        def hook(module, _inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            self.composite_macs[owner] = self.composite_macs.get(owner, 0) + layer_macs(module, out)

        return hook

    def attach(self, model) -> list:
        """Hook every layer to show; the hook handles.

        One row per leaf layer, and one per composite layer that owns parameters itself or asks to
        be shown whole (LeNet's C3 connection table): its inner convs add their MACs to its row.
        """
        handles = []
        composites: list[str] = []
        for name, module in model.named_modules():
            if not name:
                continue
            owner = next((c for c in composites if name.startswith(c + ".")), None)
            if owner is not None:
                handles.append(module.register_forward_hook(self.inner_hook(owner)))
                continue
            is_leaf = next(module.children(), None) is None
            owns_params = any(True for _ in module.parameters(recurse=False))
            if not is_leaf and (owns_params or getattr(module, "profile_as_layer", False)):
                composites.append(name)
            if is_leaf or name in composites:
                handles.append(module.register_forward_hook(self.row_hook(name)))
        return handles


def profile_model(model, input_size: tuple[int, int, int]) -> ModelProfile:
    """Run one image of `input_size` (C, H, W) through `model` and count every layer call."""
    import torch

    counter = _LayerCounter()
    handles = counter.attach(model)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            device = next(model.parameters(), torch.zeros(())).device
            model(torch.zeros(1, *input_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    params = {id(p): p for p in model.parameters()}
    return ModelProfile(
        input_size=list(input_size),
        layers=counter.rows,
        total_params=sum(p.numel() for p in params.values()),
        trainable_params=sum(p.numel() for p in params.values() if p.requires_grad),
        total_macs=sum(row.macs for row in counter.rows),
    )


def profile_spec(spec, num_classes: int = 1000, side: int | None = None) -> ModelProfile:
    """Profile a registered model without allocating its weights.

    The network is built on PyTorch's "meta" device: shapes propagate, no memory is touched and
    no initialiser runs, so profiling VGG-19 costs milliseconds instead of seconds.
    """
    import torch

    side = spec.input_size[1] if side is None else side
    with torch.device("meta"):
        model = spec.build(num_classes=num_classes)
    return profile_model(model, (spec.channels, side, side))
