"""Quantization-aware distillation: a model's weights fine-tuned so its int8 version agrees with its own fp32.

Minmax int8 of EfficientNet-Lite1 flips about 1.9 % of the predictions of its fp32 model (2,000 views of 200
real photos, exact Q/DQ arithmetic); no float layer, range setting or rounding trick we measured closes that
(benchmarks/int8_methods.md). What cut it to 1.05 % (benchmarks/int8_qft.md) is letting the weights absorb the
quantization noise, no layer in float: every BatchNorm is folded into its convolution, every folded weight is
fake-quantized on the grid the runtime's quantizer will derive from it (symmetric per output channel, scale = max|w| / qmax), every tensor feeding a convolution,
a linear layer or an addition is fake-quantized with the minmax range of the calibration images, and the
weights are trained to match the fp32 model's softmax (KL divergence) on random crops and mirror images of the
*calibration* images only: the golden set the export is checked on is never seen.

The tuned weights are then snapped onto that grid and written back into a copy of the model itself (conv
weight / BN scale, BN mean for the bias), so the copy exports to the same graph, with the same node names, as
the original, and a runtime whose per-channel quantizer uses max|w| / qmax finds exactly the codes the training
saw (ONNX Runtime and TensorRT's Q/DQ, tested; PT2E's XNNPACK quantizer uses the same scale but is not wired to
it; OpenVINO's NNCF moves weights itself, by bias correction and its 7-bit fix). Each calibrates activations itself.
"""

from __future__ import annotations

import copy
import math
import operator
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from edgecnn.stages import Stage, quiet

MIN_STEPS = 20  # fewer affordable steps than this is no fine-tuning: the recipe is skipped
MAX_STEPS = 300
BATCH = 8
# Adam's steps are about the learning rate whatever the gradient, so the weights train in units of their own grid
# step (max|w| / qmax of each channel at the start): the same rate moves a depthwise filter of folded weights
# ~5 and a pointwise one of ~0.3 by the same share of a code. Measured on Lite1 (300 steps, benchmarks/int8_qft.py):
# 0.01 of a code a step first shook it (KL 0.011 -> 0.03) and ended at KL 0.0055; 0.003 fell steadily, lower.
WEIGHT_RATE = 0.003  # codes a step
BIAS_RATE = 1e-5
CALIBRATION_BATCH = 10


class DistillUnavailable(Exception):
    """Why this model cannot be distilled here (not traceable, too slow for the budget); the recipe is skipped."""


@dataclass(frozen=True)
class Grid:
    """The arithmetic the runtime will quantize to: activations "asymmetric" (uint8, zero point) or "symmetric"
    (int8, zero point 0: TensorRT), and the weight codes' bound (127: 8-bit; 64: ONNX Runtime's reduce_range)."""

    activations: str = "asymmetric"
    weight_qmax: int = 127

    def words(self) -> str:
        bits = 8 if self.weight_qmax == 127 else 7
        return f"{self.activations} activations, {bits}-bit per-channel weights"


def fake_quantized(model, grid: Grid):
    """(student, its folded layers): `model` traced with BN folded and fake quantization where int8 will be.

    The student shares its conv, linear and BN modules with `model`: `write_back` edits `model` itself.
    """
    import torch.fx as fx
    from torch import nn

    from edgecnn.quantize.fake_quant import FoldedLayer

    class Tracer(fx.Tracer):
        def is_leaf_module(self, m, name):
            return isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) or super().is_leaf_module(m, name)

    try:
        graph = Tracer().trace(model)
    except Exception as error:  # noqa: BLE001 - any tracing failure means: not this recipe, said why
        raise DistillUnavailable(f"the model does not trace with torch.fx ({type(error).__name__}: "
                                 f"{str(error).splitlines()[0][:120]})") from error
    student = fx.GraphModule(model, graph)
    modules, folded = dict(student.named_modules()), []
    for node in list(student.graph.nodes):
        layer = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(layer, (nn.Conv2d, nn.Linear)):
            continue
        users, bn = list(node.users), None
        if isinstance(layer, nn.Conv2d) and len(users) == 1 and users[0].op == "call_module" \
                and isinstance(modules.get(users[0].target), nn.BatchNorm2d):
            bn = modules[users[0].target]
            users[0].replace_all_uses_with(node)
            student.graph.erase_node(users[0])
        folded.append(FoldedLayer(layer, bn, grid.weight_qmax))
        student.add_submodule(node.target, folded[-1])
    if not folded:
        raise DistillUnavailable("the model has no convolution or linear layer to quantize")
    _insert_activation_quant(student, symmetric=grid.activations == "symmetric")
    return student, folded


def _insert_activation_quant(student, *, symmetric: bool) -> None:
    """A fake quantizer after every tensor that feeds a folded layer or an addition (the tensors int8 stores)."""
    import torch
    import torch.fx as fx

    from edgecnn.quantize.fake_quant import ActivationFakeQuant, FoldedLayer

    modules = dict(student.named_modules())
    adds = (operator.add, operator.iadd, torch.add)
    fed: list = []
    for node in student.graph.nodes:
        consumes = (node.op == "call_module" and isinstance(modules.get(node.target), FoldedLayer)) or \
                   (node.op == "call_function" and node.target in adds)
        if consumes:
            fed += [arg for arg in node.args if isinstance(arg, fx.Node) and arg not in fed]
    for index, source in enumerate(fed):
        name = f"edgecnn_activation_quant_{index}"
        student.add_submodule(name, ActivationFakeQuant(symmetric))
        with student.graph.inserting_after(source):
            quantized = student.graph.call_module(name, (source,))
        source.replace_all_uses_with(quantized, delete_user_cb=lambda user: user is not quantized)
    student.graph.lint()
    student.recompile()


def _views(images: np.ndarray, batch: int, rng: np.random.Generator):
    """Random crops (half to all of the image, resized back) and mirror images of the calibration images."""
    import torch
    import torch.nn.functional as F

    n, _, height, width = images.shape
    while True:
        picks = rng.choice(n, min(batch, n), replace=False)
        views = []
        for index in picks:
            scale = rng.uniform(0.5, 1.0)
            h, w = max(1, round(height * math.sqrt(scale))), max(1, round(width * math.sqrt(scale)))
            y, x = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
            view = torch.from_numpy(images[index, :, y:y + h, x:x + w].copy())[None]
            view = F.interpolate(view, size=(height, width), mode="bilinear", align_corners=False)[0]
            views.append(view.flip(-1) if rng.random() < 0.5 else view)
        yield torch.stack(views)


def distilled_copy(model, calibration: np.ndarray, grid: Grid, *, seconds: float, stage: Stage = quiet,
                   max_steps: int = MAX_STEPS, weight_rate: float = WEIGHT_RATE,
                   clock: Callable[[], float] = time.perf_counter) -> tuple[Any, dict[str, Any]]:
    """(a tuned copy of `model`, what was done): at most `seconds` of training, `max_steps` steps.

    Raises DistillUnavailable when the model does not trace or fewer than MIN_STEPS steps fit in `seconds`.
    """
    import torch
    import torch.nn.functional as F

    started = clock()
    teacher = model.eval()
    tuned = copy.deepcopy(model).eval()
    student, folded = fake_quantized(tuned, grid)
    student.eval()  # eval throughout: dropout off; the BNs are folded, so no statistics move
    with torch.no_grad():
        for start in range(0, len(calibration), CALIBRATION_BATCH):
            student(torch.from_numpy(calibration[start:start + CALIBRATION_BATCH]))
    for module in student.modules():
        if hasattr(module, "observing"):
            module.observing = False
    optimizer = torch.optim.Adam([{"params": [layer.codes for layer in folded], "lr": weight_rate},
                                  {"params": [layer.bias for layer in folded if layer.bias is not None], "lr": BIAS_RATE}])
    rates = [group["lr"] for group in optimizer.param_groups]
    views = _views(calibration, BATCH, np.random.default_rng(0))
    torch.manual_seed(0)
    losses: list[float] = []
    steps, step = max_steps, 0
    train_started = clock()
    while step < steps:
        x = next(views)
        with torch.no_grad():
            target = F.softmax(teacher(x), 1)
        loss = F.kl_div(F.log_softmax(student(x), 1), target, reduction="batchmean")
        optimizer.zero_grad()
        loss.backward()
        for group, rate in zip(optimizer.param_groups, rates):  # cosine decay over the steps that fit
            group["lr"] = rate * 0.5 * (1 + math.cos(math.pi * step / steps))
        optimizer.step()
        losses.append(float(loss.detach()))
        step += 1
        if step == 2:  # the steps that fit in the time left, from the time the first two took
            per_step = (clock() - train_started) / 2
            steps = min(max_steps, int((seconds - (clock() - started)) / per_step) + 2)
            if steps < MIN_STEPS:
                raise DistillUnavailable(f"{per_step:.1f} s a step: fewer than {MIN_STEPS} steps fit in "
                                         f"{seconds:.0f} s (raise --search-budget)")
        if step % 25 == 0:
            stage(f"INT8 distillation: step {step}/{steps}, KL {np.mean(losses[-25:]):.4f}")
    for layer in folded:
        layer.write_back()
    return tuned, {"grid": grid.words(), "steps": steps, "batch": BATCH, "weight_rate_codes": weight_rate, "bias_rate": BIAS_RATE,
                   "images": int(len(calibration)), "seconds": round(clock() - started, 1),
                   "kl_first": round(float(np.mean(losses[:10])), 5), "kl_last": round(float(np.mean(losses[-10:])), 5)}
