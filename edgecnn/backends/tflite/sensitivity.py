"""Per-layer INT8 error of a full-integer .tflite file against the fp32 file of the same bundle.

Both files come from the same torch.export graph, so their compute ops (convolutions, adds, pools,
the classifier) appear in the same order; they are paired in that order (checked op by op), each
int8 output dequantized with its own scale and zero point, and compared on a few golden images
(SQNR in dB, as the TFLite quantization debugger reports it). litert-torch names tensors after the
module *types* on the call path, each with the last part of its attribute name
(`pkg.EfficientNet/pkg.MBConvBlock_5/pkg.Conv2dStaticSamePadding__depthwise_conv`). `module_keys` rebuilds
those paths from the PyTorch model at export time, so the manifest can name each op by its module path
(`_blocks.5._depthwise_conv`); without the model the user name is the type path without packages
(`MBConvBlock_5/_depthwise_conv`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.quantize.search import Layer

SQNR_SAMPLES = 8
_COMPUTE = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "MEAN", "AVERAGE_POOL_2D",
            "MAX_POOL_2D", "CONCATENATION", "TRANSPOSE_CONV")


def _interpreter(path: Path):
    import warnings

    from edgecnn.backends.tflite.runner import _import_interpreter  # the runtime the Runner would use

    interpreter_class = _import_interpreter()[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # preserve_all_tensors warns that it is for debugging: it is
        interpreter = interpreter_class(model_path=str(path), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    return interpreter


def _compute_outputs(interpreter) -> list[tuple[str, dict]]:
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    return [(op["op_name"], details[op["outputs"][0]]) for op in interpreter._get_ops_details()
            if op["op_name"] in _COMPUTE]


def _values(interpreter, tensor: dict) -> np.ndarray:
    value = interpreter.get_tensor(tensor["index"]).astype(np.float64)
    scale, zero = tensor.get("quantization") or (0.0, 0)
    return (value - zero) * scale if scale else value


def _run(interpreter, image: np.ndarray, outputs: list[tuple[str, dict]]) -> list[np.ndarray]:
    detail = interpreter.get_input_details()[0]
    sample = image[None]
    if list(detail["shape"]) != list(sample.shape):  # an NHWC file
        sample = np.transpose(sample, (0, 2, 3, 1))
    interpreter.set_tensor(detail["index"], np.ascontiguousarray(sample, dtype=detail["dtype"]))
    interpreter.invoke()
    return [_values(interpreter, tensor) for _, tensor in outputs]


def user_name(tensor_name: str) -> str:
    """'pkg.EfficientNet/pkg.MBConvBlock_5/pkg.Conv2dStaticSamePadding__depthwise_conv;...' -> 'MBConvBlock_5/_depthwise_conv'."""
    segments = [s for s in tensor_name.split(";") if s and "/" in s] or [tensor_name]
    path = max(segments, key=lambda s: ("Conv" in s.rsplit("/", 1)[-1], len(s)))
    parts = []
    for part in path.split("/")[1:]:
        name = part.rsplit(".", 1)[-1]
        head, sep, attribute = name.partition("__")
        parts.append("_" + attribute if sep else head)
    return "/".join(parts) or tensor_name


def _type_name(cls) -> str:
    """As litert-torch writes a module's type into its debug names (its _class_fullname)."""
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def module_keys(model) -> dict[str, str]:
    """{litert-torch call path: module path} for every module of `model`.

    A call path lists the modules whose forward ran, outermost first, as `type_lastname`; containers that are
    only iterated (ModuleList, ModuleDict) never run, so they are not in it (`_blocks.5` is `MBConvBlock_5`).
    """
    from torch import nn

    modules = dict(model.named_modules())
    keys: dict[str, str] = {}
    for name, module in modules.items():
        if not name or isinstance(module, (nn.ModuleList, nn.ModuleDict)):
            continue
        parts, prefix = [_type_name(type(model))], []
        for part in name.split("."):
            prefix.append(part)
            ancestor = modules[".".join(prefix)]
            if not isinstance(ancestor, (nn.ModuleList, nn.ModuleDict)):
                parts.append(f"{_type_name(type(ancestor))}_{part}")
        keys.setdefault("/".join(parts), name)
    return keys


def resolve(tensor_name: str, keys: dict[str, str], wanted: set[str] | None = None) -> str | None:
    """The module path of an op from its output tensor's name: a fused op names several call paths
    (conv;relu6), so a module in `wanted` (the convolutions and linears) wins, then the deepest one."""
    found = [keys[s] for s in tensor_name.split(";") if s in keys]
    if wanted:
        found = [f for f in found if f in wanted] or found
    return max(found, key=lambda f: f.count("."), default=None)


def tflite_layers(int8_path: str | Path, fp32_path: str | Path, inputs: np.ndarray) -> list[Layer]:
    """The compute ops of the int8 file with the SQNR of each output against the fp32 file's."""
    int8, fp32 = _interpreter(Path(int8_path)), _interpreter(Path(fp32_path))
    int8_ops, fp32_ops = _compute_outputs(int8), _compute_outputs(fp32)
    paired = [a[0] for a in int8_ops] == [b[0] for b in fp32_ops]
    noise = np.zeros(len(int8_ops))
    signal = np.zeros(len(int8_ops))
    if paired:
        for image in inputs[:SQNR_SAMPLES]:
            for index, (q, f) in enumerate(zip(_run(int8, image, int8_ops), _run(fp32, image, fp32_ops))):
                if q.shape == f.shape:
                    noise[index] += np.sum((q - f) ** 2)
                    signal[index] += np.sum(f ** 2)
    layers = []
    for index, (op, tensor) in enumerate(int8_ops):
        value = None
        if paired and signal[index] > 0 and noise[index] > 0:
            value = 10.0 * float(np.log10(signal[index] / noise[index]))
        layers.append(Layer(node=tensor["name"], op=op, user_name=user_name(tensor["name"]), sqnr_db=value))
    return layers


def explainer(int8_path: str | Path, fp32_path: str | Path, inputs: np.ndarray):
    """`edgecnn explain`: the int8 file's layers with SQNR; gains need a re-conversion, so none here."""
    return tflite_layers(int8_path, fp32_path, inputs), None
