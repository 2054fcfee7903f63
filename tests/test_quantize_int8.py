"""INT8: ONNX Runtime static QDQ and OpenVINO IR (fp32/fp16 and NNCF INT8), on real digits."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402

from export_helpers import INPUT_SHAPE, accuracy, digits, trained_tiny_cnn  # noqa: E402

from edgecnn.errors import BadInputError  # noqa: E402
from edgecnn.inference import artifact_logits  # noqa: E402
from edgecnn.export.onnx import export_onnx  # noqa: E402
from edgecnn.backends.torch.reference import torch_logits  # noqa: E402
from edgecnn.compare import compare_logits  # noqa: E402
from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8  # noqa: E402

THREADS = 1
CALIBRATION_SIZE = 64


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    """The trained tiny CNN, its ONNX export, and its PyTorch logits on the test split."""
    model = trained_tiny_cnn()
    folder = tmp_path_factory.mktemp("int8")
    exported = export_onnx(model, INPUT_SHAPE, folder / "model.onnx")
    _, _, test_x, test_y = digits()
    return model, exported.path, torch_logits(model, test_x), folder


def calibration() -> np.ndarray:
    return digits()[0][:CALIBRATION_SIZE]


@pytest.fixture(scope="module")
def qdq_default(fp32):
    _, onnx_path, _, folder = fp32
    return quantize_onnx_int8(onnx_path, folder / "model.int8.onnx", calibration())


@pytest.fixture(scope="module")
def qdq_symmetric(fp32):
    _, onnx_path, _, folder = fp32
    return quantize_onnx_int8(onnx_path, folder / "model.trt.onnx", calibration(), symmetric=True)


def _initializers(model) -> dict[str, np.ndarray]:
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def _weight_dequantizers(model):
    """(conv, DequantizeLinear feeding its weight) for every Conv and Gemm."""
    producers = {out: node for node in model.graph.node for out in node.output}
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            yield node, producers.get(node.input[1])


def _assert_per_channel_weights(model):
    inits = _initializers(model)
    checked = 0
    for node, dq in _weight_dequantizers(model):
        assert dq is not None and dq.op_type == "DequantizeLinear", f"{node.name} weight not quantized"
        weight = inits[dq.input[0]]
        assert weight.dtype == np.int8
        scale = inits[dq.input[1]]
        axis = {a.name: a.i for a in dq.attribute}.get("axis", 1)
        assert axis == 0, f"{node.name}: weights quantized on axis {axis}"
        assert scale.shape == (weight.shape[0],), f"{node.name}: scale is not per output channel"
        assert not np.any(inits[dq.input[2]]) if len(dq.input) > 2 else True
        checked += 1
    assert checked == 5  # 4 convs + the classifier


def _agreement_and_drop(fp32, int8_logits):
    _, _, reference, _ = fp32
    labels = digits()[3]
    parity = compare_logits(reference, int8_logits)
    return parity.top1_agreement, accuracy(reference, labels) - accuracy(int8_logits, labels)


def test_default_qdq_is_per_channel_and_accurate(fp32, qdq_default):
    result = qdq_default
    model = onnx.load(str(result.path))
    onnx.checker.check_model(model)
    _assert_per_channel_weights(model)
    assert result.per_channel and not result.symmetric
    assert result.calibration_size == CALIBRATION_SIZE and result.calibration_method == "minmax"
    assert result.nodes_after["DequantizeLinear"] > 0 and result.nodes_after["QuantizeLinear"] > 0
    assert "QuantizeLinear" not in result.nodes_before
    activation_zero_points = [
        _initializers(model)[node.input[2]]
        for node in model.graph.node
        if node.op_type == "QuantizeLinear"
    ]
    assert all(zp.dtype == np.uint8 for zp in activation_zero_points)  # QUInt8 activations

    agreement, drop = _agreement_and_drop(fp32, artifact_logits(result.path, digits()[2], threads=THREADS))
    assert agreement >= 0.97
    assert drop <= 0.02


def test_symmetric_mode_for_tensorrt(fp32, qdq_symmetric):
    result = qdq_symmetric
    model = onnx.load(str(result.path))
    _assert_per_channel_weights(model)
    inits = _initializers(model)
    zero_points = [
        inits[node.input[2]]
        for node in model.graph.node
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2
    ]
    assert zero_points and all(zp.dtype == np.int8 and not np.any(zp) for zp in zero_points)
    # activations per tensor: every activation scale is a scalar
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            assert inits[node.input[1]].size == 1
    # biases stay float for TensorRT: no int32 initializer
    assert all(array.dtype != np.int32 for array in inits.values())

    agreement, drop = _agreement_and_drop(fp32, artifact_logits(result.path, digits()[2], threads=THREADS))
    assert agreement >= 0.97 and drop <= 0.02


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_calibration_methods(fp32, method, tmp_path):
    _, onnx_path, _, _ = fp32
    seen = []
    result = quantize_onnx_int8(
        onnx_path, tmp_path / "m.onnx", calibration()[:24], method=method, batch_size=8,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert result.calibration_method == method
    assert seen[-1] == (24, 24)
    agreement, _ = _agreement_and_drop(fp32, artifact_logits(result.path, digits()[2], threads=THREADS))
    assert agreement >= 0.9


@pytest.mark.parametrize(
    "kwargs",
    [
        {"calibration_batches": np.zeros((8, 3, 16, 16), np.float32)},
        {"calibration_batches": np.zeros((8, 32, 32), np.float32)},
        {"method": "kl"},
        {"activation_type": "QInt16"},
        {"symmetric": True, "activation_type": "QUInt8"},
    ],
    ids=["wrong-hw", "not-nchw", "method", "type", "symmetric-uint8"],
)
def test_bad_quantization_input_is_refused(fp32, tmp_path, kwargs):
    _, onnx_path, _, _ = fp32
    data = kwargs.pop("calibration_batches", calibration()[:8])
    with pytest.raises(BadInputError):
        quantize_onnx_int8(onnx_path, tmp_path / "m.onnx", data, **kwargs)
    assert not (tmp_path / "m.onnx").exists()


# --- OpenVINO ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openvino_fp32(fp32):
    pytest.importorskip("openvino")
    from edgecnn.backends.openvino.convert import export_openvino

    _, onnx_path, _, folder = fp32
    return export_openvino(onnx_path, folder / "ov" / "model.xml", precision="fp32")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_openvino_ir_loads_and_agrees(fp32, openvino_fp32, precision, tmp_path):
    from edgecnn.inference import check_parity
    from edgecnn.backends.openvino.convert import export_openvino

    model, onnx_path, reference, _ = fp32
    result = (
        openvino_fp32
        if precision == "fp32"
        else export_openvino(onnx_path, tmp_path / "model.xml", precision="fp16")
    )
    assert result.xml_path.is_file() and result.bin_path.is_file()
    assert "BatchNormalization" not in result.ops and result.ops["Convolution"] >= 3
    parity = check_parity(
        model, result.xml_path, digits()[2], reference_logits=reference,
        min_agreement=1.0 if precision == "fp32" else 0.99, threads=THREADS,
    )
    if precision == "fp32":
        assert parity.max_abs_diff < 1e-3


def test_openvino_fp16_is_smaller(openvino_fp32, fp32, tmp_path):
    from edgecnn.backends.openvino.convert import export_openvino

    fp16 = export_openvino(fp32[1], tmp_path / "half.xml", precision="fp16")
    assert fp16.bytes < openvino_fp32.bytes


def test_nncf_int8_ir_runs_and_agrees(fp32, openvino_fp32, tmp_path):
    pytest.importorskip("nncf")
    from edgecnn.backends.openvino.quantize import quantize_openvino_int8

    result = quantize_openvino_int8(openvino_fp32.xml_path, tmp_path / "int8.xml", calibration())
    assert result.fake_quantize_nodes > 0 and "FakeQuantize" not in result.ops_before
    assert result.calibration_size == CALIBRATION_SIZE
    logits = artifact_logits(result.xml_path, digits()[2], threads=THREADS, inference_precision="auto")
    agreement, drop = _agreement_and_drop(fp32, logits)
    assert agreement >= 0.97 and drop <= 0.02


def test_nncf_refuses_wrong_calibration_shape(fp32, tmp_path):
    pytest.importorskip("nncf")
    from edgecnn.backends.openvino.quantize import quantize_openvino_int8

    with pytest.raises(BadInputError, match="calibration data"):
        quantize_openvino_int8(fp32[1], tmp_path / "int8.xml", np.zeros((4, 1, 32, 32), np.float32))
