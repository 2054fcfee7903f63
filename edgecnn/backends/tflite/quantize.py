"""TFLite INT8 through litert-torch: PT2E full-integer (calibrated) and weight-only int8.

Full-integer is litert-torch's PT2E quantizer (int8 activations, asymmetric per-tensor; int8
weights, symmetric per-channel by default because per-tensor weights collapse depthwise
networks), calibrated on the real, preprocessed calibration images. With torch 2.14,
`torch.export` no longer records the `source_fn_stack` that litert-torch's annotators for add,
mul, cat and max-pool look for, so those ops stayed float between DEQUANTIZE/QUANTIZE pairs
(MobileNet v2: 9 of its 10 residual adds); `_TargetAnnotator` annotates them by their aten target
instead, and the export checks that no float compute is left. Weight-only stores int8 weights
and computes in float32 (what tflite-runtime 2.14 runs at full speed, see compat.py).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecnn.backends.tflite.flatbuffer import float_io
from edgecnn.errors import require

__all__ = ["CALIBRATION_BATCH", "TfliteContent", "convert_with_weight_recipe", "quantize_pt2e_int8",
           "quantize_weight_only_int8"]

# Images per forward pass while calibrating (when the model exports with a dynamic batch).
CALIBRATION_BATCH = 16


@dataclass(frozen=True)
class TfliteContent:
    """A converted .tflite flatbuffer, its quantization scheme (None for fp32) and calibration time."""

    content: bytes
    quantization: dict[str, Any] | None
    calibration_s: float | None = None


def _weights_label(per_channel: bool) -> str:
    return "int8 symmetric " + ("per-channel" if per_channel else "per-tensor")


def convert_with_weight_recipe(litert_torch, model, sample_args, *, weights: str, per_channel: bool) -> bytes:
    """fp16 or int8 weight-only file: litert-torch converts, then ai-edge-quantizer rewrites weights.

    Both leave activations float32: each weight is stored small and dequantized by a DEQUANTIZE
    op, which XNNPACK folds into the float weights when the file loads.
    """
    from litert_torch.generative.quantize import quant_attrs, quant_recipes

    if weights == "fp16":
        recipe = quant_recipes.full_fp16_recipe()
    else:
        granularity = quant_attrs.Granularity.CHANNELWISE if per_channel else quant_attrs.Granularity.NONE
        recipe = quant_recipes.full_weight_only_recipe(weight_dtype=quant_attrs.Dtype.INT8, granularity=granularity)
    # ai-edge-quantizer print()s sizes and a progress bar; a library call stays silent.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return litert_torch.convert(model, sample_args, quant_config=recipe).model_content()


def quantize_weight_only_int8(model, sample_args, *, per_channel: bool = True) -> TfliteContent:
    """int8 weights, float32 compute: no calibration, 1/4 of the fp32 size, fp32 speed everywhere."""
    litert_torch = require("litert_torch", "tflite", "TFLite export")
    content = convert_with_weight_recipe(litert_torch, model, sample_args, weights="int8", per_channel=per_channel)
    return TfliteContent(content, {
        "method": "ai-edge-quantizer weight-only (litert-torch recipe)",
        "weights": _weights_label(per_channel),
        "activations": "float32 (weights dequantized at load)",
        "scheme": "weight-only",
    })


def quantize_pt2e_int8(model, input_shape: tuple[int, int, int], calibration: np.ndarray, *,
                       sample_args: tuple, per_channel: bool = True, float_modules: tuple[str, ...] = ()) -> TfliteContent:
    """Full-integer int8 .tflite content: PT2E calibrated on `calibration` (NCHW float32), float32 I/O.

    `sample_args` fixes the batch baked into the file. The caller validates its inputs and checks
    the result (export_tflite does both).
    """
    import torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    litert_torch = require("litert_torch", "tflite", "TFLite export")
    quantizer = _full_integer_quantizer_class()().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=per_channel)
    )
    quantizer.float_modules = tuple(float_modules)  # selective quantization: these stay float
    exported, calibration_batch = _export_for_calibration(model, input_shape, calibration)
    prepared = prepare_pt2e(exported, quantizer)
    started = time.perf_counter()
    with torch.no_grad():
        for start in range(0, calibration.shape[0], calibration_batch):
            prepared(torch.from_numpy(calibration[start : start + calibration_batch]))
    calibration_s = time.perf_counter() - started
    converted = convert_pt2e(prepared, fold_quantize=False)
    edge_model = litert_torch.convert(converted, sample_args, quant_config=QuantConfig(pt2e_quantizer=quantizer))
    scheme = {
        "method": "litert-torch PT2E static quantization",
        "weights": _weights_label(per_channel),
        "activations": "int8 asymmetric per-tensor",
        "activation_observer": "histogram",
        "bias": "int32",
        "io": "float32 (QUANTIZE / DEQUANTIZE inside the graph)",
    }
    return TfliteContent(float_io(edge_model.model_content()), scheme, calibration_s)


def _export_for_calibration(model, input_shape, calibration):
    """torch.export with a dynamic batch so calibration runs in batches; batch 1 as fallback."""
    import torch

    pair = np.resize(calibration[:2], (2, *input_shape)).astype(np.float32)
    try:
        batch = torch.export.Dim("batch", min=1, max=4096)
        exported = torch.export.export(
            model, (torch.from_numpy(pair),), dynamic_shapes=({0: batch},), strict=False
        ).module()
        return exported, CALIBRATION_BATCH
    except Exception:  # a forward that fixes the batch size: calibrate image by image
        exported = torch.export.export(model, (torch.from_numpy(pair[:1]),), strict=False).module()
        return exported, 1


@functools.lru_cache(maxsize=1)
def _full_integer_quantizer_class():
    """litert-torch's PT2EQuantizer plus annotations by aten target (built lazily: heavy imports)."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer

    class FullIntegerPT2EQuantizer(PT2EQuantizer):
        """Annotates what litert-torch's source-partition annotators miss under torch>=2.9."""

        def transform_for_annotation(self, model):
            _decompose_hardsigmoid(model)
            return super().transform_for_annotation(model)

        def annotate(self, model):
            _annotate_conv_relu6(model, self.global_config)
            # litert-torch print()s a line per ResNet-style add+relu it cannot fuse.
            with contextlib.redirect_stdout(io.StringIO()):
                model = super().annotate(model)
            _TargetAnnotator(self.global_config).run(model)
            _keep_modules_float(model, getattr(self, "float_modules", ()))
            return model

    return FullIntegerPT2EQuantizer


def module_path_of(node) -> str:
    """The PyTorch module path a torch.export node comes from ('' at the top level)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = str(list(stack.values())[-1][0])
    for prefix in ("L['self'].", "L['self']"):
        if path.startswith(prefix):
            path = path[len(prefix):]
    return path.replace("[", ".").replace("]", "").replace("'", "").strip(".")


def _keep_modules_float(gm, modules: tuple[str, ...]) -> None:
    """Keep the named modules float: their nodes lose their annotations, and the producers of their inputs
    stop quantizing their outputs (in PT2E a conv's output observer belongs to the conv, so a float layer
    would still read an int8-rounded input). Other consumers of those outputs observe their own inputs."""
    import torch
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    if not modules:
        return
    inside = [n for n in gm.graph.nodes
              if any((path := module_path_of(n)) == m or path.startswith(m + ".") for m in modules)]
    members = set(inside)
    for node in inside:
        node.meta.pop("quantization_annotation", None)
        for arg in node.all_input_nodes:
            annotation = arg.meta.get("quantization_annotation") if isinstance(arg, torch.fx.Node) else None
            if arg not in members and annotation is not None and annotation.output_qspec is not None:
                arg.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map=annotation.input_qspec_map, output_qspec=None, _annotated=True)


def _annotate_conv_relu6(gm, config) -> None:
    """conv -> hardtanh(0, 6) quantized as one fused op: no observer between them, a fresh one after.

    litert-torch fuses conv+relu but lets hardtanh share the conv's observer, which sees the
    pre-activation range: ReLU6 outputs (EfficientNet-Lite, MobileNet v2) then use a few dozen of
    the 256 int8 levels. Measured on EfficientNet-Lite1 (ImageNet photos): the full-integer file
    lost 2.3 top-1 points with the shared observer.
    """
    import torch
    from litert_torch.quantize.pt2e_quantizer_utils import (
        get_bias_qspec, get_input_act_qspec, get_output_act_qspec, get_weight_qspec,
    )
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    aten = torch.ops.aten
    convs = {aten.conv1d.default, aten.conv2d.default, aten.convolution.default}
    if get_input_act_qspec(config) is None:
        return
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target not in (aten.hardtanh.default, aten.hardtanh_.default):
            continue
        conv = node.args[0]
        bounds = tuple(node.args[1:3]) or (-1.0, 1.0)
        if (not isinstance(conv, torch.fx.Node) or conv.target not in convs or len(conv.users) != 1
                or bounds != (0.0, 6.0) or "quantization_annotation" in conv.meta):
            continue
        inputs = {conv.args[0]: get_input_act_qspec(config), conv.args[1]: get_weight_qspec(config)}
        if len(conv.args) > 2 and isinstance(conv.args[2], torch.fx.Node):
            inputs[conv.args[2]] = get_bias_qspec(config)
        conv.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map=inputs, _annotated=True)
        node.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=get_output_act_qspec(config),
                                                                      _annotated=True)


def _decompose_hardsigmoid(gm) -> None:
    """hardsigmoid(x) -> hardtanh(x + 3, 0, 6) * (1/6), before annotation.

    TFLite has no HARD_SIGMOID: litert-torch lowers it to ADD, RELU6 and MUL after PT2E has
    placed its quantize/dequantize pair around the whole op, so the three stayed float
    (MobileNet v3's squeeze-excite blocks). Spelled out in aten ops, each one is quantized.
    """
    import torch

    aten = torch.ops.aten
    swish = {aten.hardswish.default, aten.hardswish_.default}
    targets = {aten.hardsigmoid.default, aten.hardsigmoid_.default}
    if os.environ.get("EDGECNN_TFLITE_DECOMPOSE_HARDSWISH") == "1":
        targets |= swish
    changed = False
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in targets:
            continue
        with gm.graph.inserting_before(node):
            shifted = gm.graph.call_function(aten.add.Tensor, (node.args[0], 3.0))
            clamped = gm.graph.call_function(aten.hardtanh.default, (shifted, 0.0, 6.0))
            scaled = gm.graph.call_function(aten.mul.Tensor, (clamped, 1.0 / 6.0))
            created = [shifted, clamped, scaled]
            if node.target in swish:
                scaled = gm.graph.call_function(aten.mul.Tensor, (node.args[0], scaled))
                created.append(scaled)
        for new in created:
            new.meta.update({k: v for k, v in node.meta.items() if k in ("nn_module_stack", "stack_trace")})
            if "val" in node.meta:
                new.meta["val"] = node.meta["val"]
        node.replace_all_uses_with(scaled)
        gm.graph.erase_node(node)
        changed = True
    if changed:
        gm.graph.lint()
        gm.recompile()


@functools.lru_cache(maxsize=1)
def _aten_targets() -> dict[str, frozenset]:
    """The aten ops `_TargetAnnotator` quantizes, by how their output is quantized."""
    import torch

    aten = torch.ops.aten
    relus = frozenset({aten.relu.default, aten.relu_.default})
    return {
        "binary": frozenset({aten.add.Tensor, aten.add_.Tensor, aten.mul.Tensor, aten.mul_.Tensor,
                             aten.sub.Tensor}),
        "relus": relus,
        # Output range is the input's (or inside it): share the input's quantization parameters.
        "sharing": frozenset({
            aten.max_pool2d.default, aten.adaptive_avg_pool2d.default, aten.avg_pool2d.default,
            aten.mean.dim, aten.hardtanh.default, aten.hardtanh_.default, aten.view.default,
            aten.reshape.default, aten.flatten.using_ints, aten.permute.default, aten.transpose.int,
            aten.contiguous.default, aten.clone.default, aten.dropout.default, aten.dropout_.default,
            aten.squeeze.dim, aten.squeeze.dims, aten.unsqueeze.default, aten.pixel_shuffle.default,
            aten.upsample_nearest2d.vec, aten.slice.Tensor,
        }),
        # Output range differs from the input's: a fresh observer on the output.
        "fresh_output": relus | {
            aten.hardswish.default, aten.hardswish_.default, aten.hardsigmoid.default,
            aten.hardsigmoid_.default, aten.upsample_bilinear2d.vec,
        },
        "splits": frozenset({aten.chunk.default, aten.split.Tensor, aten.split_with_sizes.default,
                             aten.unbind.int}),
        "cat": frozenset({aten.cat.default}),
    }


class _TargetAnnotator:
    """Quantize adds, muls, concats, pools, activations and data movement in the int8 region.

    litert-torch finds add/mul/cat/max-pool through `source_fn_stack` metadata, which
    `torch.export` (non-strict, torch 2.14) no longer records; without this pass they stay float
    between DEQUANTIZE/QUANTIZE ops. One pass in graph order: an op is annotated when its input
    is already quantized, so the int8 region grows from the convolutions.
    """

    def __init__(self, config):
        from litert_torch.quantize.pt2e_quantizer_utils import get_input_act_qspec, get_output_act_qspec

        self.input_qspec = get_input_act_qspec(config)
        self.output_qspec = get_output_act_qspec(config)
        self.targets = _aten_targets()

    def run(self, gm) -> None:
        if self.input_qspec is None or self.output_qspec is None:  # dynamic quantization: weights only
            return
        kinds = [(kind, getattr(self, f"_{kind}")) for kind in ("binary", "cat", "sharing", "fresh_output", "splits")]
        for node in gm.graph.nodes:
            if node.op != "call_function" or self._annotated(node):
                continue
            for kind, annotate in kinds:
                if node.target in self.targets[kind]:
                    annotate(node)
                    break

    @staticmethod
    def _annotated(node) -> bool:
        ann = node.meta.get("quantization_annotation")
        return ann is not None and ann._annotated

    @staticmethod
    def _quantized(node) -> bool:
        import torch

        ann = node.meta.get("quantization_annotation") if isinstance(node, torch.fx.Node) else None
        return ann is not None and ann.output_qspec is not None

    @staticmethod
    def _set(node, inputs, output) -> None:
        from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map=inputs, output_qspec=output, _annotated=True
        )

    @staticmethod
    def _shared(node):
        from torchao.quantization.pt2e.quantizer import SharedQuantizationSpec

        return SharedQuantizationSpec(node)

    def _binary(self, node) -> None:
        import torch

        operands = [a for a in node.args[:2] if isinstance(a, torch.fx.Node)]
        if not operands or not any(self._quantized(a) for a in operands):
            return
        inputs = {a: self.input_qspec for a in operands}
        users = list(node.users)
        if len(users) == 1 and users[0].target in self.targets["relus"] and not self._annotated(users[0]):
            self._set(node, inputs, None)  # ADD/MUL with a fused RELU
            self._set(users[0], {}, self.output_qspec)
        else:
            self._set(node, inputs, self.output_qspec)

    def _cat(self, node) -> None:
        import torch

        tensors = [t for t in node.args[0] if isinstance(t, torch.fx.Node)]
        if not tensors or not any(self._quantized(t) for t in tensors):
            return
        shared = self._shared((tensors[0], node))
        self._set(node, {tensors[0]: self.input_qspec, **{t: shared for t in tensors[1:]}}, shared)

    def _sharing(self, node) -> None:
        first = node.args[0] if node.args else None
        if self._quantized(first):
            shared = self._shared(first)
            self._set(node, {first: shared}, shared)

    def _fresh_output(self, node) -> None:
        first = node.args[0] if node.args else None
        if self._quantized(first):
            self._set(node, {first: self._shared(first)}, self.output_qspec)

    def _splits(self, node) -> None:
        import operator

        first = node.args[0] if node.args else None
        if not self._quantized(first):
            return
        shared = self._shared(first)
        self._set(node, {first: shared}, None)
        for user in node.users:
            if user.target is operator.getitem and not self._annotated(user):
                self._set(user, {}, shared)
