"""Per-layer INT8 error of a full-integer .tflite file against the fp32 file of the same bundle.

Both files come from the same torch.export graph, so their compute ops (convolutions, adds, pools,
the classifier) appear in the same order; they are paired in that order (checked op by op), each
int8 output dequantized with its own scale and zero point, and compared on a few golden images
(SQNR in dB, as the TFLite quantization debugger reports it). litert-torch names tensors after the
module *types* on the call path (`...MBConvBlock_5/...Conv2dStaticSamePadding__depthwise_conv`); the
user name shown is that path without packages (`MBConvBlock_5/_depthwise_conv`).
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
