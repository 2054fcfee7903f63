"""The same INT8 answer on every host: candidates are scored in the device's arithmetic, not this host's.

ONNX Runtime's u8*s8 kernels on x86 without VNNI sum pairs of products in int16 and saturate with 8-bit
weights; a VNNI CPU and TensorRT on a GPU accumulate in int32. So 8-bit candidates for a VNNI profile or for
TensorRT are scored, on a host without VNNI, by an exact float emulation of their Q/DQ graph (ONNX Runtime
with graph optimizations off), and on a host with VNNI by its kernels (exact there). Either way the recorded
agreement is the emulation's, which these tests recompute. The export also reports the gate on a part of the
golden set the search never chose on (odd positions; the search chose on even ones).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")


def _host_has_vnni() -> bool:
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), [])
    return "avx512_vnni" in flags or "avx_vnni" in flags


def test_this_host_s_int8_arithmetic_is_read_from_the_cpu_flags():
    import platform

    from edgecnn.host import int8_accumulates_exactly

    if platform.machine() != "x86_64":
        pytest.skip("the cpu flags rule is x86's")
    assert int8_accumulates_exactly() is _host_has_vnni()


@pytest.mark.parametrize("reduce_range", [True, False])
def test_onnxruntime_emulates_only_what_this_host_would_saturate(monkeypatch, reduce_range):
    from edgecnn.backends.onnxruntime.int8 import OnnxRuntimeInt8
    from edgecnn.backends.tensorrt.int8 import TensorRTInt8

    for exact in (True, False):
        monkeypatch.setattr("edgecnn.host.int8_accumulates_exactly", lambda exact=exact: exact)
        ort = OnnxRuntimeInt8().scoring(None, {"reduce_range": reduce_range})
        trt = TensorRTInt8().scoring(None, {"reduce_range": False})
        emulates = not reduce_range and not exact
        assert (ort["options"] == {"graph_optimization": "disable"}) is emulates, ort
        assert ("emulation" in ort["arithmetic"]) is emulates
        assert (trt["options"] == {"graph_optimization": "disable"}) is (not exact)
        assert trt["emulate_without_vnni"] is True and ort.get("emulate_without_vnni", False) is (not reduce_range)


def _emulated_agreement(path: Path, inputs: np.ndarray, reference: np.ndarray) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    logits = np.concatenate([session.run(None, {name: inputs[i:i + 32]})[0] for i in range(0, len(inputs), 32)])
    return float(np.mean(logits.argmax(1) == reference.argmax(1)))


@pytest.mark.parametrize("target", ["onnx-vnni", "jetson"])
def test_8_bit_candidates_are_scored_as_the_device_computes_them(cli, lenet_checkpoint, tmp_path, target):
    out = tmp_path / target
    result = cli("export", str(lenet_checkpoint), "--target", target, "--precision", "int8", "--out", str(out),
                 "--golden-size", "120", "--max-drop", "5", "--min-agreement", "0.9")
    assert result.exit_code == 0, result.stderr + result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    entries = [a for a in manifest["artifacts"] if a["precision"] == "int8" and a["format"] == "onnx"]
    assert len(entries) == 1, (manifest["artifacts"], manifest.get("int8_search"), result.stdout)
    (entry,) = entries
    record = entry["int8"]
    assert record["recipe"]["reduce_range"] is False  # 8-bit weights: the VNNI CPU / the GPU runs them
    assert ("emulation" in record["scored_with"]) is (not _host_has_vnni())
    assert entry["emulate_without_vnni"] is True
    golden = np.load(out / "golden.npz")
    search, report = np.arange(120)[0::2], np.arange(120)[1::2]
    first = record["trace"][0]
    expected = _emulated_agreement(out / entry["path"], golden["inputs"][search], golden["logits"][search])
    assert abs(first["agreement"] - expected) <= 1 / len(search) + 1e-9, (first, expected)
    part = record["report_part"]
    assert part["samples"] == len(report) and record["search_part"]["samples"] == len(search)
    expected = _emulated_agreement(out / entry["path"], golden["inputs"][report], golden["logits"][report])
    assert abs(part["agreement"] - expected) <= 1 / len(report) + 1e-9, (part, expected)
    assert "did not choose on" in " ".join(result.stdout.split())


def test_the_golden_set_is_split_into_disjoint_halves_unless_small():
    from edgecnn.pipeline.int8 import MIN_SPLIT, golden_parts

    chooses, reports = golden_parts(120)
    assert len(chooses) == len(reports) == 60 and not set(chooses) & set(reports)
    chooses, reports = golden_parts(MIN_SPLIT - 1)
    assert len(chooses) == MIN_SPLIT - 1 and len(reports) == 0


@pytest.mark.parametrize("second,report,kept", [
    ("passes", 0.99, "second choice"),      # held to the aim, it holds on the unseen part too: shipped
    ("passes", 0.90, "first choice"),       # does worse there: the first stays (the warning says it misses)
    ("slower", None, "first choice"),       # what holds buys no speed: no better choice, the first stays
    ("nothing", None, "first choice"),      # nothing passes the aim in the budget left: the first stays
])
def test_a_choice_that_misses_on_the_unseen_part_is_searched_again_at_the_aim(monkeypatch, tmp_path, second,
                                                                             report, kept):
    from dataclasses import dataclass
    from types import SimpleNamespace

    from edgecnn.errors import CheckFailedError
    from edgecnn.pipeline import int8 as step
    from edgecnn.quantize import AIM_AGREEMENT, Gate

    first = SimpleNamespace(seconds=10.0, recipe={"label": "r"}, float_layers=[], artifact=tmp_path / "first")
    searched = []

    def search_int8(request, method, job, measure):
        searched.append((request, job))
        if second == "nothing":
            raise CheckFailedError("nothing passes")
        return SimpleNamespace(recipe={"label": "r"}, float_layers=[{"user_name": "x"}], status="fallback",
                               artifact=None if second == "slower" else tmp_path / "second", note="slower note")

    monkeypatch.setattr("edgecnn.quantize.search_int8", search_int8)
    monkeypatch.setattr(step, "_request", lambda ctx, gate, chooses, budget: SimpleNamespace(gate=gate, budget=budget))
    monkeypatch.setattr(step, "_report_part", lambda *a, **k: {"agreement": report, "passed": report and report > .97})
    @dataclass
    class Job:  # the search again gets its own scratch folder (dataclasses.replace of the job)
        scratch: Path

    ctx = SimpleNamespace(request=SimpleNamespace(search_budget=60.0), stage=lambda message: None)
    first_report = {"agreement": 0.95, "passed": False}
    decision, kept_report, record = step._search_again(
        ctx, Gate(max_drop=1.0, min_agreement=0.97), first, first_report, method=None, job=Job(tmp_path),
        parts=([0], [1]), measure=None)
    assert record["kept"] == kept and record["gate"] == {"max_drop": 0.5, "min_agreement": AIM_AGREEMENT}
    (request, used_job), = searched
    assert request.budget == 50.0 and used_job.scratch == tmp_path / "again"  # the budget left; its own folder
    assert (decision is first) is (kept == "first choice")
    assert decision.artifact is not None


@pytest.mark.parametrize("whole_agreement,kept", [(0.975, True), (0.966, False)])
def test_a_choice_that_misses_on_the_whole_golden_set_is_not_kept(monkeypatch, tmp_path, whole_agreement, kept):
    """Verify checks the whole golden set: export does not ship a file that verify would fail (issue 22)."""
    from types import SimpleNamespace

    from edgecnn.pipeline import int8 as step
    from edgecnn.quantize import Gate, Int8Status
    from edgecnn.quantize.fallback import Int8Decision

    scored = []

    def report_part(ctx, gate, decision, *, method, job, reports):
        scored.append(list(reports))
        return {"samples": len(reports), "positions": "odd", "agreement": whole_agreement, "drop": 0.0,
                "passed": whole_agreement >= gate.min_agreement}

    monkeypatch.setattr(step, "_report_part", report_part)
    first = Int8Decision(status=Int8Status.INT8, artifact=tmp_path / "int8.onnx", recipe={"label": "minmax"},
                         float_layers=[{"user_name": "fc"}], trace=[], sensitivity=[], fp32_p50_ms=1.0,
                         full_int8_p50_ms=0.7, seconds=1.0)
    ctx = SimpleNamespace(reference=np.zeros((6, 10)))
    decision, whole = step._held_on_the_whole(ctx, Gate(max_drop=1.0, min_agreement=0.97), first, method=None, job=None)
    assert scored == [list(range(6))] and whole["positions"] == "all"  # scored on every golden sample
    if kept:
        assert decision is first
    else:
        assert decision.artifact is None and decision.status == Int8Status.MISSED
        assert "whole set verify checks" in decision.note and "minmax, 1 layer in float" in decision.note


def _saturating_ir():
    """u8 activations at 255 times s8 weights at +-127: adjacent pairs sum past int16 (vpmaddubsw saturates)."""
    ov = pytest.importorskip("openvino")
    import openvino.opset13 as ops

    x = ops.parameter([1, 16, 4, 4], np.float32, name="x")
    low, high = ops.constant(np.float32(0)), ops.constant(np.float32(2.55))
    activations = ops.fake_quantize(x, low, high, low, high, 256)
    weights = np.full((8, 16, 1, 1), 1.27, np.float32)
    weights[1::2] *= -1
    w_low, w_high = ops.constant(np.full((8, 1, 1, 1), -1.28, np.float32)), ops.constant(np.full((8, 1, 1, 1), 1.27,
                                                                                                 np.float32))
    quantized = ops.fake_quantize(ops.constant(weights), w_low, w_high, w_low, w_high, 256)
    conv = ops.convolution(activations, quantized, [1, 1], [0, 0], [0, 0], [1, 1])
    return ov.Model([conv], [x])


def _exact(inputs: np.ndarray) -> np.ndarray:
    """The conv above in exact integer arithmetic (what a VNNI CPU computes), scaled back to float."""
    q_in = np.clip(np.round(np.clip(inputs, 0, 2.55) / 0.01), 0, 255).astype(np.int64)
    q_w = np.where(np.arange(8)[:, None] % 2 == 1, -127, 127) * np.ones((8, 16), np.int64)
    return np.einsum("nchw,oc->nohw", q_in, q_w).astype(np.float64) * 0.01 * 0.01


def test_openvino_int8_ir_is_emulated_exactly_where_this_host_would_saturate(tmp_path):
    import openvino as ov

    from edgecnn.backends.openvino.runner import OpenVinoRunner

    xml = tmp_path / "sat.xml"
    ov.save_model(_saturating_ir(), str(xml), compress_to_fp16=False)
    rng = np.random.default_rng(0)
    inputs = np.concatenate([np.full((1, 16, 4, 4), 2.55, np.float32),
                             rng.uniform(-1, 3, (1, 16, 4, 4)).astype(np.float32)])
    outputs = {}
    for mode in ("kernels", "emulate"):
        runner = OpenVinoRunner().load(xml, threads=1, batch=1, precision="int8", fake_quantize=mode)
        rows = []
        for image in inputs:
            runner.bind(image[None])
            runner.invoke()
            rows.append(runner.fetch())
        outputs[mode] = np.concatenate(rows)
        assert ("fake_quantize" in runner.applied) is (mode == "emulate")
        runner.close()
    exact = _exact(inputs)
    np.testing.assert_allclose(outputs["emulate"], exact, rtol=1e-5, atol=1e-4)
    if not _host_has_vnni():  # the kernels of an AVX2 host halve the all-255 sums (int16 saturation)
        assert np.abs(outputs["kernels"][0] - exact[0]).max() > 10, (outputs["kernels"][0, :, 0, 0], exact[0, :, 0, 0])


def test_openvino_scores_8_bit_weights_in_the_vnni_device_s_arithmetic(monkeypatch):
    from edgecnn.backends.openvino.int8 import OpenVinoInt8

    for exact in (True, False):
        monkeypatch.setattr("edgecnn.host.int8_accumulates_exactly", lambda exact=exact: exact)
        seven = OpenVinoInt8().scoring(None, {"reduce_range": True})
        eight = OpenVinoInt8().scoring(None, {"reduce_range": False})
        assert seven["options"] == {} and not seven.get("emulate_without_vnni")
        assert eight["emulate_without_vnni"] is True
        assert (eight["options"] == {"fake_quantize": "emulate"}) is (not exact), eight
        assert ("emulation" in eight["arithmetic"]) is (not exact)


def test_verify_checks_a_bundle_in_the_arithmetic_its_manifest_records(monkeypatch):
    from types import SimpleNamespace

    from edgecnn.verify import run

    monkeypatch.setattr("edgecnn.host.int8_accumulates_exactly", lambda: False)
    bundle = SimpleNamespace(artifact_path=lambda entry: Path("/nonexistent") / entry.path)
    for extra, expected in (({"emulate_without_vnni": True, "emulation_options": {"fake_quantize": "emulate"}},
                             {"fake_quantize": "emulate"}),
                            ({"emulate_without_vnni": True}, {"graph_optimization": "disable"}),  # older bundles
                            ({}, {})):
        entry = SimpleNamespace(input={}, precision="int8", extra=extra, path="m", format="openvino",
                                runtime="openvino")
        options = run._bundle_target(bundle, entry, (3, 8, 8)).options
        assert {k: options[k] for k in options if k in ("fake_quantize", "graph_optimization")} == expected
