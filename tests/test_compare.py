"""`edgecnn compare`: the front and the budget choice on hand-made rows, the cache and resume with the
measuring faked, and one real run of the CLI on two tiny zoo models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecnn.compare_models import CandidateResult, best_under_budget, dominates, pareto_front
from edgecnn.compare_models.pareto import answer_for_device, answers
from edgecnn.compare_models.results import FAILED


def row(source: str, top1: float, p50: float, *, size: float = 1.0, precision: str = "fp32", target: str = "onnx",
        device: str = "pi", **extra) -> CandidateResult:
    return CandidateResult(source=source, target=target, precision=precision, device=device, top1=top1, p50_ms=p50,
                           size_mb=size, **extra)


# ------------------------------------------------------------------------------------ the front


def test_the_front_keeps_what_nothing_beats_and_drops_the_dominated():
    rows = [row("a", 90.0, 1.0), row("b", 95.0, 2.0), row("c", 94.0, 3.0), row("d", 99.0, 9.0),
            row("e", 90.0, 1.5)]  # c: b is more accurate and faster; e: as accurate as a, slower
    assert [r.source for r in pareto_front(rows)] == ["a", "b", "d"]  # fastest first
    assert dominates(rows[1], rows[2]) and not dominates(rows[0], rows[1])
    assert dominates(rows[0], rows[4])  # equal top-1, strictly faster: dominated


def test_an_exact_tie_on_both_keeps_both_on_the_front():
    twins = [row("a", 95.0, 2.0), row("b", 95.0, 2.0), row("c", 90.0, 3.0)]
    assert not dominates(twins[0], twins[1]) and not dominates(twins[1], twins[0])
    assert [r.source for r in pareto_front(twins)] == ["a", "b"]


def test_failed_and_emulated_candidates_are_never_on_the_front():
    rows = [row("ok", 90.0, 5.0),
            row("failed", 99.0, 1.0, status=FAILED, reason="verify failed: drop 3.1 (limit <= 1)"),
            row("emulated", 99.5, 0.5, emulated="qemu-user: aarch64 emulated"),
            CandidateResult(source="refused", target="onnx", precision="int8", device="pi", status=FAILED,
                            reason="export refused: no int8 for this target")]
    assert [r.source for r in pareto_front(rows)] == ["ok"]
    assert best_under_budget(rows).source == "ok"


# --------------------------------------------------------------------------------- the budget


def test_the_choice_is_the_most_accurate_inside_the_budget():
    rows = [row("fast", 90.0, 1.0, size=0.5), row("mid", 95.0, 4.0, size=3.0), row("big", 99.0, 20.0, size=40.0)]
    assert best_under_budget(rows).source == "big"  # no budget: the most accurate
    assert best_under_budget(rows, max_latency_ms=5).source == "mid"
    assert best_under_budget(rows, max_latency_ms=5, max_size_mb=1).source == "fast"
    assert best_under_budget(rows, max_latency_ms=0.5) is None
    answer = answer_for_device("pi", rows, max_latency_ms=0.5)
    assert answer.choice is None and "nothing fits p50 <= 0.5 ms on pi" in answer.line and "fast onnx fp32" in answer.line


def test_ties_in_the_choice_go_to_the_faster_then_the_smaller_then_the_name():
    faster = [row("slow", 95.0, 3.0), row("quick", 95.0, 2.0)]
    assert best_under_budget(faster).source == "quick"
    smaller = [row("large", 95.0, 2.0, size=9.0), row("small", 95.0, 2.0, size=1.0)]
    assert best_under_budget(smaller).source == "small"
    same = [row("b", 95.0, 2.0), row("a", 95.0, 2.0)]
    assert best_under_budget(same).source == best_under_budget(same[::-1]).source == "a"


def test_one_answer_per_device_and_the_ship_line_says_where():
    rows = [row("m", 95.0, 2.0, device="pi5", precision="int8", drop=0.4), row("m", 96.0, 6.0, device="pi5"),
            row("m", 96.0, 1.0, device="laptop"),
            row("m", 96.0, 80.0, device="arm-qemu", emulated="qemu-user: aarch64 code emulated")]
    by_device = {a.device: a for a in answers(rows, max_latency_ms=3)}
    assert by_device["pi5"].line.startswith("ship m onnx int8: top-1 95.00 % (-0.40 pts vs fp32), p50 2.00 ms")
    assert by_device["pi5"].line.endswith("on pi5 (best inside p50 <= 3 ms)")
    assert by_device["laptop"].choice == "m onnx fp32"
    emulated = by_device["arm-qemu"]
    assert emulated.choice is None and emulated.front == [] and "latency not ranked" in emulated.line


# --------------------------------------------------------------------------- cache and resume


class FakeBundle:
    def __init__(self, path):
        self.path = Path(path)
        self.artifacts = [{"precision": "fp32"}, {"precision": "int8"}]
        self.manifest = {}


@pytest.fixture
def faked(monkeypatch):
    """compare with loading, export and measuring replaced by counters; the rest (plan, cache, answer) real."""
    from edgecnn.compare_models import measure, run

    calls = {"export": 0, "measure": 0, "interrupt_at": None, "refuse": set()}

    def export_cached(model, plan, target, precision, *, key, settings, note):
        calls["export"] += 1
        if (plan.label, precision) in calls["refuse"]:
            return None, f"export refused: no {precision} for {target}"
        return FakeBundle(settings.out / plan.label), None

    def measure_bundle(bundle, model, base, precisions, settings):
        calls["measure"] += 1
        if calls["measure"] == calls["interrupt_at"]:
            raise KeyboardInterrupt
        speed = {"a": 1.0, "b": 2.0}[base.source]
        return {p: [measure.replace(base, precision=p, top1=90.0 + speed, p50_ms=speed / (2 if p == "int8" else 1),
                                    size_mb=1.0)] for p in precisions}

    monkeypatch.setattr(run, "export_cached", export_cached)
    monkeypatch.setattr(run, "measure_bundle", measure_bundle)
    monkeypatch.setattr("edgecnn.api.load", lambda source, **options: object())
    return calls


def _compare(tmp_path, **options):
    from edgecnn.compare_models import compare

    return compare("a", "b", targets="onnx,x86", data="digits", out=tmp_path, write_report=False, **options)


def test_a_second_run_measures_nothing_and_force_measures_again(faked, tmp_path):
    first = _compare(tmp_path)
    assert (first.measured_now, first.reused, faked["measure"]) == (8, 0, 4)  # 2 sources x 2 targets, one bundle each
    second = _compare(tmp_path)
    assert (second.measured_now, second.reused, faked["measure"], faked["export"]) == (0, 8, 4, 4)
    assert [r.to_dict() for r in second.candidates] == [r.to_dict() for r in first.candidates]
    forced = _compare(tmp_path, force=True)
    assert (forced.measured_now, faked["measure"]) == (8, 8)
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert saved["counts"] == {"candidates": 8, "measured": 8, "failed": 0, "measured_now": 8, "reused": 0}


def test_an_interrupted_run_continues_where_it_stopped(faked, tmp_path):
    faked["interrupt_at"] = 3
    with pytest.raises(KeyboardInterrupt):
        _compare(tmp_path)
    faked["interrupt_at"] = None
    resumed = _compare(tmp_path)
    assert (resumed.reused, resumed.measured_now) == (4, 4)  # the two bundles done before stay done


def test_a_refused_int8_export_is_a_row_and_fp32_is_exported_alone(faked, tmp_path):
    faked["refuse"] = {("a", "int8")}
    events = []
    result = _compare(tmp_path, progress=events.append)
    failed = {r.name: r.reason for r in result.failed}
    assert failed == {"a onnx int8": "export refused: no int8 for onnx", "a x86 int8": "export refused: no int8 for x86"}
    assert {r.name for r in result.measured} >= {"a onnx fp32", "a x86 fp32", "b onnx int8"}
    steps = [str(e) for e in events if e.kind == "step"]
    assert steps[0].startswith("[1/8 done, 7 left, 0:0") and "elapsed]" in steps[0]


def test_nothing_measured_exits_1_with_every_reason_in_the_json(faked, tmp_path, cli, monkeypatch):
    from edgecnn.compare_models import run

    monkeypatch.setattr(run, "export_cached", lambda *a, **k: (None, "export refused: target unknown here"))
    out = cli("compare", "a", "--target", "onnx", "--data", "digits", "--out", str(tmp_path / "out"),
              "--json", str(tmp_path / "c.json"))
    assert out.exit_code == 1, out.output
    saved = json.loads((tmp_path / "c.json").read_text())
    assert {r["reason"] for r in saved["candidates"]} == {"export refused: target unknown here"}


# ------------------------------------------------------------------------------ end to end


@pytest.mark.timeout(900)
def test_compare_two_tiny_zoo_models_end_to_end(tmp_path, cli):
    """lenet5 and shufflenet_v2_x0_5 trained 1 epoch on digits, onnx at fp32 and int8: the answer, the table,
    the report with its plot, the JSON; then a rerun that measures nothing."""
    out = tmp_path / "run"
    args = ["compare", "--zoo", "lenet5,shufflenet_v2_x0_5", "--target", "onnx", "--precision", "fp32,int8",
            "--data", "digits", "--epochs", "1", "--iters", "20", "--warmup", "2", "--limit", "120",
            "--search-budget", "30", "--out", str(out), "--json", str(tmp_path / "compare.json")]
    first = cli(*args)
    assert first.exit_code == 0, first.output
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert saved["counts"]["candidates"] == 4 and saved["counts"]["measured"] >= 2
    measured = [r for r in saved["candidates"] if r["status"] == "measured"]
    for r in measured:
        assert r["top1"] is not None and r["p50_ms"] > 0 and r["size_mb"] > 0 and r["params"] > 0 and r["macs"] > 0
        assert r["peak_rss_mb"] > 0 and r["samples"] == 120
    assert saved["answers"][0]["device"] == "this machine" and saved["answers"][0]["front"]
    assert first.stdout.splitlines()[0].startswith("ship ")  # the answer first
    assert "Latency: batch 1, 2 warm-up runs, then 20 timed runs" in saved["method"]
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "http://" not in page and "https://" not in page
    again = cli(*args[:-2])
    assert again.exit_code == 0, again.output
    counts = json.loads((out / "compare.json").read_text())["counts"]
    assert (counts["measured_now"], counts["reused"]) == (0, 4)


def test_the_page_draws_each_device_and_lists_every_reason(tmp_path):
    from edgecnn.compare_models.page import write_page
    from edgecnn.compare_models.results import CompareResult

    rows = [row("m", 95.0, 2.0, device="pi5", size=3.0), row("n", 97.0, 5.0, device="pi5", precision="int8"),
            row("m", 96.0, 80.0, device="arm-qemu", emulated="qemu-user: aarch64 code emulated"),
            CandidateResult(source="n", target="onnx", precision="int8", device="pi5", status=FAILED,
                            reason="INT8 not kept (slower): no mix beat fp32")]
    result = CompareResult(candidates=rows, answers=answers(rows, max_latency_ms=3), method="Latency: ...",
                           settings={"targets": ["onnx"], "precisions": ["fp32", "int8"], "data": "digits",
                                     "max_latency_ms": 3})
    page = write_page(result, tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and "http" not in page.replace("http-equiv", "")
    assert "INT8 not kept (slower): no mix beat fp32" in page and "(emulated)" in page
    assert "ship m onnx fp32" in page


def test_input_size_is_one_for_all_or_one_per_source():
    from edgecnn.compare_models.sources import per_source_options
    from edgecnn.errors import BadInputError

    both = per_source_options(["a.py:lite1", "a.py:lite2"], input_size="240,260", mean="0.5,0.5,0.5")
    assert both["a.py:lite2"] == {"mean": "0.5,0.5,0.5", "input_size": 260, "resize": None}
    assert per_source_options(["x", "y"], input_size="224")["y"]["input_size"] == 224
    with pytest.raises(BadInputError, match="one per SOURCE"):
        per_source_options(["x", "y", "z"], input_size="224,240")


def test_a_lasting_failure_is_finished_and_an_unreachable_device_is_tried_again(faked, tmp_path, monkeypatch):
    from edgecnn.compare_models import measure, run

    reasons = {"a": "verify failed: drop 1.2 (limit <= 1)", "b": "bench on the device failed (unreachable, ...)"}

    def measure_bundle(bundle, model, base, precisions, settings):
        faked["measure"] += 1
        return {p: [measure.replace(base, precision=p, status=FAILED, reason=reasons[base.source])]
                for p in precisions}

    monkeypatch.setattr(run, "measure_bundle", measure_bundle)
    _compare(tmp_path)
    assert faked["measure"] == 4
    again = _compare(tmp_path)
    assert faked["measure"] == 6 and again.reused == 4  # only b's two bundles measured again


@pytest.mark.parametrize("option, value", [("--max-latency", "nan"), ("--max-size", "-1"), ("--min-time", "inf"),
                                           ("--search-budget", "0"), ("--iters", "0"), ("--precision", "int4")])
def test_a_bad_number_is_refused_before_any_work(cli, tmp_path, option, value):
    out = tmp_path / "out"
    result = cli("compare", "lenet5", "--target", "onnx", "--data", "digits", "--out", str(out), option, value)
    assert result.exit_code == 2 and option in result.output and not out.exists(), result.output
