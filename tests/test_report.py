"""The run report: summary rows merged from a run folder's JSON files, the HTML page, `edgecnn report`.

The run folder is written here in the exact shapes `edgecnn train`, `export`, `verify --json` and
`bench --json` produce (see edgecnn/train/, bundle.py, verify/, bench/), so these tests need
no training or export and take about a second.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from edgecnn.report import (
    BUILT_ON_DEVICE, load_run, overall_line, print_summary, recommendations, summary_rows, write_report,
)

# (target, runtime of the profile, [(path, format, runtime, precision, bytes)])
BUNDLES = [
    ("onnx", "onnxruntime", [("onnx/model.fp32.onnx", "onnx", "onnxruntime", "fp32", 8_900_000),
                             ("onnx/model.int8.onnx", "onnx", "onnxruntime", "int8", 2_400_000)]),
    ("x86", "openvino", [("openvino/model.fp32.xml", "openvino", "openvino", "fp32", 9_000_000),
                         ("openvino/model.int8.xml", "openvino", "openvino", "int8", 2_700_000)]),
    ("arm", "tflite", [("tflite/model.fp32.tflite", "tflite", "tflite", "fp32", 8_800_000),
                       ("tflite/model.int8.tflite", "tflite", "tflite", "int8", 2_500_000)]),
    ("jetson", "tensorrt", [("onnx/model.fp32.onnx", "onnx", "onnxruntime", "fp32", 8_900_000),
                            ("onnx/model.int8.qdq.onnx", "onnx", "onnxruntime", "int8", 2_400_000)]),
]
# batch-1 p50 per (target, precision); PyTorch eager is 10 ms.
P50 = {("onnx", "fp32"): 2.0, ("onnx", "int8"): 1.25, ("x86", "fp32"): 1.6, ("x86", "int8"): 0.8,
       ("arm", "fp32"): 2.5, ("arm", "int8"): 0.5}
TORCH_P50 = 10.0
# arm int8 is the fastest artifact of its target but fails verify.
FAILING = ("arm", "int8")
REFERENCE_TOP1 = 98.885


def _write(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))


def _latency(p50: float) -> dict:
    return {"p50": p50, "p90": p50 * 1.2, "p99": p50 * 1.5, "mean": p50 * 1.05, "std": p50 * 0.1,
            "min": p50 * 0.9, "max": p50 * 1.7}


def _bench_row(name: str, path: Path, runtime: str, precision: str, p50: float, size_mb: float) -> dict:
    return {
        "name": name, "path": str(path), "runtime": runtime, "runtime_version": "1.0", "precision": precision,
        "batch": 1, "threads": 2, "latency_ms": _latency(p50), "throughput_ips": 1000.0 / (p50 * 1.05),
        "load_ms": 120.0, "first_inference_ms": p50 * 3, "peak_rss_mb": 110.0, "python_baseline_rss_mb": 47.0,
        "size_mb": size_mb, "iterations": int(1000 / p50), "warmup": 10, "input_shape": [1, 3, 32, 32],
        "applied": {"num_threads": 2}, "torch_imported": runtime == "torch", "speedup": 1.0, "speedup_vs": name,
    }


def _environment(runtimes: dict) -> dict:
    return {"cpu_model": "AMD EPYC 7B13", "physical_cores": 2, "logical_cpus": 2, "usable_cpus": 2,
            "machine": "x86_64", "system": "Linux-6.1-x86_64-with-glibc2.36", "python": "3.11.7",
            "numpy": "2.4.6", "edgecnn": "0.1.0", "loadavg_before": [1.2, 1.0, 0.9],
            "loadavg_after": [1.9, 1.1, 1.0], "runtime_versions": runtimes, "runtime_options": {}}


SETTINGS = {"threads": 2, "batches": [1], "warmup": 10, "iters": None, "min_time_s": 1.0, "min_iters": 30,
            "timer": "time.perf_counter_ns around the runtime call alone (input bound beforehand, gc paused)",
            "percentiles": "linear interpolation (numpy.percentile)",
            "isolation": "one child process per artifact and batch size"}


def _verify_artifact(bundle: Path, path: str, fmt: str, runtime: str, precision: str, failing: bool) -> dict:
    top1 = REFERENCE_TOP1 - (4.0 if failing else 0.0)
    agreement = 0.93 if failing else 1.0
    thresholds = ({"max_drop": 1.0, "min_agreement": 0.97, "min_cosine": None, "max_abs_diff": None}
                  if precision == "int8" else
                  {"max_drop": None, "min_agreement": 0.995, "min_cosine": None, "max_abs_diff": None})
    checks = [{"name": "finite", "value": None, "threshold": None, "op": "==", "passed": True, "reason": None}]
    failed = []
    if thresholds["max_drop"] is not None:
        passed = REFERENCE_TOP1 - top1 <= thresholds["max_drop"]
        checks.append({"name": "drop", "value": REFERENCE_TOP1 - top1, "threshold": 1.0, "op": "<=",
                       "passed": passed, "reason": None})
        failed += [] if passed else ["drop"]
    passed = agreement >= thresholds["min_agreement"]
    checks.append({"name": "agreement", "value": agreement, "threshold": thresholds["min_agreement"], "op": ">=",
                   "passed": passed, "reason": None})
    failed += [] if passed else ["agreement"]
    return {
        "name": path, "path": str(bundle / path), "format": fmt, "runtime": runtime, "precision": precision,
        "samples": 269, "top1": round(top1, 3), "reference_top1": REFERENCE_TOP1,
        "drop": round(REFERENCE_TOP1 - top1, 3), "agreement": agreement, "max_abs_diff": 0.01,
        "mean_abs_diff": 0.001, "cosine": 0.9999, "min_cosine": 0.999, "reference_source": "pytorch-live",
        "accuracy_meaningful": True, "thresholds": thresholds, "checks": checks, "failed_checks": failed,
        "passed": not failed, "runtime_version": "1.0", "threads": 2, "batch": 32, "seconds": 0.5,
    }


def make_run(root: Path, *, history_epochs: int = 4) -> Path:
    """A realistic quickstart run folder: model card, metrics, 4 bundles, verify.json, bench.json."""
    history = [{"epoch": e, "train_loss": round(2.3 / e, 5), "train_top1": 40.0 + 14 * e,
                "val_top1": min(99.0, 50.0 + 12 * e), "val_top5": 99.0, "lr": 0.001, "seconds": 9.5}
               for e in range(1, history_epochs + 1)]
    _write(root / "model" / "metrics.json", {
        "model": "mobilenet_v2", "family": "lightweight", "data": "digits",
        "data_summary": {"spec": "digits", "classes": 10, "image_shape": [8, 8], "train": 1258, "val": 270,
                         "test": 269, "seed": 0},
        "seed": 0, "init": "random", "config": {"model": "mobilenet_v2", "data": "digits", "epochs": history_epochs},
        "device": "cpu", "threads": 2, "params": 2236682, "history": history, "best_epoch": history_epochs,
        "best_val_top1": history[-1]["val_top1"], "train_seconds": 38.0, "test_top1": REFERENCE_TOP1,
        "test_top5": 100.0, "wall_seconds": 40.1, "epochs_completed": history_epochs,
    })
    (root / "model" / "model.pt").write_bytes(b"\0" * 9_100_000)
    _write(root / "model_card.json", {"name": "mobilenet_v2", "family": "lightweight", "params": 2236682,
                                      "macs": 6_110_000, "input_size": [3, 32, 32], "num_classes": 10,
                                      "data": "digits", "test_top1": REFERENCE_TOP1})
    verify_results, bench_results = [], []
    for target, device_runtime, artifacts in BUNDLES:
        bundle = root / "bundles" / target
        entries = []
        for path, fmt, runtime, precision, size in artifacts:
            files = [{"path": path, "sha256": "0" * 64, "bytes": size - 1000}]
            if fmt == "openvino":  # the .bin beside the .xml counts in the size
                files = [{"path": path, "sha256": "0" * 64, "bytes": 1000},
                         {"path": path.replace(".xml", ".bin"), "sha256": "1" * 64, "bytes": size - 1000}]
            entries.append({"path": path, "format": fmt, "runtime": runtime, "precision": precision,
                            "sha256": "0" * 64, "bytes": files[0]["bytes"], "files": files,
                            "input": {"shape": [3, 32, 32], "layout": "NCHW", "dtype": "float32"}})
        _write(bundle / "manifest.json", {
            "format": "edgecnn.bundle", "format_version": 1, "target": target,
            "profile": {"name": target, "runtime": device_runtime, "threads": 0},
            "model": {"name": "mobilenet_v2", "checkpoint": str(root / "model" / "model.pt")},
            "precision": "int8", "input": {"shape": [3, 32, 32], "layout": "NCHW"}, "artifacts": entries,
            "tools": {"edgecnn": "0.1.0", "onnxruntime": "1.32.0", "openvino": "2026.4.1"},
            "warnings": [],
            "next_steps": ["copy jetson/ to the device and run `bash build_engine.sh`"] if target == "jetson" else [],
        })
        verify_artifacts = [_verify_artifact(bundle, p, f, r, prec, (target, prec) == FAILING)
                            for p, f, r, prec, _ in artifacts]
        verify_results.append({
            "schema": "edgecnn.verify/1", "model": "mobilenet_v2", "target": target, "bundle": str(bundle),
            "samples": 269, "samples_source": "data:digits", "reference_source": "pytorch-live",
            "reference_top1": REFERENCE_TOP1, "accuracy_meaningful": True,
            "passed": all(a["passed"] for a in verify_artifacts),
            "failed": [a["name"] for a in verify_artifacts if not a["passed"]], "artifacts": verify_artifacts,
            "notes": [], "edgecnn_version": "0.1.0",
        })
        if target == "jetson":
            continue  # its engine is built and benchmarked on the device
        rows = [_bench_row(p, bundle / p, r, prec, P50[(target, prec)], size / 1e6)
                for p, _, r, prec, size in artifacts]
        bench_results.append({"schema": "edgecnn.bench/1", "settings": SETTINGS, "baseline": None,
                              "environment": _environment({device_runtime: "2026.4.1-22982-e213a"}),
                              "artifacts": rows, "skipped": [], "path": str(bundle),
                              "bundle": {"root": str(bundle), "target": target}, "target": target})
    checkpoint = root / "model" / "model.pt"
    bench_results.append({"schema": "edgecnn.bench/1", "settings": SETTINGS, "baseline": None,
                          "environment": _environment({"torch": "2.14.1+cu130"}),
                          "artifacts": [_bench_row("model.pt", checkpoint, "torch", "fp32", TORCH_P50, 9.1)],
                          "skipped": [], "path": str(checkpoint), "target": "pytorch"})
    _write(root / "verify.json", {"results": verify_results})
    _write(root / "bench.json", {"results": bench_results})
    return root


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return make_run(tmp_path / "run")


def _row(rows, target, precision):
    (row,) = [r for r in rows if r["target"] == target and r["precision"] == precision]
    return row


def test_summary_rows_merge_bench_verify_and_manifests(run_dir):
    rows = summary_rows(run_dir)
    # PyTorch first, then two rows per bundle in table order.
    assert [(r["target"], r["precision"]) for r in rows] == [
        ("pytorch", "fp32"), ("onnx", "fp32"), ("onnx", "int8"), ("x86", "fp32"), ("x86", "int8"),
        ("arm", "fp32"), ("arm", "int8"), ("jetson", "fp32"), ("jetson", "int8")]
    torch_row = rows[0]
    assert torch_row["baseline"] and torch_row["runtime"] == "torch"
    assert torch_row["p50_ms"] == TORCH_P50 and torch_row["speedup"] == 1.0
    assert torch_row["top1"] == REFERENCE_TOP1 and torch_row["status"] == "reference"

    x86_int8 = _row(rows, "x86", "int8")
    assert x86_int8["speedup"] == pytest.approx(TORCH_P50 / 0.8, rel=1e-3)  # 12.5x
    assert x86_int8["p90_ms"] == pytest.approx(0.96) and x86_int8["p99_ms"] == pytest.approx(1.2)
    assert x86_int8["size_mb"] == pytest.approx(2.7)  # .xml + .bin
    assert x86_int8["passed"] is True and x86_int8["status"] == "pass"
    assert x86_int8["top1"] == REFERENCE_TOP1 and x86_int8["drop"] == 0.0 and x86_int8["agreement"] == 1.0
    assert _row(rows, "onnx", "fp32")["speedup"] == pytest.approx(5.0)


def test_failures_are_marked_and_never_the_fastest(run_dir):
    rows = summary_rows(run_dir)
    arm_int8, arm_fp32 = _row(rows, "arm", "int8"), _row(rows, "arm", "fp32")
    assert arm_int8["passed"] is False and arm_int8["status"] == "FAIL"
    assert set(arm_int8["failed_checks"]) == {"drop", "agreement"}
    assert arm_int8["drop"] == pytest.approx(4.0)
    # arm int8 is quicker (0.5 ms) but failed: the fastest passing arm artifact is fp32.
    assert not arm_int8["fastest"] and arm_fp32["fastest"]
    assert [r["precision"] for r in rows if r["fastest"] and r["target"] in ("onnx", "x86")] == ["int8", "int8"]
    assert sum(r["fastest"] for r in rows) == 3  # one per benchmarked target, none for jetson


def test_jetson_is_built_on_device(run_dir):
    rows = summary_rows(run_dir)
    for precision in ("fp32", "int8"):
        row = _row(rows, "jetson", precision)
        assert row["latency_note"] == BUILT_ON_DEVICE
        assert row["p50_ms"] is None and row["speedup"] is None and not row["fastest"]
        assert row["passed"] is True and row["device_runtime"] == "tensorrt"
    page = write_report(run_dir).read_text()
    assert "TensorRT int8 (engine source, onnx)" in page


def test_recommendations_follow_the_data(run_dir):
    lines = recommendations(summary_rows(run_dir))
    by_target = {line.split(" ")[0]: line for line in lines}
    assert set(by_target) == {"onnx", "x86", "arm", "jetson"}
    assert "ship int8" in by_target["x86"] and "12.5×" in by_target["x86"]
    assert "ship fp32" in by_target["arm"] and "Failed verify: int8" in by_target["arm"]
    assert "built on the device" in by_target["jetson"] and "ship" not in by_target["jetson"]
    assert "agreement 93.0 %" in by_target["arm"] and "top-1 drop +4.00 pts" in by_target["arm"]
    overall = overall_line(summary_rows(run_dir))
    assert overall.startswith("Fastest verified artifact on this machine: x86 OpenVINO int8")


def test_missing_pieces_degrade_to_notes(run_dir):
    # No bench for x86 and a verify that crashed for onnx: still a report, with honest cells.
    bench = json.loads((run_dir / "bench.json").read_text())
    bench["results"] = [p for p in bench["results"] if p.get("target") != "x86"]
    (run_dir / "bench.json").write_text(json.dumps(bench))
    verify = json.loads((run_dir / "verify.json").read_text())
    verify["results"][0] = {"target": "onnx", "error": "onnxruntime crashed"}
    (run_dir / "verify.json").write_text(json.dumps(verify))
    rows = summary_rows(run_dir)
    assert _row(rows, "x86", "int8")["latency_note"] == "not benchmarked"
    assert _row(rows, "x86", "int8")["passed"] is True
    onnx = _row(rows, "onnx", "int8")
    assert onnx["status"] == "FAIL" and "onnxruntime crashed" in onnx["failed_checks"][0]
    assert not any(r["fastest"] for r in rows if r["target"] in ("onnx", "x86"))
    assert write_report(run_dir).is_file()


def test_write_report_is_self_contained(run_dir):
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    page = path.read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(summary["rows"]) == 9 and summary["passed"] is False
    assert summary["baseline"]["p50_ms"] == TORCH_P50

    assert '<table class="results">' in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) >= 2  # training curve and latency plot
    import base64

    assert all(base64.b64decode(image)[:8] == b"\x89PNG\r\n\x1a\n" for image in images)
    # No external reference of any kind.
    assert not re.search(r'(?:src|href)\s*=\s*["\']?\s*(?:https?:)?//', page, re.IGNORECASE)
    assert "<script" not in page.lower()
    assert not re.search(r"<link[^>]*stylesheet", page, re.IGNORECASE)
    assert "@import" not in page and "url(" not in page
    # The decisions and the numbers are on the page.
    assert "What to ship" in page and "12.5×" in page
    assert page.count("★ fastest") == 3 and "FAIL" in page and BUILT_ON_DEVICE in page
    assert "AMD EPYC 7B13" in page and "2.24 M" in page and "6.11 M" in page and "3×32×32" in page
    assert "98.89 %" in page  # test top-1


def test_report_without_history_has_no_curve(run_dir):
    (run_dir / "model" / "metrics.json").unlink()
    page = write_report(run_dir).read_text()
    assert page.count("data:image/png;base64,") == 1
    assert "No training history" in page


def test_print_summary(run_dir):
    from rich.console import Console

    console = Console(record=True, width=200)
    print_summary(summary_rows(run_dir), console)
    text = console.export_text()
    assert "FAIL" in text and "★ fastest" in text and BUILT_ON_DEVICE in text and "12.5×" in text


def test_cli_report_rebuilds_and_prints(cli, run_dir):
    import edgecnn.cli.report  # noqa: F401 - registers the command

    (run_dir / "report.html").unlink(missing_ok=True)
    result = cli("report", str(run_dir))
    assert result.exit_code == 0, result.output
    assert (run_dir / "report.html").is_file() and (run_dir / "summary.json").is_file()
    assert "x86" in result.stdout and "12.5×" in result.stdout


def test_cli_report_names_what_is_missing(cli, tmp_path):
    import edgecnn.cli.report  # noqa: F401 - registers the command

    result = cli("report", str(tmp_path))
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    for name in ("model_card.json", "manifest.json", "verify.json", "bench.json"):
        assert name in message
    result = cli("report", str(tmp_path / "nowhere"))
    assert result.exit_code == 2 and "not a folder" in result.stderr


def test_malformed_json_is_bad_input(run_dir):
    from edgecnn.errors import BadInputError

    (run_dir / "bench.json").write_text("{not json")
    with pytest.raises(BadInputError, match="bench.json"):
        load_run(run_dir)
