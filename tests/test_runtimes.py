"""Runners: each runtime agrees with PyTorch on the same input and reports what it applied."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from edgecnn.errors import BadInputError, MissingDependencyError
from edgecnn.backends import get_runner, resolve_runtime, runtime_for_path, runtime_names
from edgecnn.backends.runner import FixedBatchError, physical_cores
from edgecnn.backends.tflite.runner import detect_layout
from runtime_helpers import (
    INPUT_SHAPE,
    onnx_file,
    openvino_file,
    reference_logits,
    sample_batch,
    static_onnx_file,
    tflite_file,
    tiny_model,
)

ARTIFACTS = {
    "onnxruntime": (onnx_file, {}),
    "openvino": (openvino_file, {"precision": "fp32"}),
    "tflite": (tflite_file, {}),
    "tflite-compiled": (tflite_file, {"api": "compiled_model"}),
}


BUILT_IN = ["onnxruntime", "openvino", "tflite", "tensorrt", "torch"]


def test_runtime_table_resolves_names_and_suffixes():
    # The registry holds these in table order; a backend added later (ncnn) may stand between them.
    names = runtime_names()
    assert [name for name in names if name in BUILT_IN] == BUILT_IN and len(set(names)) == len(names)
    assert resolve_runtime("litert") == "tflite"
    assert resolve_runtime("ORT") == "onnxruntime"
    for suffix, runtime in ((".onnx", "onnxruntime"), (".xml", "openvino"), (".tflite", "tflite"),
                            (".engine", "tensorrt"), (".plan", "tensorrt"), (".pt", "torch")):
        assert runtime_for_path(f"model{suffix}") == runtime
    with pytest.raises(BadInputError, match="pass --runtime"):
        runtime_for_path("model.bin")
    with pytest.raises(BadInputError, match="choose one of") as refused:
        get_runner("caffe")
    assert all(name in str(refused.value) for name in BUILT_IN)


@pytest.mark.parametrize("name", list(ARTIFACTS))
def test_runner_agrees_with_pytorch(name):
    build, options = ARTIFACTS[name]
    runner = get_runner(name.split("-")[0]).load(build(), threads=1, batch=4, **options)
    assert runner.input_shape == tuple(INPUT_SHAPE)
    assert runner.version
    batch = sample_batch(4)
    expected = reference_logits(batch)
    logits = runner.run(batch)
    assert logits.dtype == np.float32 and logits.shape == expected.shape
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)
    # Another batch size reshapes the runtime (verify feeds a short last batch).
    np.testing.assert_allclose(runner.run(batch[:3]), expected[:3], atol=1e-4, rtol=1e-4)
    # Threads are set explicitly and read back from the runtime.
    thread_keys = ("intra_op_num_threads", "INFERENCE_NUM_THREADS", "num_threads")
    assert [runner.applied[k] for k in thread_keys if k in runner.applied] == [1]
    runner.close()


def test_openvino_runs_fp32_in_f32_unless_told_otherwise():
    runner = get_runner("openvino").load(openvino_file(), threads=2, batch=1, precision="fp32")
    assert runner.applied["INFERENCE_PRECISION_HINT"] == "f32"
    assert runner.applied["PERFORMANCE_HINT"] == "LATENCY"
    assert runner.applied["INFERENCE_NUM_THREADS"] == 2
    # "auto" leaves the plugin's default (bf16 on CPUs with AVX-512 bf16): still reported.
    auto = get_runner("openvino").load(openvino_file(), threads=2, batch=1, inference_precision="auto")
    assert auto.applied["INFERENCE_PRECISION_HINT"] in ("f32", "bf16", "f16")
    with pytest.raises(BadInputError, match="inference_precision"):
        get_runner("openvino").load(openvino_file(), inference_precision="int4")


def test_onnxruntime_applies_all_optimisations_sequentially():
    runner = get_runner("onnxruntime").load(onnx_file(), threads=2)
    assert runner.applied["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert runner.applied["execution_mode"] == "ORT_SEQUENTIAL"
    assert runner.applied["inter_op_num_threads"] == 1


def test_torch_runner_is_the_reference():
    runner = get_runner("torch").load(None, threads=1, model=tiny_model(), input_shape=INPUT_SHAPE)
    batch = sample_batch(2)
    np.testing.assert_array_equal(runner.run(batch), reference_logits(batch))
    assert runner.applied["num_threads"] == 1 and runner.applied["inference_mode"] is True


def test_torch_runner_loads_an_edgecnn_checkpoint(tmp_path):
    import torch

    from edgecnn.checkpoint import save_checkpoint
    from edgecnn.preprocess import PreprocessSpec
    from edgecnn.zoo import build_model

    torch.manual_seed(0)
    model = build_model("lenet5", num_classes=10).eval()
    preprocess = PreprocessSpec(size=32, channels=1, mean=(0.5,), std=(0.5,),
                                class_names=tuple(str(i) for i in range(10)))
    path = save_checkpoint(tmp_path / "model.pt", arch="lenet5", state_dict=model.state_dict(),
                           preprocess=preprocess)
    runner = get_runner("torch").load(path, threads=1, batch=2)
    assert runner.input_shape == (1, 32, 32)
    batch = np.random.default_rng(0).standard_normal((2, 1, 32, 32), dtype=np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(runner.run(batch), expected, atol=1e-6)


def test_fixed_batch_artifact_is_split_and_padded():
    runner = get_runner("onnxruntime").load(static_onnx_file(), threads=1, batch=2)
    assert runner.fixed_batch == 2
    batch = sample_batch(5)
    np.testing.assert_allclose(runner.run(batch), reference_logits(batch), atol=1e-4, rtol=1e-4)
    with pytest.raises(FixedBatchError, match="batch 2 only"):
        get_runner("onnxruntime").load(static_onnx_file(), batch=8)


def test_bad_inputs_are_bad_input_errors(tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        get_runner("onnxruntime").load(tmp_path / "missing.onnx")
    with pytest.raises(BadInputError, match="unknown option"):
        get_runner("onnxruntime").load(onnx_file(), num_streams=4)
    runner = get_runner("onnxruntime").load(onnx_file(), threads=1)
    with pytest.raises(BadInputError, match=r"does not match the artifact's \[C,H,W\]"):
        runner.run(np.zeros((1, 3, 16, 16), dtype=np.float32))
    with pytest.raises(BadInputError, match="NCHW"):
        runner.run(np.zeros((3, 32, 32), dtype=np.float32))
    openvino_weights_gone = tmp_path / "ir.xml"
    openvino_weights_gone.write_text(openvino_file().read_text())
    with pytest.raises(BadInputError, match="weights not found"):
        get_runner("openvino").load(openvino_weights_gone)


def test_tflite_layout_detection():
    assert detect_layout((1, 3, 224, 224), (3, 224, 224)) == "NCHW"
    assert detect_layout((1, 224, 224, 3), (3, 224, 224)) == "NHWC"
    assert detect_layout((1, 224, 224, 3), None) == "NHWC"
    assert detect_layout((1, 1, 28, 28), None) == "NCHW"
    with pytest.raises(BadInputError):
        detect_layout((1, 3, 32, 32), (1, 28, 28))


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed")
def test_tensorrt_runner_names_its_extra_when_missing(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not an engine")
    runner = get_runner("tensorrt")  # the module imports without tensorrt
    with pytest.raises(MissingDependencyError) as info:
        runner.load(engine)
    assert info.value.extra == "tensorrt"
    assert "pip install 'edgecnn[tensorrt]'" in str(info.value)


def test_default_threads_are_physical_cores():
    runner = get_runner("onnxruntime").load(onnx_file())
    assert runner.threads == physical_cores() >= 1
    assert runner.applied["intra_op_num_threads"] == physical_cores()


# --- TensorRT, against fakes of its Python API and of cuda-python (no GPU here) ----------------


def _fake_tensorrt(cudart, num_classes=10, max_batch=8):
    """Just enough of TensorRT 10's named-tensor API to run the runner's data path."""
    import types

    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0"

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    class TensorIOMode:
        INPUT, OUTPUT = "input", "output"

    class Context:
        def __init__(self):
            self.shapes = {}
            self.addresses = {}

        def set_input_shape(self, name, shape):
            self.shapes["input"] = tuple(shape)
            self.shapes["logits"] = (shape[0], num_classes)
            return True

        def get_tensor_shape(self, name):
            return self.shapes[name]

        def set_tensor_address(self, name, pointer):
            self.addresses[name] = pointer

        def execute_async_v3(self, stream):
            shape = self.shapes["input"]
            x = np.frombuffer(bytes(cudart.mem[self.addresses["input"]]), dtype=np.float32).reshape(shape)
            logits = np.ascontiguousarray(x.reshape(shape[0], -1)[:, :num_classes])
            cudart.mem[self.addresses["logits"]][:logits.nbytes] = logits.tobytes()
            return True

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, index):
            return ("input", "logits")[index]

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if name == "input" else TensorIOMode.OUTPUT

        def get_tensor_shape(self, name):
            return (-1, *INPUT_SHAPE) if name == "input" else (-1, num_classes)

        def get_tensor_dtype(self, name):
            return np.float32

        def get_tensor_profile_shape(self, name, profile):
            return [(1, *INPUT_SHAPE), (1, *INPUT_SHAPE), (max_batch, *INPUT_SHAPE)]

        def create_execution_context(self):
            return Context()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine() if data == b"fake engine" else None

    trt.Logger, trt.Runtime, trt.TensorIOMode = Logger, Runtime, TensorIOMode
    trt.nptype = lambda dtype: dtype
    return trt


class _FakeCudart:
    """cuda-python's runtime calls over host memory: (err, value) tuples like the real ones."""

    class cudaMemcpyKind:
        cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost = 1, 2

    def __init__(self):
        self.mem, self.next_pointer = {}, 4096

    def cudaMalloc(self, nbytes):
        pointer, self.next_pointer = self.next_pointer, self.next_pointer + nbytes + 256
        self.mem[pointer] = bytearray(nbytes)
        return (0, pointer)

    def cudaFree(self, pointer):
        del self.mem[pointer]
        return (0,)

    def cudaStreamCreate(self):
        return (0, 7)

    def cudaStreamDestroy(self, stream):
        return (0,)

    def cudaStreamSynchronize(self, stream):
        return (0,)

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        import ctypes

        if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice:
            self.mem[dst][:nbytes] = ctypes.string_at(src, nbytes)
        else:
            ctypes.memmove(dst, bytes(self.mem[src][:nbytes]), nbytes)
        return (0,)

    def cudaGetDevice(self):
        return (0, 0)

    def cudaGetDeviceProperties(self, device):
        from types import SimpleNamespace

        return (0, SimpleNamespace(name=b"Fake GPU", major=8, minor=7))


def test_tensorrt_runner_data_path_on_fakes(tmp_path, monkeypatch):
    import sys

    import edgecnn.backends.tensorrt.runner as trt_runner

    cudart = _FakeCudart()
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(cudart))
    monkeypatch.setattr(trt_runner, "_import_cudart", lambda: cudart)
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"fake engine")
    runner = get_runner("tensorrt").load(engine, batch=2)
    assert runner.applied["api"] == "named tensors + execute_async_v3"
    assert runner.applied["gpu"] == "Fake GPU" and runner.applied["batch_range"] == [1, 8]
    batch = sample_batch(3)
    np.testing.assert_array_equal(runner.run(batch), batch.reshape(3, -1)[:, :10])  # reshaped to 3
    with pytest.raises(FixedBatchError, match="1..8"):
        runner.run(sample_batch(9))
    runner.close()
    assert cudart.mem == {}  # every device buffer freed

    engine.write_bytes(b"built elsewhere")
    with pytest.raises(BadInputError, match="rebuild"):
        get_runner("tensorrt").load(engine)


def test_tflite_falls_back_to_tflite_runtime_then_names_the_extra(monkeypatch):
    import sys
    import types

    from ai_edge_litert.interpreter import Interpreter

    fake = types.ModuleType("tflite_runtime.interpreter")
    fake.Interpreter = Interpreter
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # import fails
    monkeypatch.setitem(sys.modules, "tflite_runtime", types.ModuleType("tflite_runtime"))
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fake)
    runner = get_runner("tflite").load(tflite_file(), threads=1, batch=2)
    assert runner.applied["package"] == "tflite_runtime"
    batch = sample_batch(2)
    np.testing.assert_allclose(runner.run(batch), reference_logits(batch), atol=1e-4, rtol=1e-4)

    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgecnn\[litert\]'"):
        get_runner("tflite").load(tflite_file())
