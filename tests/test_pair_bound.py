"""8-bit weights only where x86's int16 pair sums cannot saturate (edgecnn.backends.onnxruntime.pair_bound)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")


def test_the_pair_bound_counts_same_sign_pairs_only():
    from edgecnn.backends.onnxruntime.pair_bound import PAIR_LIMIT, pair_bound

    codes = np.array([[127, 127, 0], [127, -127, 0], [0, 0, 127]], dtype=np.int8).reshape(3, 3, 1, 1)
    high = np.array([255, 255, 255])
    bound = pair_bound(codes, high, group=1)
    assert list(bound) == [255 * 254, 255 * 127, 255 * 127]  # same sign adds; opposite signs cancel; one alone
    assert bound[0] > PAIR_LIMIT >= bound[1]
    low = np.array([120, 120, 255])
    assert pair_bound(codes, low, group=1)[0] == 120 * 254 <= PAIR_LIMIT  # the same weights, lower activations
    # a depthwise 3x3 conv: its channel's activation times its two largest |w|, adjacency ignored
    depthwise = np.zeros((2, 1, 3, 3), dtype=np.int8)
    depthwise[0, 0, 0, 0], depthwise[0, 0, 2, 2], depthwise[1, 0, 1, 1] = 127, -100, 127
    assert list(pair_bound(depthwise, np.array([200, 255]), group=2)) == [200 * 227, 255 * 127]


class _Net(torch.nn.Module):
    """A stem, then a 1x1 conv whose output channel 0 is built to saturate: all weights equal and positive,
    over input channels 0 and 1, which carry the tensor's largest activations (codes near 255)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.depthwise = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.point = torch.nn.Conv2d(8, 6, 1)
        with torch.no_grad():
            self.stem.bias[:2] = 4.0  # channels 0 and 1 reach the ReLU6 clip: the activation range's top
            self.stem.bias[2:] = -0.2
            self.stem.weight[2:] *= 0.3
            self.point.weight[0] = 0.5  # same sign everywhere: 255 * 127 * 2 overflows int16
            # a depthwise conv as large: all nine taps equal on the high channels (pairs of 255 * 127 would
            # overflow int16 if the kernel added pairs; ORT's depthwise kernel adds in int32)
            self.depthwise.weight[:] = 0.1
            self.depthwise.bias[:] = 0.0
        self.head = torch.nn.Linear(6, 5)

    def forward(self, x):
        x = torch.nn.functional.relu6(self.stem(x))
        x = torch.nn.functional.relu6(self.depthwise(x) / 2)
        x = self.point(x)
        return self.head(x.mean(dim=(2, 3)))


def test_widened_channels_are_8_bit_only_where_safe_and_the_kernels_agree_with_exact_arithmetic(tmp_path):
    import onnx
    from onnx import numpy_helper

    from edgecnn.backends.onnxruntime.pair_bound import PAIR_LIMIT, activation_code_max, pair_bound, widen_weights
    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8
    from edgecnn.export.onnx import export_onnx

    images = np.random.default_rng(0).uniform(0, 1, (24, 3, 12, 12)).astype(np.float32)
    fp32 = tmp_path / "fp32.onnx"
    export_onnx(_Net().eval(), (3, 12, 12), fp32, opset=17, sample=images[:2])
    seven = tmp_path / "w7.onnx"
    quantize_onnx_int8(fp32, seven, images, reduce_range=True)
    widened = tmp_path / "w78.onnx"
    widened.write_bytes(seven.read_bytes())
    acts = activation_code_max(widened, images)
    counts = widen_weights(widened, fp32, acts)
    assert counts["convs"] == 3 and counts["depthwise_convs"] == 1 and 0 < counts["channels_8bit"] < counts["channels"]

    def point_weights(path, index=2):
        model = onnx.load(str(path))
        inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        producer = {o: n for n in model.graph.node for o in n.output}
        conv = [n for n in model.graph.node if n.op_type == "Conv"][index]
        dq = producer[conv.input[1]]
        return inits[dq.input[0]], inits[dq.input[1]], acts[producer[conv.input[0]].input[0]]

    depthwise_codes, _, depthwise_act = point_weights(widened, index=1)
    assert (np.abs(depthwise_codes.astype(int)).reshape(8, -1).max(axis=1) == 127).all()  # all 8-bit
    assert depthwise_act[:2].min() >= 200  # with codes that would overflow an int16 pair

    codes7, scale7, act = point_weights(seven)
    codes, scale, _ = point_weights(widened)
    assert np.abs(codes7.astype(int)).max() <= 64
    top = np.abs(codes.astype(int)).reshape(len(codes), -1).max(axis=1)
    assert top[0] <= 64  # the channel built to saturate stays 7-bit
    assert act[:2].min() >= 200 and pair_bound(codes[:1], act, 1)[0] <= PAIR_LIMIT
    assert (top[1:] == 127).any()  # others widen to the 8-bit grid
    assert pair_bound(codes, act, 1).max() <= PAIR_LIMIT

    # The float weights are closer where widened, and the int8 kernels (on any x86 host) agree with the exact
    # Q/DQ arithmetic: nothing saturates.
    weights = numpy_helper.to_array(next(i for i in onnx.load(str(fp32)).graph.initializer
                                         if i.name + "_quantized" == _weight_name(widened, 2)))
    error = lambda c, s: np.abs(c.astype(np.float32) * s.reshape(-1, 1, 1, 1) - weights).max(axis=(1, 2, 3))
    wide = top == 127
    assert (error(codes, scale)[wide] < error(codes7, scale7)[wide]).all()
    kernels, exact = _run(widened, images, emulate=False), _run(widened, images, emulate=True)
    assert np.abs(kernels - exact).max() < 1e-3 * max(1.0, np.abs(exact).max())


def _weight_name(path, index):
    import onnx

    model = onnx.load(str(path))
    producer = {o: n for n in model.graph.node for o in n.output}
    return producer[[n for n in model.graph.node if n.op_type == "Conv"][index].input[1]].input[0]


def _run(path, images, *, emulate):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if emulate:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


@pytest.mark.parametrize("reduce_range", [True, False])
def test_the_bounded_recipe_is_tried_first_where_weights_are_7_bit(reduce_range):
    from edgecnn.backends.onnxruntime.int8 import OnnxRuntimeInt8

    job = SimpleNamespace(calib_method="minmax", profile=SimpleNamespace(reduce_range=reduce_range), distillable=True)
    recipes = OnnxRuntimeInt8().recipes(job)
    bounded = [r for r in recipes if r.settings.get("pair_bound")]
    # The distilled recipe comes last, on the same weight grid as the plain ones (edgecnn.quantize.distill).
    assert recipes[-1].settings.get("distilled") and recipes[-1].settings["weight_bits"] == (7 if reduce_range else 8)
    if reduce_range:
        assert recipes[0] is bounded[0] and recipes[1].settings["weight_bits"] == 7 and len(recipes) == 4
        scoring = OnnxRuntimeInt8().scoring(job, bounded[0].settings)
        assert scoring["options"] == {} and "cannot saturate" in scoring["arithmetic"]
    else:
        assert not bounded and [r.settings["weight_bits"] for r in recipes] == [8, 8, 8]
