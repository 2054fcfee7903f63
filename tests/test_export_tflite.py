"""TFLite / LiteRT export (litert-torch): fp32, fp16 and full-integer int8 files, read back and run.

A tiny residual CNN (BatchNorm, depthwise conv, residual add, hardswish) trained for a few seconds
on scikit-learn digits checks parity and int8 accuracy on real data; MobileNet v2 from the zoo at
32x32 checks that a real architecture converts to a full-integer, per-channel file. Conversions
are cached per module: litert-torch takes seconds per file on this machine.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from torch import nn  # noqa: E402

from edgecnn.backends import get_runner  # noqa: E402
from edgecnn.backends.tflite.compat import graph_compatibility, tflite_compatibility  # noqa: E402
from edgecnn.backends.tflite.convert import export_tflite  # noqa: E402
from edgecnn.backends.tflite.flatbuffer import TfliteGraph, TfliteOp, describe_tflite  # noqa: E402
from edgecnn.backends.torch.reference import torch_logits  # noqa: E402
from edgecnn.compare import ParityError, compare_logits, enforce  # noqa: E402
from edgecnn.errors import BadInputError, CheckFailedError  # noqa: E402

from export_helpers import INPUT_SHAPE, accuracy, digits, fit_on_digits  # noqa: E402

CALIBRATION_SIZE = 200


def tflite_logits(path, samples: np.ndarray) -> np.ndarray:
    """Logits through the TFLite Runner, the one inference path (split and padded at the file's batch)."""
    with get_runner("tflite").load(path, batch=1) as runner:
        return runner.run(samples)


def check_parity(model, path, samples, *, min_agreement=None, max_abs_diff=None, reference_logits=None):
    """The Runner's logits against PyTorch's (or `reference_logits`); ParityError below the thresholds."""
    reference = torch_logits(model, samples) if reference_logits is None else reference_logits
    return enforce(compare_logits(reference, tflite_logits(path, samples)), what=f"TFLite on {path.name}",
                   min_agreement=min_agreement, max_abs_diff=max_abs_diff)


class TinyResidual(nn.Module):
    """Every pattern the int8 annotator must cover: BN to fold, depthwise, residual add, hardswish."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.Hardswish()
        )
        self.depthwise = nn.Sequential(
            nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU6()
        )
        self.pointwise = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.down = nn.Sequential(
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.Hardswish()
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))

    def forward(self, x):
        x = self.stem(x)
        x = x + self.pointwise(self.depthwise(x))
        return self.head(self.down(x))


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    """TinyResidual after 4 epochs on digits (a few seconds on one thread, ~95 % test accuracy)."""
    torch.manual_seed(0)
    return fit_on_digits(TinyResidual(), epochs=4, lr=1e-2)


@pytest.fixture(scope="module")
def reference(trained) -> np.ndarray:
    """PyTorch fp32 logits of the trained model on the test split."""
    _, _, test_x, _ = digits()
    with torch.inference_mode():
        return trained(torch.from_numpy(test_x)).numpy()


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """The trained model as fp32, fp16, int8 and int8 weight-only files -> TfliteExportResult."""
    folder = tmp_path_factory.mktemp("tflite")
    train_x, _, _, _ = digits()
    results = {
        precision: export_tflite(
            trained, INPUT_SHAPE, folder / f"tiny.{precision}.tflite", precision=precision,
            calibration=train_x[:CALIBRATION_SIZE] if precision == "int8" else None,
        )
        for precision in ("fp32", "fp16", "int8")
    }
    results["int8-weights"] = export_tflite(
        trained, INPUT_SHAPE, folder / "tiny.int8w.tflite", precision="int8", int8_scheme="weight-only"
    )
    return results


def _weights_by_op(graph: TfliteGraph, op: str):
    return [w for w in graph.weights if w.op == op]


def test_fp32_file_loads_and_matches_pytorch(trained, exported, reference):
    result = exported["fp32"]
    _, _, test_x, test_y = digits()
    assert result.path.is_file() and result.bytes == result.path.stat().st_size
    assert result.input_shape == (1, *INPUT_SHAPE)
    assert (result.input_dtype, result.output_dtype, result.input_layout) == ("float32", "float32", "NCHW")
    # BatchNorm is folded into the convolutions: the only ADD left is the residual one.
    assert result.op_counts["ADD"] == 1
    assert result.op_counts["DEPTHWISE_CONV_2D"] == 1 and result.op_counts["HARD_SWISH"] == 2
    assert "MUL" not in result.op_counts
    assert result.warnings == [] and tflite_compatibility(result.path) == []

    parity = check_parity(trained, result.path, test_x, min_agreement=1.0, max_abs_diff=1e-3)
    assert parity.samples == len(test_x) and parity.top1_agreement == 1.0
    assert parity.max_abs_diff < 1e-3 and parity.cosine > 0.99999
    logits = tflite_logits(result.path, test_x[:7])  # a count that is not a multiple of anything
    assert logits.shape == (7, 10) and logits.dtype == np.float32
    assert accuracy(logits, test_y[:7]) == accuracy(reference[:7], test_y[:7])


def test_fp16_stores_half_precision_weights(exported, reference):
    result = exported["fp16"]
    graph = describe_tflite(result.path)
    assert graph.weights and {w.dtype for w in graph.weights} == {"float16"}
    assert (graph.inputs[0].dtype, graph.outputs[0].dtype) == ("float32", "float32")
    assert result.bytes < 0.75 * exported["fp32"].bytes
    _, _, test_x, _ = digits()
    parity = check_parity(None, result.path, test_x, reference_logits=reference)
    assert parity.top1_agreement >= 0.995 and parity.max_abs_diff < 0.05
    assert result.warnings == []


def test_int8_is_full_integer_and_per_channel(exported):
    result = exported["int8"]
    graph = describe_tflite(result.path)
    # float32 in and out, converted inside the graph: QUANTIZE first, DEQUANTIZE last ...
    assert (graph.inputs[0].dtype, graph.outputs[0].dtype) == ("float32", "float32")
    assert graph.ops[0].name == "QUANTIZE" and graph.ops[-1].name == "DEQUANTIZE"
    assert result.op_counts["QUANTIZE"] == 1 and result.op_counts["DEQUANTIZE"] == 1
    # ... and nothing in between computes in float (add, hardswish, pool, FC included).
    assert graph.float_compute_ops() == {}
    for name in ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "HARD_SWISH", "FULLY_CONNECTED"):
        assert graph.quantized_ops().get(name), name
    # Per-channel weights: one scale per output channel, on the axis TFLite expects.
    convs, depthwise = _weights_by_op(graph, "CONV_2D"), _weights_by_op(graph, "DEPTHWISE_CONV_2D")
    assert len(convs) == 3 and len(depthwise) == 1
    for weight in convs:
        assert weight.dtype == "int8" and weight.scales == weight.shape[0] > 1
        assert weight.quantized_dimension == 0
    for weight in depthwise:  # [1, H, W, C]: channels last
        assert weight.dtype == "int8" and weight.scales == weight.shape[-1] == 16
        assert weight.quantized_dimension == 3
    assert result.quantization["weights"] == "int8 symmetric per-channel"
    assert result.calibration_samples == CALIBRATION_SIZE and result.calibration_s > 0
    assert result.bytes < 0.5 * exported["fp32"].bytes


def test_int8_accuracy_on_real_digits(exported, reference):
    _, _, test_x, test_y = digits()
    reference_top1 = accuracy(reference, test_y)
    assert reference_top1 > 0.85  # the model learned something: the drop below means something
    logits = tflite_logits(exported["int8"].path, test_x)
    drop_points = 100 * (reference_top1 - accuracy(logits, test_y))
    assert drop_points <= 1.5, f"int8 top-1 fell {drop_points:.2f} points"
    parity = check_parity(None, exported["int8"].path, test_x, reference_logits=reference)
    assert parity.top1_agreement >= 0.97 and parity.cosine > 0.99


def test_int8_warns_about_tflite_runtime_2_14(exported):
    warnings = exported["int8"].warnings
    assert warnings == tflite_compatibility(exported["int8"].path)
    assert len(warnings) == 1
    assert "tflite-runtime 2.14" in warnings[0] and "pip install ai-edge-litert" in warnings[0]
    assert "XNNPACK" in warnings[0] and "fp32" in warnings[0]


def test_int8_weight_only_stores_int8_weights_and_computes_in_float(exported, reference):
    result = exported["int8-weights"]
    graph = describe_tflite(result.path)
    assert result.quantization["scheme"] == "weight-only" and result.calibration_samples is None
    # Every conv / FC weight is int8, per-channel, behind a DEQUANTIZE; activations stay float.
    assert len(graph.weights) == 5
    assert all(w.dtype == "int8" and w.scales == (w.shape[-1] if w.op == "DEPTHWISE_CONV_2D" else w.shape[0])
               for w in graph.weights)
    assert "QUANTIZE" not in result.op_counts and result.op_counts["DEQUANTIZE"] == 5
    assert graph.quantized_ops() == {} and graph.float_compute_ops()["CONV_2D"] == 3
    # Float compute is what tflite-runtime 2.14 delegates: no warning for this file.
    assert result.warnings == [] and tflite_compatibility(result.path) == []
    _, _, test_x, test_y = digits()
    parity = check_parity(None, result.path, test_x, reference_logits=reference)
    drop_points = 100 * (accuracy(reference, test_y) - accuracy(tflite_logits(result.path, test_x), test_y))
    assert parity.top1_agreement >= 0.98 and drop_points <= 1.5


def test_compatibility_names_operators_2_14_cannot_load():
    def op(index, name, version=1):
        return TfliteOp(index, name, version, ("float32",), ("float32",))

    graph = TfliteGraph(
        ops=(op(0, "CONV_2D", 8), op(1, "STABLEHLO_COMPOSITE"), op(2, "ADD")),
        weights=(), inputs=(), outputs=(),
    )
    (message,) = graph_compatibility(graph, "m.tflite")
    assert "does not load on tflite-runtime 2.14" in message
    assert "STABLEHLO_COMPOSITE" in message and "CONV_2D v8 (2.14 has up to v7)" in message
    assert "ADD" not in message.split("(", 1)[1].split(";")[0]
    assert "pip install ai-edge-litert" in message


def test_parity_failure_raises_check_failed(exported, reference):
    _, _, test_x, _ = digits()
    shuffled = reference[np.random.default_rng(0).permutation(len(reference))]
    with pytest.raises(ParityError) as caught:
        check_parity(None, exported["fp32"].path, test_x, reference_logits=shuffled, min_agreement=0.99)
    assert isinstance(caught.value, CheckFailedError) and caught.value.result.top1_agreement < 0.5


def test_zoo_mobilenet_v2_int8_at_32px(tmp_path):
    """A real depthwise network: every residual add and every conv ends up int8 and per-channel.

    (fp32 parity of litert-torch's conversion is covered by the tiny model: same code path.)
    """
    from edgecnn.zoo.registry import build_model

    torch.manual_seed(0)
    model = build_model("mobilenet_v2", num_classes=10)
    train_x, _, test_x, _ = digits()
    # Fresh BatchNorm statistics let random activations fade to ~1e-10 over 50 layers, where
    # int8 scales bottom out; statistics from 64 real images keep them O(1), as trained ones are.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the batches below
    with torch.no_grad():
        model.train()(torch.from_numpy(train_x[:64]))
    model.eval()
    int8 = export_tflite(
        model, INPUT_SHAPE, tmp_path / "m.int8.tflite", precision="int8", calibration=train_x[:32]
    )
    assert int8.op_counts["DEPTHWISE_CONV_2D"] == 17 and int8.op_counts["CONV_2D"] == 35
    graph = describe_tflite(int8.path)
    assert graph.float_compute_ops() == {}, "float ops left in the int8 MobileNet v2"
    assert graph.quantized_ops()["ADD"] == 10  # every residual add runs in int8
    depthwise = _weights_by_op(graph, "DEPTHWISE_CONV_2D")
    assert len(depthwise) == 17 and all(w.scales == w.shape[-1] > 1 for w in depthwise)
    assert all(w.scales == w.shape[0] for w in _weights_by_op(graph, "CONV_2D"))
    with torch.inference_mode():
        reference = model(torch.from_numpy(test_x[:24])).numpy()
    logits = tflite_logits(int8.path, test_x[:24])
    assert np.isfinite(logits).all() and logits.std(axis=0).min() > 0  # not collapsed to constants
    # Random weights give no accuracy to keep (the digits test checks that); the logits must still
    # follow PyTorch's (unrelated vectors would have a cosine near 0).
    assert check_parity(None, int8.path, test_x[:24], reference_logits=reference).cosine > 0.5


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"precision": "int8"}, "needs calibration"),
        ({"precision": "int8", "calibration": np.zeros((4, 3, 28, 28), np.float32)}, "input size"),
        ({"precision": "int8", "calibration": np.zeros((3, 32, 32), np.float32)}, "NCHW"),
        ({"precision": "int8", "calibration": np.zeros((4, 3, 32, 32), np.uint8)}, "float"),
        ({"precision": "int4"}, "precision must be one of"),
        ({"precision": "int8", "int8_scheme": "dynamic"}, "int8_scheme must be one of"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_input_is_refused_before_converting(kwargs, words, tmp_path):
    target = tmp_path / "m.tflite"
    with pytest.raises(BadInputError, match=words):
        export_tflite(TinyResidual(), INPUT_SHAPE, target, **kwargs)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_bad_shapes_and_files_are_refused(exported, tmp_path):
    with pytest.raises(BadInputError, match="C, H, W"):
        export_tflite(TinyResidual(), (32, 32), tmp_path / "m.tflite")
    with pytest.raises(BadInputError, match="torch.nn.Module"):
        export_tflite(object(), INPUT_SHAPE, tmp_path / "m.tflite")
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(BadInputError, match="not a readable .tflite"):
        describe_tflite(garbage)
    with pytest.raises(BadInputError, match="per image"):
        tflite_logits(exported["fp32"].path, np.zeros((2, 3, 28, 28), np.float32))
