"""Every speed decision of the INT8 search is taken side by side: a passing candidate is timed again
interleaved with fp32 before "slower than fp32" decides, on the paired ratio of the rounds (two timings
minutes apart drift by 3x on a busy machine). One test runs the timing beside busy processes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgecnn.quantize.fallback import _Measure, _settled
from edgecnn.quantize.gate import Score
from edgecnn.quantize.search import SearchOutcome, Trial


def _trial(p50: float, path: Path | None = None) -> Trial:
    score = Score(agreement=0.99, drop=0.0, top1=None, logit_mse=0.1, passed=True)
    return Trial(label="2 layer(s) in float", float_layers=("a", "b"), score=score, p50_ms=p50, seconds=0.0,
                 artifact=path)


@pytest.mark.parametrize("first_p50,side_by_side,status", [
    (5.94, (5.10, 5.90), "fallback"),  # drift said slower; side by side it is faster: kept
    (5.80, (6.10, 5.90), "slower"),    # drift said faster; side by side it is slower: not kept
    (17.8, (4.10, 5.90), "fallback"),  # 3x drift (a busy machine): side by side still decides
    (3.00, (6.50, 5.90), "slower"),    # far apart is no reason to trust two timings minutes apart
])
def test_side_by_side_timing_decides_a_close_call(tmp_path, first_p50, side_by_side, status):
    calls = []

    class SideBySide:  # the Measure the search is handed; only its side-by-side timing is asked here
        def side_by_side(self, runtime, candidate, fp32, sample):
            calls.append((candidate.name, fp32.name))
            return {"p50_ms": side_by_side[0], "fp32_p50_ms": side_by_side[1], "method": "test"}

    request = SimpleNamespace(stage=lambda message: None, input_shape=(1, 3, 8, 8), inputs=np.zeros((1, 3, 8, 8)))
    method = SimpleNamespace(runtime="onnxruntime", timed=True)
    measure = _Measure(request, method, SimpleNamespace(fp32_path=tmp_path / "fp32.onnx"), SideBySide())
    mix = _trial(first_p50, tmp_path / "mix.onnx")
    first = "slower" if first_p50 >= 5.93 else "fallback"
    outcome = SearchOutcome(first, mix if first == "fallback" else None, [mix], mix)
    settled = _settled(measure, outcome, 5.93)
    assert settled.status == status and (settled.chosen is mix) == (status == "fallback")
    assert len(calls) == 1
    assert mix.to_dict()["interleaved_with_fp32"]["p50_ms"] == side_by_side[0]  # recorded in the trace


def test_interleaved_timing_runs_both_files(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from edgecnn.bench.candidates import RunnerMeasure

    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])], [weight])
    path = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    result = RunnerMeasure((3, 16, 16)).side_by_side("onnxruntime", path, path,
                                                      np.zeros((1, 3, 16, 16), dtype=np.float32))
    assert result["p50_ms"] > 0 and result["fp32_p50_ms"] > 0 and "alternating" in result["method"]


def _conv_stack(path: Path, depth: int) -> Path:
    """`depth` 3x3 convolutions of 32 channels on 32x32: time grows with depth."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights, previous = [], [], "x"
    for index in range(depth):
        weights.append(numpy_helper.from_array(rng.normal(0, 0.05, (32, 32, 3, 3)).astype(np.float32), f"w{index}"))
        nodes.append(helper.make_node("Conv", [previous, f"w{index}"], [f"y{index}"], pads=[1, 1, 1, 1]))
        previous = f"y{index}"
    graph = helper.make_graph(nodes, "stack", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 32, 32])],
                              [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [1, 32, 32, 32])], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_side_by_side_decides_right_beside_busy_processes(tmp_path):
    """Two busy processes share the cores while a file twice as deep as another is timed against it: the
    paired ratio still says which is faster, both ways round, and the load it ran under is recorded."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import subprocess
    import sys

    from edgecnn.bench.candidates import RunnerMeasure

    light, heavy = _conv_stack(tmp_path / "light.onnx", 4), _conv_stack(tmp_path / "heavy.onnx", 8)
    sample = np.random.default_rng(1).normal(size=(1, 32, 32, 32)).astype(np.float32)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        measure = RunnerMeasure((32, 32, 32))
        slower = measure.side_by_side("onnxruntime", heavy, light, sample)
        faster = measure.side_by_side("onnxruntime", light, heavy, sample)
    finally:
        for process in busy:
            process.kill()
    assert slower["ratio"] > 1.2 and faster["ratio"] < 1 / 1.2, (slower, faster)
    decided = _trial(1.0, heavy)
    decided.interleaved = slower
    assert decided.slower_than(100.0)  # the paired ratio decides, not a far-off fp32 number
    assert len(slower["load_average"]) == 2 and all(v is None or v >= 0 for v in slower["load_average"])


def test_rounds_that_disagree_are_timed_longer(monkeypatch, tmp_path):
    """A comparison whose rounds split both ways is not decided on the first ROUNDS: more are timed, up to
    MAX_ROUNDS; one whose rounds agree stops at ROUNDS. The count is recorded."""
    from edgecnn.bench import candidates

    ran: list[str] = []

    class Runner:
        def __init__(self, name):
            self.name = name

        def run(self, batch):
            ran.append(self.name)

        def close(self):
            pass

    monkeypatch.setattr("edgecnn.inference.load_runner", lambda runtime, path, **kwargs: (Runner(path.name), 1))
    sample = np.zeros((1, 3, 8, 8), dtype=np.float32)
    # the candidate's time per round (fp32 always 2 ms): always faster, or faster and slower by turns
    for candidate_ms, rounds in (((1.0,), candidates.ROUNDS), ((1.0, 1.0, 3.0, 3.0), candidates.MAX_ROUNDS)):
        timed = []

        def fake_time(invoke, **kwargs):
            invoke()
            timed.append(ran[-1])
            ms = candidate_ms[(timed.count("c") - 1) % len(candidate_ms)] if ran[-1] == "c" else 2.0
            return [int(ms * 1e6)]

        monkeypatch.setattr(candidates, "time_invokes", fake_time)
        result = candidates.RunnerMeasure((3, 8, 8)).side_by_side("onnxruntime", tmp_path / "c", tmp_path / "f",
                                                                  sample)
        assert result["rounds"] == rounds and timed.count("c") == timed.count("f") == rounds, (candidate_ms, result)
        assert f"{rounds} rounds" in result["method"]
    assert candidates._agreeing_share([0.5, 0.6, 1.2, 0.7]) == 0.75
