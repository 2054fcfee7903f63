"""OpenVINO: 8-bit weights only where x86's int16 pair sums cannot saturate (edgecnn.backends.openvino.pair_bound)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")
torch = pytest.importorskip("torch")

_LAYERS = ("Convolution", "GroupConvolution", "MatMul")

# ONNX Runtime's test model (the openvino extra installs ONNX Runtime too): a stem, a depthwise conv whose
# high channels would overflow int16 pairs at 8 bits, a 1x1 conv whose output channel 0 is built to saturate.
from test_pair_bound import _Net  # noqa: E402


@pytest.fixture(scope="module")
def irs(tmp_path_factory):
    """The fp32 ONNX, the pair-bound IR (with its counts) and NNCF's plain 8-bit IR of _Net."""
    from edgecnn.backends.openvino.pair_bound import quantize_pair_bound
    from edgecnn.backends.openvino.quantize import quantize_openvino_int8
    from edgecnn.export.onnx import export_onnx

    folder = tmp_path_factory.mktemp("ovpb")
    images = np.random.default_rng(0).uniform(0, 1, (16, 3, 12, 12)).astype(np.float32)
    fp32 = folder / "fp32.onnx"
    export_onnx(_Net().eval(), (3, 12, 12), fp32, opset=17, sample=images[:2])
    mixed, counts = quantize_pair_bound(fp32, folder / "mixed.xml", images, preset="mixed")
    eight = quantize_openvino_int8(fp32, folder / "w8.xml", images, preset="mixed", reduce_range=False)
    return SimpleNamespace(images=images, fp32=fp32, mixed=mixed.xml_path, eight=eight.xml_path, counts=counts)


def _weights(path) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """Per conv / fully connected layer: (codes [O, I/g, kh, kw], scale [O], group)."""
    import openvino as ov

    from edgecnn.backends.openvino.pair_bound import weight_codes

    found = {}
    for op in ov.Core().read_model(str(path)).get_ordered_ops():
        if op.get_type_name() in _LAYERS and (w := weight_codes(op)) is not None:
            group = op.input_value(1).get_partial_shape()[0].get_length() if op.get_type_name() == "GroupConvolution" else 1
            found[op.get_friendly_name()] = (w[2].astype(np.int64), w[3], group)
    return found


def _run(path, images, *, emulate: bool) -> np.ndarray:
    import openvino as ov

    from edgecnn.backends.openvino.emulate import emulate_fake_quantize

    core = ov.Core()
    model = core.read_model(str(path))
    if emulate:
        assert emulate_fake_quantize(model) > 0
    return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(images)[0]


def _top(codes: np.ndarray) -> np.ndarray:
    return np.abs(codes).reshape(len(codes), -1).max(axis=1)


def test_saturating_channels_stay_7_bit_the_rest_widen_and_the_kernels_equal_exact_arithmetic(irs):
    import openvino as ov

    from edgecnn.backends.openvino.pair_bound import PAIR_LIMIT, activation_code_max, pair_bound

    mixed, eight = _weights(irs.mixed), _weights(irs.eight)
    names = list(mixed)
    assert len(names) == 4 and irs.counts["layers"] == 3  # the depthwise conv is not bounded: it stays 8-bit
    assert 0 < irs.counts["channels_8bit"] < irs.counts["channels"] == 8 + 6 + 5
    stem, depthwise, point, head = (mixed[n] for n in names)
    model = ov.Core().read_model(str(irs.mixed))
    codes = activation_code_max(model, irs.images)
    feeds = {op.get_friendly_name(): op.input_value(0).get_node() for op in model.get_ordered_ops()
             if op.get_type_name() in _LAYERS}
    acts = {name: codes[feeds[name].get_friendly_name()] for name in names}  # each layer's input codes
    # NNCF's overflow fix on one channel: the scale doubles (range +-2 max|w| on 255 levels), codes within +-64
    point_top, point8_top = _top(point[0]), _top(eight[names[2]][0])
    assert (point8_top == 127).all()
    assert point_top[0] <= 64 and np.isclose(point[1][0], 2 * eight[names[2]][1][0], rtol=1e-5)
    wide = point_top == 127
    assert wide.sum() >= 3 and np.allclose(point[1][wide], eight[names[2]][1][wide], rtol=1e-5)
    assert (_top(stem[0]) <= 64).all()  # random inputs reach code 255 on all three channels: 7-bit throughout
    assert (_top(depthwise[0]) == 127).all()  # depthwise: 8-bit (NNCF's fix leaves it alone)
    assert acts[names[1]][:2].min() >= 200  # with codes whose 8-bit pairs would overflow int16
    # the channel built to saturate would (its inputs reach high codes), the widened ones cannot
    assert acts[names[2]][:2].min() >= 200
    assert pair_bound(eight[names[2]][0][:1], acts[names[2]], 1, even_pairs=True)[0] > PAIR_LIMIT
    assert pair_bound(point[0][wide], acts[names[2]], 1, even_pairs=True).max() <= PAIR_LIMIT
    assert pair_bound(head[0][_top(head[0]) == 127], acts[names[3]], 1, even_pairs=False).max() <= PAIR_LIMIT
    # OpenVINO's int8 kernels on this host give the exact emulation's logits: nothing saturates, not even the
    # depthwise conv's 8-bit pairs (its AVX2 kernel widens to int32 before adding)
    kernels, exact = _run(irs.mixed, irs.images, emulate=False), _run(irs.mixed, irs.images, emulate=True)
    assert np.abs(kernels - exact).max() < 1e-4 * max(1.0, np.abs(exact).max())


def test_the_even_pair_bound_adds_channels_2k_and_2k_plus_1_only():
    from edgecnn.backends.openvino.pair_bound import pair_bound

    codes = np.zeros((3, 5, 1, 1), dtype=np.int8)
    codes[0, 1:3, 0, 0] = 127  # an odd pair (1, 2): never added together by the 1x1 kernel
    codes[1, 2:4, 0, 0] = 127  # an even pair (2, 3)
    codes[2, 4, 0, 0] = -127  # the unpaired last channel
    acts = np.full(5, 255)
    assert list(pair_bound(codes, acts, 1, even_pairs=True)) == [255 * 127, 255 * 254, 255 * 127]
    assert list(pair_bound(codes, acts, 1, even_pairs=False)) == [255 * 254, 255 * 254, 255 * 127]


class _Pair(torch.nn.Module):
    """A 1x1 conv (16 inputs) whose output channel 0 has two large equal weights on inputs `pair`."""

    def __init__(self, pair):
        super().__init__()
        self.conv = torch.nn.Conv2d(16, 4, 1, bias=False)
        with torch.no_grad():
            self.conv.weight[:] = 0.001
            self.conv.weight[0, list(pair)] = 1.0

    def forward(self, x):
        return self.conv(torch.relu(x))


@pytest.mark.parametrize("pair, saturates", [((2, 3), True), ((1, 2), False)])
def test_the_cpu_plugins_1x1_kernel_pairs_even_and_odd_input_channels(tmp_path, pair, saturates):
    """8-bit codes 127 on both channels of the pair, both activations at code 255: 2 x 255 x 127 > 32767."""
    from edgecnn.backends.openvino.quantize import quantize_openvino_int8
    from edgecnn.export.onnx import export_onnx
    from edgecnn.host import int8_accumulates_exactly

    if saturates and int8_accumulates_exactly():
        pytest.skip("this CPU's int8 kernels accumulate in int32 (VNNI or not x86): nothing saturates")
    images = np.abs(np.random.default_rng(0).normal(0, 1, (4, 16, 6, 6))).astype(np.float32)
    images[:, list(pair)] = 3.0
    export_onnx(_Pair(pair).eval(), (16, 6, 6), tmp_path / "fp32.onnx", opset=17, sample=images[:2])
    q = quantize_openvino_int8(tmp_path / "fp32.onnx", tmp_path / "w8.xml", images, preset="mixed",
                               reduce_range=False)
    gap = np.abs(_run(q.xml_path, images, emulate=False) - _run(q.xml_path, images, emulate=True)).max()
    assert bool(gap > 0.1) == saturates


def test_all_8_bit_weights_saturate_this_hosts_kernels(irs):
    from edgecnn.host import int8_accumulates_exactly

    if int8_accumulates_exactly():
        pytest.skip("this CPU's int8 kernels accumulate in int32 (VNNI or not x86): 8-bit weights do not saturate")
    kernels, exact = _run(irs.eight, irs.images, emulate=False), _run(irs.eight, irs.images, emulate=True)
    assert np.abs(kernels - exact).max() > 1e-2 * max(1.0, np.abs(exact).max())


@pytest.mark.parametrize("reduce_range", [True, False])
def test_the_pair_bound_recipe_is_tried_first_where_weights_are_7_bit(reduce_range):
    import json

    from edgecnn.backends.openvino.int8 import OpenVinoInt8

    job = SimpleNamespace(profile=SimpleNamespace(reduce_range=reduce_range))
    recipes = OpenVinoInt8().recipes(job)
    bounded = [r for r in recipes if r.settings.get("pair_bound")]
    json.dumps([r.settings for r in recipes])
    if reduce_range:
        assert recipes[0] is bounded[0] and recipes[0].settings["preset"] == "mixed" and len(recipes) == 3
        assert recipes[1].settings["weight_bits"] == 7
        scoring = OpenVinoInt8().scoring(job, bounded[0].settings)
        assert scoring["options"] == {} and "cannot saturate" in scoring["arithmetic"]
    else:
        assert not bounded and [r.settings["weight_bits"] for r in recipes] == [8, 8]


def test_a_layer_the_bound_did_not_see_takes_7_bits(irs, tmp_path):
    """No mask for a layer (its weights were unreadable in the first pass): its weight quantizer takes the
    overflow fix's range, never 8-bit codes that nothing checked."""
    from edgecnn.backends.openvino.pair_bound import _half_range_where_unsafe
    from edgecnn.backends.openvino.quantize import quantize_openvino_int8

    with _half_range_where_unsafe({}):
        q = quantize_openvino_int8(irs.fp32, tmp_path / "none.xml", irs.images, preset="mixed", reduce_range=False)
    tops = [int(np.abs(codes).max()) for codes, _, _ in _weights(q.xml_path).values()]
    assert tops and max(tops) <= 64
    assert max(int(np.abs(c).max()) for c, _, _ in _weights(irs.eight).values()) > 64  # without it: 8-bit codes
