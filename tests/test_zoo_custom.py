"""The architectures edgecnn writes itself (LeNet-5, MobileNet v1, ShuffleNet v1) match their papers."""

from __future__ import annotations

import pytest
import torch

from edgecnn.zoo import get_spec
from edgecnn.zoo.profile import profile_model

CUSTOM_MODELS = ["lenet5", "mobilenet_v1", "shufflenet_v1_g3", "shufflenet_v1_g8"]

# Table I of LeCun et al. 1998, typed in again here (not imported) so the test checks the module
# against the paper rather than against itself: C3 map -> the S2 maps it sees.
PAPER_C3_TABLE = {
    0: {0, 1, 2}, 1: {1, 2, 3}, 2: {2, 3, 4}, 3: {3, 4, 5}, 4: {4, 5, 0}, 5: {5, 0, 1},
    6: {0, 1, 2, 3}, 7: {1, 2, 3, 4}, 8: {2, 3, 4, 5}, 9: {3, 4, 5, 0}, 10: {4, 5, 0, 1}, 11: {5, 0, 1, 2},
    12: {0, 1, 3, 4}, 13: {1, 2, 4, 5}, 14: {0, 2, 3, 5},
    15: {0, 1, 2, 3, 4, 5},
}


def _within(value: float, target: float, tolerance: float = 0.02) -> bool:
    return abs(value - target) <= tolerance * target


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def test_registrations_are_edgecnn_specs():
    for name in CUSTOM_MODELS:
        spec = get_spec(name)
        assert spec.source == "edgecnn"
        assert spec.weights is None
    assert get_spec("lenet").name == "lenet5"
    assert get_spec("lenet5").input_size == (1, 32, 32)
    assert get_spec("lenet5").family == "baseline"
    for name in CUSTOM_MODELS[1:]:
        assert get_spec(name).input_size == (3, 224, 224)
        assert get_spec(name).family == "lightweight"


def test_lenet5_layer_parameters_match_the_paper():
    model = get_spec("lenet5").build(num_classes=10)
    per_layer = {name: sum(p.numel() for p in module.parameters()) for name, module in model.named_children()}
    expected = {"c1": 156, "s2": 12, "c3": 1_516, "s4": 32, "c5": 48_120, "f6": 10_164, "output": 84 * 10 + 10}
    for name, params in expected.items():
        assert per_layer[name] == params, name


def test_lenet5_profile_shows_c3_as_one_layer():
    spec = get_spec("lenet5")
    rows = {row.name: row for row in profile_model(spec.build(num_classes=10), spec.input_size).layers}
    assert rows["c3"].params == 1_516
    assert rows["c3"].output_shape == [16, 10, 10]
    assert rows["c3"].macs == 1_500 * 10 * 10  # 60 connections x 25 weights, over the 10x10 map
    assert not any(name.startswith("c3.") for name in rows)


def test_lenet5_c3_follows_the_paper_connection_table():
    c3 = get_spec("lenet5").build(num_classes=10).c3.eval()
    s2_output = torch.randn(1, 6, 14, 14)
    with torch.no_grad():
        base = c3(s2_output)
        for input_map in range(6):
            perturbed = s2_output.clone()
            perturbed[:, input_map] += 1.0
            changed = (c3(perturbed) - base).abs().amax(dim=(0, 2, 3)) > 1e-6
            expected = torch.tensor([input_map in PAPER_C3_TABLE[k] for k in range(16)])
            assert torch.equal(changed, expected), f"S2 map {input_map}"


def test_lenet5_rejects_inputs_below_32():
    model = get_spec("lenet5").build(num_classes=10).eval()
    with pytest.raises(RuntimeError), torch.no_grad():
        model(torch.zeros(1, 1, 31, 31))


def test_mobilenet_v1_size_and_cost_match_the_paper():
    spec = get_spec("mobilenet_v1")
    profile = profile_model(spec.build(num_classes=1000), spec.input_size)
    assert _within(profile.total_params, 4.2e6), profile.total_params
    assert _within(profile.total_macs, 569e6), profile.total_macs


@pytest.mark.parametrize("name", ["shufflenet_v1_g3", "shufflenet_v1_g8"])
def test_shufflenet_v1_cost_matches_the_paper(name):
    spec = get_spec(name)
    profile = profile_model(spec.build(num_classes=1000), spec.input_size)
    assert _within(profile.total_macs, 140e6), profile.total_macs


@pytest.mark.parametrize("name", CUSTOM_MODELS)
def test_forward_at_the_smallest_input(name):
    spec = get_spec(name)
    model = spec.build(num_classes=10).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, spec.channels, spec.min_size, spec.min_size))
    assert logits.shape == (2, 10)


def test_channel_shuffle_is_the_papers_permutation():
    from edgecnn.zoo.shufflenet_v1 import channel_shuffle

    # 3 groups of 2 channels: (0 1)(2 3)(4 5) -> take one channel from each group in turn.
    x = torch.arange(6, dtype=torch.float32).view(1, 6, 1, 1).expand(2, 6, 3, 3)
    shuffled = channel_shuffle(x, groups=3)
    assert shuffled[0, :, 0, 0].tolist() == [0, 2, 4, 1, 3, 5]
    assert torch.equal(shuffled[1], shuffled[0])
    # 2 groups of 3: (0 1 2)(3 4 5) -> 0 3 1 4 2 5
    assert channel_shuffle(x, groups=2)[0, :, 0, 0].tolist() == [0, 3, 1, 4, 2, 5]


@pytest.mark.parametrize("name, side", [("lenet5", 32), ("shufflenet_v1_g3", 64)])
def test_onnx_export_with_dynamic_batch(name, side, tmp_path):
    onnx = pytest.importorskip("onnx")
    spec = get_spec(name)
    model = spec.build(num_classes=10).eval()
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(
        model,
        (torch.randn(1, spec.channels, side, side),),
        str(path),
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,
    )
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    ops = {node.op_type for node in graph.graph.node}
    if name == "lenet5":
        assert "Gather" in ops and "Split" in ops  # C3: one gather, one split, grouped convs
    else:
        assert {"Reshape", "Transpose"} <= ops  # the channel shuffle

    ort = pytest.importorskip("onnxruntime")
    batch = torch.randn(3, spec.channels, side, side)
    with torch.no_grad():
        expected = model(batch).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": batch.numpy()})
    assert logits.shape == (3, 10)
    assert abs(logits - expected).max() < 1e-4
