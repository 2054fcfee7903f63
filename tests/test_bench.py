"""`edgecnn bench`: the numbers, the method, the JSON contract, the plot, the errors, no torch."""

from __future__ import annotations

import json

import numpy as np
import pytest

import edgecnn.cli.bench  # noqa: F401  (registers the command until edgecnn.cli imports it)
from edgecnn.bench import add_speedups, default_threads_for, latency_stats, parse_batches
from edgecnn.bundle import load_bundle
from edgecnn.errors import BadInputError
from edgecnn.backends.runner import physical_cores
from runtime_helpers import (
    INPUT_SHAPE,
    blocking_env,
    lenet_checkpoint_and_onnx,
    make_bundle,
    onnx_file,
    run_cli,
)

LATENCY_KEYS = {"p50", "p90", "p99", "mean", "std", "min", "max"}
ROW_KEYS = {
    "name", "runtime", "precision", "batch", "threads", "latency_ms", "throughput_ips", "load_ms",
    "first_inference_ms", "peak_rss_mb", "size_mb", "speedup", "speedup_vs", "applied",
    "runtime_version", "iterations", "warmup", "input_shape", "torch_imported",
}
ENV_KEYS = {"cpu_model", "physical_cores", "logical_cpus", "runtime_versions", "runtime_options", "python",
            "loadavg_before"}
FAST = ["--warmup", "2", "--iters", "15"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A bundle with the three CPU runtimes' artifacts (onnx, OpenVINO IR, .tflite)."""
    return make_bundle(tmp_path_factory.mktemp("bundle") / "tiny-bundle")


def test_latency_stats_and_batches():
    stats = latency_stats(np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) * 1_000_000)
    assert stats["p50"] == pytest.approx(5.5)
    assert stats["p90"] == pytest.approx(9.1)
    assert stats["min"] == 1.0 and stats["max"] == 10.0
    assert stats["std"] == pytest.approx(np.std(np.arange(1, 11), ddof=1))
    assert parse_batches("1, 8,1") == (1, 8)
    for bad in ("0", "a,b", ""):
        with pytest.raises(BadInputError):
            parse_batches(bad)


def test_speedups_against_slowest_or_baseline():
    rows = [{"name": n, "batch": 1, "latency_ms": {"p50": p}} for n, p in (("a", 2.0), ("b", 4.0))]
    add_speedups(rows, None)
    assert [r["speedup"] for r in rows] == [2.0, 1.0] and rows[0]["speedup_vs"] == "b"
    add_speedups(rows, "a")
    assert [r["speedup"] for r in rows] == [1.0, 0.5]


def test_bench_bundle_reports_every_field_for_every_artifact_and_batch(bundle, tmp_path, cli):
    report_path, plot_path = tmp_path / "b.json", tmp_path / "b.png"
    result = cli("bench", str(bundle), "--batch", "1,2", "--threads", "1", *FAST,
                 "--json", str(report_path), "--plot", str(plot_path))
    assert result.exit_code == 0, result.output
    assert "Method: 2 warm-up runs, then 15 timed runs" in result.stdout
    assert "1 threads" in result.stdout and "p50/p90/p99" in result.stdout
    assert "Applied by openvino/tiny.xml: INFERENCE_NUM_THREADS=1, INFERENCE_PRECISION_HINT=f32" in result.stdout
    report = json.loads(report_path.read_text())
    rows = report["artifacts"]
    assert {(r["runtime"], r["batch"]) for r in rows} == {
        (rt, b) for rt in ("onnxruntime", "openvino", "tflite") for b in (1, 2)
    }
    for row in rows:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert set(row["latency_ms"]) == LATENCY_KEYS
        lat = row["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert row["threads"] == 1 and row["iterations"] == 15 and row["precision"] == "fp32"
        assert row["throughput_ips"] == pytest.approx(row["batch"] * 1000 / lat["mean"])
        assert row["load_ms"] > 0 and row["first_inference_ms"] > 0
        assert row["peak_rss_mb"] > 10 and row["size_mb"] > 0
        assert row["input_shape"] == [row["batch"], *INPUT_SHAPE]
        assert row["runtime_version"]
        assert row["applied"]
        assert row["torch_imported"] is False  # the children never import torch
    thread_keys = ("intra_op_num_threads", "INFERENCE_NUM_THREADS", "num_threads")
    for row in rows:
        assert [row["applied"][k] for k in thread_keys if k in row["applied"]] == [1]
    assert ENV_KEYS <= set(report["environment"])
    assert set(report["environment"]["runtime_versions"]) == {"onnxruntime", "openvino", "tflite"}
    assert report["environment"]["runtime_options"]["openvino/tiny.xml"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert report["settings"]["warmup"] == 2 and report["settings"]["iters"] == 15
    for batch in (1, 2):  # the slowest artifact of each batch is the reference
        speedups = [r["speedup"] for r in rows if r["batch"] == batch]
        assert min(speedups) == pytest.approx(1.0) and all(s >= 1.0 for s in speedups)
    # The IR's size counts its weights file.
    ov_row = next(r for r in rows if r["runtime"] == "openvino")
    ir = bundle / "openvino" / "tiny.xml"
    assert ov_row["size_mb"] == pytest.approx((ir.stat().st_size + ir.with_suffix(".bin").stat().st_size) / 1e6)
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_one_file_with_min_time_and_baseline(tmp_path, cli):
    report_path = tmp_path / "one.json"
    result = cli("bench", str(onnx_file()), "--min-time", "0.05", "--warmup", "1",
                 "--baseline", "onnxruntime", "--json", str(report_path))
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    (row,) = report["artifacts"]
    assert row["iterations"] >= report["settings"]["min_iters"]
    assert report["baseline"] == "tiny.onnx" and row["speedup"] == 1.0
    assert row["precision"] is None  # a bare file does not say


def test_runtime_filter_and_profile_threads(tmp_path, cli):
    bundle = make_bundle(tmp_path / "b", formats=("onnx", "openvino"), threads=1)
    report_path = tmp_path / "r.json"
    result = cli("bench", str(bundle / "manifest.json"), "--runtime", "ov", *FAST, "--json", str(report_path))
    assert result.exit_code == 0, result.output
    rows = json.loads(report_path.read_text())["artifacts"]
    assert [r["runtime"] for r in rows] == ["openvino"]
    # No --threads: the bundle's device profile says 1, and the runtime applied 1.
    assert rows[0]["threads"] == 1 and rows[0]["applied"]["INFERENCE_NUM_THREADS"] == 1


def test_default_threads_come_from_the_profile_else_physical_cores(tmp_path):
    assert default_threads_for(load_bundle(make_bundle(tmp_path / "a", ("onnx",), threads=3))) == 3
    # The shipped x86 profile says 0: the physical cores of the machine that runs the bundle.
    x86 = load_bundle(make_bundle(tmp_path / "b", ("onnx",), target="x86"))
    assert x86.profile["threads"] == 0 and default_threads_for(x86) == physical_cores()
    assert default_threads_for(None) == physical_cores()


def test_baseline_torch_runs_the_manifests_checkpoint(tmp_path, cli):
    """--baseline torch adds PyTorch eager on model.checkpoint; only that child imports torch."""
    checkpoint, onnx_path = lenet_checkpoint_and_onnx()
    bundle = make_bundle(tmp_path / "lenet", artifacts=[("onnx", "fp32", [onnx_path])], input_shape=[1, 32, 32],
                         model_name="lenet5", checkpoint=checkpoint)
    report_path = tmp_path / "torch.json"
    result = cli("bench", str(bundle), "--baseline", "torch", "--threads", "1", *FAST, "--json", str(report_path))
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    rows = {r["runtime"]: r for r in report["artifacts"]}
    assert set(rows) == {"onnxruntime", "torch"}
    assert report["baseline"] == "lenet5.pt (eager)" == rows["torch"]["speedup_vs"]
    assert rows["torch"]["speedup"] == 1.0 and rows["torch"]["path"] == str(checkpoint)
    assert rows["onnxruntime"]["speedup"] == pytest.approx(
        rows["torch"]["latency_ms"]["p50"] / rows["onnxruntime"]["latency_ms"]["p50"])
    assert rows["torch"]["torch_imported"] is True and rows["onnxruntime"]["torch_imported"] is False
    assert rows["torch"]["applied"]["num_threads"] == 1
    assert rows["torch"]["input_shape"] == [1, 1, 32, 32]
    assert "vs lenet5.pt (eager)" in result.stdout

    # A checkpoint recorded but gone: one line, exit 2, naming the path.
    moved = make_bundle(tmp_path / "moved", artifacts=[("onnx", "fp32", [onnx_path])], input_shape=[1, 32, 32],
                        checkpoint=tmp_path / "gone.pt")
    result = cli("bench", str(moved), "--baseline", "torch", *FAST)
    assert result.exit_code == 2 and "gone.pt no longer exists" in _error_line(result)


def _error_line(result) -> str:
    lines = [line for line in result.stderr.strip().splitlines() if line]
    assert len(lines) == 1, result.stderr  # one line, no traceback
    return lines[0]


def test_bad_inputs_exit_2_with_one_line(bundle, tmp_path, cli):
    result = cli("bench", str(tmp_path / "nowhere"))
    assert result.exit_code == 2 and "not found" in _error_line(result)

    result = cli("bench", str(bundle), "--runtime", "caffe")
    assert result.exit_code == 2 and "unknown runtime 'caffe'" in _error_line(result)

    result = cli("bench", str(bundle), "--baseline", "nope", *FAST)
    assert result.exit_code == 2 and "--baseline" in _error_line(result)

    result = cli("bench", str(bundle), "--iters", "5", "--min-time", "1")
    assert result.exit_code == 2 and "not both" in _error_line(result)

    result = cli("bench", str(bundle), "--baseline", "torch", *FAST)
    assert result.exit_code == 2 and "the manifest records none" in _error_line(result)

    result = cli("bench", str(bundle), "--runtime", "tensorrt")
    assert result.exit_code == 2 and "has no tensorrt artifact" in _error_line(result)

    result = cli("bench", str(bundle), "--batch", "0")
    assert result.exit_code == 2 and "--batch" in _error_line(result)

    not_a_bundle = tmp_path / "empty"
    not_a_bundle.mkdir()
    result = cli("bench", str(not_a_bundle))
    assert result.exit_code == 2 and "is not a bundle" in _error_line(result)


def test_unwritable_output_paths_exit_2_before_any_work(bundle, tmp_path, cli, monkeypatch):
    """--json/--plot under a regular file (unwritable even as root) fail first, naming the path."""
    import edgecnn.bench

    def no_work(*args, **kwargs):
        raise AssertionError("bench started work before checking its output paths")

    monkeypatch.setattr(edgecnn.bench, "targets_from_path", no_work)
    monkeypatch.setattr(edgecnn.bench, "run_benchmark", no_work)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for option, name in (("--json", "x.json"), ("--plot", "x.png")):
        wanted = blocker / "sub" / name
        result = cli("bench", str(bundle), *FAST, option, str(wanted))
        assert result.exit_code == 2, result.output
        line = _error_line(result)
        assert option in line and str(wanted) in line
        assert not wanted.exists()


def test_tampered_artifact_is_refused(tmp_path, cli):
    bundle = make_bundle(tmp_path / "b", formats=("onnx",))
    artifact = bundle / "onnx" / "tiny.onnx"
    data = bytearray(artifact.read_bytes())
    data[-1] ^= 0xFF
    artifact.write_bytes(bytes(data))
    result = cli("bench", str(bundle), *FAST)
    assert result.exit_code == 2
    assert "sha256" in _error_line(result)

    artifact.unlink()
    result = cli("bench", str(bundle), *FAST)
    assert result.exit_code == 2 and "missing" in _error_line(result)


def test_bench_without_torch_and_a_missing_runtime(bundle, tmp_path):
    """In processes where torch cannot be imported: bench works; a missing runtime names its extra."""
    report_path = tmp_path / "no-torch.json"
    env = blocking_env(tmp_path, "torch")
    result = run_cli("bench", str(bundle), "--runtime", "onnxruntime", *FAST, "--json", str(report_path),
                     env=env)
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(report_path.read_text())["artifacts"]
    assert row["torch_imported"] is False

    env = blocking_env(tmp_path, "torch", "openvino")
    result = run_cli("bench", str(bundle), "--runtime", "openvino", *FAST, env=env)
    assert result.returncode == 2
    assert "pip install 'edgecnn[openvino-runtime]'" in _error_line(result)

    # Asking for the PyTorch run where torch is missing names the torch extra.
    checkpoint, onnx_path = lenet_checkpoint_and_onnx()
    lenet = make_bundle(tmp_path / "lenet", artifacts=[("onnx", "fp32", [onnx_path])], input_shape=[1, 32, 32],
                        checkpoint=checkpoint)
    result = run_cli("bench", str(lenet), "--runtime", "torch", *FAST, env=blocking_env(tmp_path, "torch"))
    assert result.returncode == 2
    assert "pip install 'edgecnn[torch]'" in _error_line(result)


def test_a_bench_child_s_peak_memory_is_its_own_not_its_parent_s(bundle):
    """Linux carries ru_maxrss over from the parent through fork and exec: a compare run holding torch and a
    model (1.2 GB) saw every bench child report 1.2 GB. The child's own high-water mark must not include
    the 600 MB this parent holds."""
    from edgecnn.api.device_runs import bench

    held = np.ones(600 * 1024 * 1024 // 8)  # 600 MiB, touched, resident in this process
    result = bench(str(bundle), threads=1, warmup=1, iters=3)
    rows = result.to_dict()["artifacts"]
    assert held.sum() > 0 and rows
    for row in rows:
        assert 10 < row["peak_rss_mb"] < 400, (row["name"], row["peak_rss_mb"])
        assert row["python_baseline_rss_mb"] < row["peak_rss_mb"]
