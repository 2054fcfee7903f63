"""ONNX export: dynamic batch, BatchNorm folding, checks, and parity with PyTorch on real data."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxslim")
pytest.importorskip("onnxruntime")

from export_helpers import INPUT_SHAPE, digits, tiny_cnn, trained_tiny_cnn  # noqa: E402

from edgecnn.errors import BadInputError, CheckFailedError  # noqa: E402
from edgecnn.inference import artifact_logits  # noqa: E402
from edgecnn.inference import check_parity  # noqa: E402
from edgecnn.compare import ParityError  # noqa: E402
from edgecnn.export.onnx import FusionError, export_onnx  # noqa: E402


def ort_session(path, *, threads):
    """A plain ONNX Runtime session, to inspect the exported graph's inputs and outputs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

# One intra-op thread: tests share a small machine, and a waiting second thread only slows them.
THREADS = 1


@pytest.fixture(scope="module")
def mobilenet_onnx(tmp_path_factory):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.get_model("mobilenet_v2", weights=None, num_classes=10).eval()
    path = tmp_path_factory.mktemp("onnx") / "mobilenet_v2.onnx"
    return model, export_onnx(model, INPUT_SHAPE, path, opset=17)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    model = trained_tiny_cnn()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return model, export_onnx(model, INPUT_SHAPE, path, sample=digits()[0][:2])


def test_batch_axis_is_dynamic(mobilenet_onnx):
    model, result = mobilenet_onnx
    session = ort_session(result.path, threads=THREADS)
    assert session.get_inputs()[0].name == "input"
    assert session.get_outputs()[0].name == "logits"
    assert isinstance(session.get_inputs()[0].shape[0], str)  # symbolic, not a frozen 2
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        x = rng.standard_normal((batch, *INPUT_SHAPE), dtype=np.float32)
        (logits,) = session.run(None, {"input": x})
        assert logits.shape == (batch, 10)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_batchnorm_folded_and_counts_reported(mobilenet_onnx):
    _, result = mobilenet_onnx
    assert result.batchnorm_modules == 52
    assert "BatchNormalization" not in result.nodes_before  # folded by the exporter already
    assert "BatchNormalization" not in result.nodes_after
    assert result.nodes_after["Conv"] == 52
    # onnxslim drops the exporter's Identity/Constant noise
    assert result.node_count_after < result.node_count_before
    assert "Identity" not in result.nodes_after
    assert result.opset == 17 and result.bytes == result.path.stat().st_size


def test_requested_opset_is_honoured(tmp_path):
    onnx = pytest.importorskip("onnx")
    result = export_onnx(tiny_cnn().eval(), INPUT_SHAPE, tmp_path / "m13.onnx", opset=13)
    opsets = {o.domain: o.version for o in onnx.load(str(result.path)).opset_import}
    assert opsets[""] == 13


def test_fp32_parity_on_real_digits(tiny_onnx):
    model, result = tiny_onnx
    _, _, test_x, _ = digits()
    parity = check_parity(model, result.path, test_x[:200], min_agreement=1.0, threads=THREADS)
    assert parity.samples == 200
    assert parity.top1_agreement == 1.0
    assert parity.max_abs_diff < 1e-3
    assert parity.cosine > 0.99999


def test_parity_failure_raises(tiny_onnx):
    model, result = tiny_onnx
    other = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(torch.randn_like(parameter))
    _, _, test_x, _ = digits()
    with pytest.raises(ParityError) as info:
        check_parity(other, result.path, test_x[:100], min_agreement=0.99, threads=THREADS)
    assert isinstance(info.value, CheckFailedError) and info.value.exit_code == 1
    assert info.value.result.top1_agreement < 0.99
    assert "agreement" in str(info.value)


def test_unfoldable_batchnorm_raises_and_writes_nothing(tmp_path):
    # BatchNorm after a ReLU cannot be folded into the conv before it.
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.BatchNorm2d(4),
        torch.nn.Flatten(), torch.nn.Linear(4 * 30 * 30, 10),
    ).eval()
    path = tmp_path / "bad.onnx"
    with pytest.raises(FusionError, match="BatchNormalization"):
        export_onnx(model, INPUT_SHAPE, path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_shape": (3, 32), "opset": 17},
        {"input_shape": (3, 32, 32), "opset": 9},
        {"input_shape": (3, 32, 32), "opset": 17, "sample": np.zeros((2, 1, 32, 32), np.float32)},
    ],
    ids=["shape", "opset", "sample-shape"],
)
def test_bad_input_is_refused(tmp_path, kwargs):
    input_shape = kwargs.pop("input_shape")
    with pytest.raises(BadInputError):
        export_onnx(tiny_cnn().eval(), input_shape, tmp_path / "m.onnx", **kwargs)


def test_onnx_logits_rejects_non_images(tiny_onnx):
    _, result = tiny_onnx
    with pytest.raises(BadInputError):
        artifact_logits(result.path, np.zeros((4, 10), np.float32))


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["mobilenet_v2", "shufflenet_v2_x1_0", "squeezenet1_1", "mobilenet_v3_small", "resnet18"]
)
@pytest.mark.parametrize("size", [32, 224])
def test_zoo_models_export_with_parity(tmp_path, name, size):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, num_classes=10).eval()
    result = export_onnx(model, (3, size, size), tmp_path / f"{name}.onnx")
    assert "BatchNormalization" not in result.nodes_after
    samples = np.random.default_rng(0).standard_normal((4, 3, size, size), dtype=np.float32)
    parity = check_parity(model, result.path, samples, min_agreement=1.0)
    assert parity.max_abs_diff < 1e-3
