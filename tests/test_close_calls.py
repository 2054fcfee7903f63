"""A candidate that lands within 10 % of fp32 is timed again side by side with it before "slower than
fp32" decides (timings minutes apart drift by 10-15 % on a shared machine)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgecnn.quantize.fallback import _Measure, _settled
from edgecnn.quantize.gate import Score
from edgecnn.quantize.search import SearchOutcome, Trial
from edgecnn.quantize.timing import CLOSE, is_close


def _trial(p50: float, path: Path | None = None) -> Trial:
    score = Score(agreement=0.99, drop=0.0, top1=None, logit_mse=0.1, passed=True)
    return Trial(label="2 layer(s) in float", float_layers=("a", "b"), score=score, p50_ms=p50, seconds=0.0,
                 artifact=path)


def test_only_a_close_call_is_timed_again():
    assert is_close(5.94, 5.93) and is_close(5.4, 6.0) and not is_close(3.0, 6.0) and not is_close(None, 6.0)
    assert CLOSE == 0.10


@pytest.mark.parametrize("first_p50,side_by_side,status", [
    (5.94, (5.10, 5.90), "fallback"),  # drift said slower; side by side it is faster: kept
    (5.80, (6.10, 5.90), "slower"),    # drift said faster; side by side it is slower: not kept
    (3.00, None, "fallback"),          # not close: the first timing decides, nothing timed again
])
def test_side_by_side_timing_decides_a_close_call(tmp_path, first_p50, side_by_side, status):
    calls = []

    class SideBySide:  # the Measure the search is handed; only its side-by-side timing is asked here
        def side_by_side(self, runtime, candidate, fp32, sample):
            calls.append((candidate.name, fp32.name))
            return {"p50_ms": side_by_side[0], "fp32_p50_ms": side_by_side[1], "method": "test"}

    request = SimpleNamespace(stage=lambda message: None, input_shape=(1, 3, 8, 8), inputs=np.zeros((1, 3, 8, 8)))
    measure = _Measure(request, "onnxruntime", tmp_path / "fp32.onnx", SideBySide())
    mix = _trial(first_p50, tmp_path / "mix.onnx")
    first = "slower" if first_p50 >= 5.93 else "fallback"
    outcome = SearchOutcome(first, mix if first == "fallback" else None, [mix], mix)
    settled = _settled(measure, outcome, 5.93)
    assert settled.status == status and (settled.chosen is mix) == (status == "fallback")
    assert len(calls) == (0 if side_by_side is None else 1)
    if side_by_side is not None:
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
