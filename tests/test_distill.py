"""INT8 distillation (edgecnn.quantize.distill): weights tuned on the calibration images so the int8 model agrees
with its own fp32, snapped onto the grid every per-channel quantizer derives, and written back into the model.

Real data: scikit-learn's digits (a small CNN trained on them, calibrated on one part, scored on another).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from torch import nn  # noqa: E402

from export_helpers import digits, fit_on_digits  # noqa: E402


class _Net(nn.Module):
    """Conv+BN+ReLU6, a depthwise conv, a residual add and a linear head: the shapes distillation handles."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.project = nn.Sequential(nn.Conv2d(16, 16, 1, bias=True), nn.BatchNorm2d(16))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x):
        x = self.stem(x)
        return self.head(x + self.project(self.dw(x)))


def _digits(n: int, offset: int) -> np.ndarray:
    """Digits as the export sees them (3 x 32 x 32, [-1, 1]): the training split from `offset`, or the test split
    (offset "test"), which neither the net nor the distillation trained on."""
    train_x, _, test_x, _ = digits()
    return (test_x if offset == "test" else train_x[offset:])[:n]


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    return fit_on_digits(_Net(), epochs=3, lr=1e-2).eval()


def _export(model, path):
    from edgecnn.export.onnx import export_onnx

    export_onnx(model, (3, 32, 32), path, opset=17, sample=_digits(2, 0))
    return path


def _conv_weights(path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {node.name: inits[node.input[1]] for node in model.graph.node
            if node.op_type in ("Conv", "Gemm") and node.input[1] in inits}


@pytest.mark.parametrize("qmax", [127, 64])
def test_tuned_weights_export_onto_the_grid_a_per_channel_quantizer_derives(trained, tmp_path, qmax):
    from edgecnn.quantize.distill import Grid, distilled_copy

    tuned, record = distilled_copy(trained, _digits(64, 0), Grid("asymmetric", qmax), seconds=1e9, max_steps=30)
    assert record["steps"] == 30 and record["grid"].startswith("asymmetric")
    before = _conv_weights(_export(trained, tmp_path / "fp32.onnx"))
    after = _conv_weights(_export(tuned, tmp_path / "tuned.onnx"))
    assert after.keys() == before.keys() and len(after) == 4  # the same graph, the same node names
    moved = 0
    for name, weight in after.items():
        rows = weight.reshape(weight.shape[0], -1) if weight.ndim > 2 or name.endswith("Conv") else weight
        step = np.abs(rows).max(1, keepdims=True) / qmax
        codes = rows / step
        # BN folded back by the export (w / k * k): on the grid to float rounding, so every code is exact.
        assert np.abs(codes - np.round(codes)).max() < 1e-3, name
        original = before[name].reshape(rows.shape)
        moved += int(np.sum(np.round(codes) != np.round(original / (np.abs(original).max(1, keepdims=True) / qmax))))
    assert moved > 0  # training moved some codes (else it did nothing)


def test_distillation_brings_the_int8_model_closer_to_its_fp32(trained, tmp_path):
    """Scored as the search scores: ONNX Runtime's quantizer on the exported file, exact Q/DQ arithmetic,
    on digits the distillation never saw."""
    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8
    from edgecnn.quantize.distill import Grid, distilled_copy

    calibration, held_out = _digits(128, 0), _digits(300, "test")
    tuned, record = distilled_copy(trained, calibration, Grid("asymmetric", 127), seconds=1e9, max_steps=80)
    reference = trained(torch.from_numpy(held_out)).detach().numpy()
    errors = {}
    for tag, model in (("plain", trained), ("distilled", tuned)):
        fp32 = _export(model, tmp_path / f"{tag}.onnx")
        int8 = quantize_onnx_int8(fp32, tmp_path / f"{tag}.int8.onnx", calibration, reduce_range=False).path
        errors[tag] = float(np.mean((_emulated(int8, held_out) - reference) ** 2))
    assert record["kl_last"] < record["kl_first"]
    assert errors["distilled"] < 0.8 * errors["plain"], errors


def _emulated(path, images):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def test_a_model_that_does_not_trace_or_is_too_slow_is_refused_with_the_reason():
    from edgecnn.quantize.distill import DistillUnavailable, Grid, distilled_copy

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x).mean((2, 3)) if x.sum() > 0 else self.conv(-x).mean((2, 3))

    with pytest.raises(DistillUnavailable, match="does not trace"):
        distilled_copy(Branchy(), _digits(8, 0), Grid(), seconds=60)

    ticks = iter(float(t) for t in range(0, 10_000, 5))  # every clock reading 5 s later: 5 s a step
    with pytest.raises(DistillUnavailable, match="fewer than 20 steps fit"):
        distilled_copy(_Net().eval(), _digits(16, 0), Grid(), seconds=40, clock=lambda: next(ticks))


def test_a_recipe_that_cannot_be_written_is_said_and_the_search_goes_on(tmp_path):
    from types import SimpleNamespace

    from edgecnn.quantize import Candidate, Int8Method, Recipe
    from edgecnn.quantize import RecipeUnavailable
    from edgecnn.quantize.fallback import Budget, _try_recipes
    from test_requantize_hook import _RecipeMeasure

    class Recipes(Int8Method):
        def recipes(self, job):
            return [Recipe("plain", {"agreement": 0.975}), Recipe("distilled", {}), Recipe("percentile", {"agreement": 0.98})]

        def write(self, job, recipe, folder):
            if recipe.label == "distilled":
                raise RecipeUnavailable("distillation skipped: the model does not trace with torch.fx")
            (folder / "model.int8.onnx").write_text(str(recipe.settings["agreement"]))
            return Candidate(folder / "model.int8.onnx")

    job = SimpleNamespace(scratch=tmp_path, warnings=[])
    trials = _try_recipes(SimpleNamespace(stage=lambda message: None), _RecipeMeasure(), Recipes(), job,
                          budget=Budget(600.0), rule_p50=10.0)
    assert [t.label for t in trials] == ["recipe: plain", "recipe: percentile"]
    assert job.warnings == ["int8 recipe 'distilled' not tried: distillation skipped: the model does not trace "
                            "with torch.fx"]
    assert 0 < job.search_seconds_left <= 600.0  # what the distillation sizes itself by


def _job(trained, tmp_path, *, distillable: bool):
    from types import SimpleNamespace

    from edgecnn.quantize import Int8Job

    fp32 = _export(trained, tmp_path / "model.fp32.onnx")
    profile = SimpleNamespace(reduce_range=False, opset=17, weight_bits_note="")
    return Int8Job(fp32_path=fp32, calibration=_digits(64, 0), golden_inputs=_digits(16, "test"),
                   scratch=tmp_path / "scratch", input_shape=(3, 32, 32), profile=profile,
                   torch_model=lambda: trained, distillable=distillable, search_seconds_left=120.0)


def test_the_distilled_recipe_comes_last_and_quantizes_the_tuned_graph(trained, tmp_path):
    import onnx

    from edgecnn.backends.onnxruntime.int8 import OnnxRuntimeInt8
    from edgecnn.backends.tensorrt.int8 import TensorRTInt8

    assert not any(r.settings.get("distilled") for r in OnnxRuntimeInt8().recipes(
        _job(trained, tmp_path / "source", distillable=False)))  # an ONNX source: its graph is its own
    job = _job(trained, tmp_path, distillable=True)
    method = OnnxRuntimeInt8()
    recipes = method.recipes(job)
    assert [r.settings.get("distilled", False) for r in recipes] == [False] * (len(recipes) - 1) + [True]
    (tmp_path / "plain").mkdir()
    (tmp_path / "distilled").mkdir()
    plain = method.write(job, recipes[0], tmp_path / "plain").path
    distilled = method.write(job, recipes[-1], tmp_path / "distilled").path
    record = recipes[-1].settings["distillation"]
    assert 0 < record["steps"] <= 300 and record["grid"] == "asymmetric activations, 8-bit per-channel weights"
    names = [[n.name for n in onnx.load(str(p)).graph.node] for p in (plain, distilled)]
    assert names[0] == names[1]  # the same graph: layers can be kept in float and re-quantized by name
    assert method.calibration_record(job, recipes[-1].settings, {})["distillation"] == record
    trt = [r for r in TensorRTInt8().recipes(job) if r.settings.get("distilled")]
    assert len(trt) == 1 and trt[0].settings["symmetric_activations"] and trt[0].label.startswith("symmetric Q/DQ")


def test_one_distillation_serves_the_second_search(trained, tmp_path):
    """The pipeline's second search runs on a copy of the job (dataclasses.replace, another scratch folder): it
    reuses the distilled source instead of training again."""
    from dataclasses import replace

    from edgecnn.quantize.distill import Grid
    from edgecnn.quantize.distilled import distilled_source

    job = _job(trained, tmp_path, distillable=True)
    first = distilled_source(job, Grid())

    def trained_again():
        raise AssertionError("distilled a second time")

    assert distilled_source(replace(job, scratch=tmp_path / "again", torch_model=trained_again), Grid()) == first
    assert distilled_source(job, Grid("symmetric"))[0] != first[0]  # another grid is another distillation
