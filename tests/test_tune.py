"""`edgecnn tune`: the fastest setting that passes the gate, stored in the bundle, used by bench/verify on this machine.

One tiny CNN as ONNX and OpenVINO IR (runtime_helpers) in a bundle with a golden set. Timing is real
(bench's child processes, kept short); no test asserts a speed, only what was chosen and why.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import edgecnn.cli.tune  # noqa: F401  (registers the command until edgecnn.cli imports it)
from runtime_helpers import INPUT_SHAPE, onnx_file, openvino_file, reference_logits, sample_batch

FAST = ["--min-time", "0.1", "--warmup", "2"]


def _bundle(dest: Path, *, golden: bool = True) -> Path:
    """A bundle written the way export writes one: fp32 ONNX + OpenVINO IR, a golden set of 48 samples."""
    from edgecnn.bundle import GOLDEN_NAME, BundleWriter, artifact_entry, file_sha256, write_golden

    spec = {"shape": list(INPUT_SHAPE), "layout": "NCHW", "dtype": "float32", "batch": None}
    files = {"onnx": ("onnxruntime", [onnx_file()]),
             "openvino": ("openvino", [openvino_file(), openvino_file().with_suffix(".bin")])}
    inputs = sample_batch(48, seed=3)
    logits = reference_logits(inputs)
    with BundleWriter(dest) as writer:
        entries = []
        for fmt, (runtime, sources) in files.items():
            copied = []
            for source in sources:
                copied.append(writer.path(f"{fmt}/{source.name}"))
                shutil.copy2(source, copied[-1])
            entries.append(artifact_entry(writer.root, copied, format=fmt, runtime=runtime, precision="fp32",
                                          input=spec).to_dict())
        manifest = {"model": {"name": "tiny", "num_classes": 10, "accuracy_meaningful": False}, "target": "onnx",
                    "profile": {"threads": 2}, "input": spec, "artifacts": entries,
                    "preprocess": {"size": INPUT_SHAPE[1], "channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3}}
        if golden:
            write_golden(writer.path(GOLDEN_NAME), inputs, logits.argmax(1), logits)
            manifest["golden"] = {"path": GOLDEN_NAME, "sha256": file_sha256(writer.root / GOLDEN_NAME), "samples": 48}
        return writer.commit(manifest)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """(bundle, tune's JSON report): the bundle tuned once with a generous budget."""
    from typer.testing import CliRunner

    from edgecnn.cli import app

    folder = tmp_path_factory.mktemp("tuned")
    bundle = _bundle(folder / "bundle")
    report = folder / "tune.json"
    result = CliRunner().invoke(app, ["tune", str(bundle), "--budget", "300", *FAST, "--json", str(report)])
    assert result.exit_code == 0, result.output
    return bundle, json.loads(report.read_text())


def _copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "copy"))


def _rows(cli, tmp_path, *args) -> list[dict]:
    out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}.json"
    result = cli(*args, "--json", str(out))
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    return payload["artifacts"]


def _error_line(result) -> str:
    lines = [line for line in (result.stderr or result.output).splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_tune_stores_every_candidate_and_records_the_file_in_the_manifest(tuned):
    from edgecnn.bench.tuned import device_signature
    from edgecnn.bundle import file_sha256, load_bundle

    bundle, report = tuned
    signature = device_signature()
    assert report["signature"] == signature
    stored = bundle / "tuning" / f"{signature}.json"
    assert stored.is_file()
    loaded = load_bundle(bundle)
    (record,) = loaded.manifest["tuning"]
    assert record["path"] == f"tuning/{signature}.json" and record["sha256"] == file_sha256(stored)
    loaded.check_integrity()  # the artifacts were not touched
    payload = json.loads(stored.read_text())
    assert payload["device"]["cpu_model"] and isinstance(payload["device"]["cpu_flags"], list)
    assert set(payload["runtime_versions"]) == {"onnxruntime", "openvino"}
    for row in report["artifacts"]:
        assert row["settings"]["threads"] >= 1
        assert row["default_p50"] > 0 and row["tuned_p50"] > 0 and row["speedup"] > 0
        assert row["agreement"] >= 0.995
        assert len(row["candidates"]) > 2, "the sweep tried more than the default"
        for candidate in row["candidates"]:
            assert {"settings", "p50", "agreement", "passed", "compute_precision"} <= set(candidate)
        chosen = [c for c in row["candidates"] if c["settings"] == row["settings"]]
        assert chosen and all(c["passed"] for c in chosen)


def test_bench_and_verify_use_the_tuning_and_untuned_ignores_it(tuned, cli, tmp_path):
    bundle, report = tuned
    chosen = {row["path"]: row["settings"] for row in report["artifacts"]}
    rows = _rows(cli, tmp_path, "bench", str(bundle), "--iters", "5", "--warmup", "1")
    for row in rows:
        assert row["tuned_from"].startswith("tuning/")
        assert row["threads"] == chosen[row["name"]]["threads"]
    untuned = _rows(cli, tmp_path, "bench", str(bundle), "--iters", "5", "--warmup", "1", "--untuned")
    assert all(row["tuned_from"] is None and row["threads"] == 2 for row in untuned)
    verified = _rows(cli, tmp_path, "verify", str(bundle))
    assert all(a["tuned_from"].startswith("tuning/") and a["passed"] for a in verified)
    assert all(a["tuned_from"] is None for a in _rows(cli, tmp_path, "verify", str(bundle), "--untuned"))
    result = cli("bench", str(bundle), "--iters", "5", "--warmup", "1")
    assert "tuned settings from tuning/" in result.output


def test_explicit_threads_win_over_the_tuned_count(tuned, cli, tmp_path):
    bundle, _ = tuned
    rows = _rows(cli, tmp_path, "bench", str(bundle), "--iters", "5", "--warmup", "1", "--threads", "1")
    assert all(row["threads"] == 1 and row["tuned_from"] for row in rows)


def test_another_machine_ignores_the_file(tuned, cli, tmp_path, monkeypatch):
    import edgecnn.bench.tuned as stored

    bundle, _ = tuned
    flags = stored.cpu_flags()
    monkeypatch.setattr(stored, "cpu_flags", lambda: [f for f in flags if f != "avx2"] + ["another_cpu"])
    assert all(row["tuned_from"] is None for row in _rows(cli, tmp_path, "bench", str(bundle), "--iters", "5"))
    assert all(a["tuned_from"] is None for a in _rows(cli, tmp_path, "verify", str(bundle)))


def test_a_tampered_tuning_file_is_refused(tuned, cli, tmp_path):
    bundle = _copy(tuned[0], tmp_path)
    (stored,) = (bundle / "tuning").glob("*.json")
    payload = json.loads(stored.read_text())
    payload["artifacts"][0]["settings"]["threads"] = 64
    stored.write_text(json.dumps(payload))
    for command in ("bench", "verify"):
        result = cli(command, str(bundle))
        assert result.exit_code == 2, result.output
        assert "does not match the manifest" in _error_line(result) and "--untuned" in _error_line(result)
    assert cli("bench", str(bundle), "--untuned", "--iters", "5").exit_code == 0


def test_a_changed_artifact_is_not_run_with_old_tuning(tuned):
    from edgecnn.bench.tuned import load_tuning
    from edgecnn.bundle import load_bundle

    bundle = load_bundle(tuned[0])
    tuning = load_tuning(bundle)
    entry = bundle.artifacts[0]
    assert tuning.settings_for(entry) is not None
    entry.sha256 = "0" * 64  # re-exported since the tuning: its settings no longer apply
    assert tuning.settings_for(entry) is None


def test_the_device_side_runner_loads_the_tuned_settings(tuned):
    from edgecnn.bench.tuned import load_bundle_runner

    bundle, report = tuned
    row = next(r for r in report["artifacts"] if r["path"].endswith(".xml"))
    with load_bundle_runner(bundle, row["path"]) as runner:
        assert runner.tuned_from and runner.threads == row["settings"]["threads"]
        assert runner.run(sample_batch(2)).shape == (2, 10)
    with load_bundle_runner(bundle, row["path"], untuned=True) as runner:
        assert runner.tuned_from is None and runner.threads == 2


def test_a_candidate_made_to_fail_is_never_chosen(tmp_path, monkeypatch):
    """The sabotaged setting is the fastest by far, and its logits are wrong: it must lose."""
    import edgecnn.tune.candidate as candidate_module
    from edgecnn.tune import TuneSettings, tune

    real_run_logits, real_measure = candidate_module.run_logits, candidate_module.measure_in_child

    def sabotaged(options: dict) -> bool:
        return options.get("cpu_pinning") is False or options.get("allow_spinning") is False

    def run_logits(runtime, path, inputs, **kwargs):
        logits, info = real_run_logits(runtime, path, inputs, **kwargs)
        if sabotaged(kwargs["options"]):
            logits = np.roll(logits, 1, axis=1)  # every top-1 moves to another class
        return logits, info

    def measure_in_child(target, batch, settings):
        result = real_measure(target, batch, settings)
        if sabotaged(target.options):
            result["latency_ms"] = {k: v / 100 for k, v in result["latency_ms"].items()}
        return result

    monkeypatch.setattr(candidate_module, "run_logits", run_logits)
    monkeypatch.setattr(candidate_module, "measure_in_child", measure_in_child)
    report = tune(_bundle(tmp_path / "bundle"), TuneSettings(budget_s=300, min_time_s=0.1, warmup=1))
    for row in report["artifacts"]:
        failed = [c for c in row["candidates"] if sabotaged(c["settings"])]
        assert failed, "the sweep tried the sabotaged setting"
        assert all(not c["passed"] and "agreement" in c["failed_checks"] for c in failed)
        assert not sabotaged(row["settings"])


def test_the_budget_stops_the_sweep(tmp_path, cli):
    bundle = _bundle(tmp_path / "bundle")
    out = tmp_path / "tune.json"
    result = cli("tune", str(bundle), "--budget", "0.3", *FAST, "--json", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["stopped_by_budget"] is True
    (row,) = report["artifacts"]  # the first artifact's defaults were measured, then the budget was spent
    assert len(row["candidates"]) == 1 and row["stopped_by_budget"]
    assert [s["name"] for s in report["skipped"]] == ["openvino/tiny.xml"]
    assert "budget" in result.output


def test_bad_input_is_one_line_and_exit_2(tuned, tmp_path, cli):
    no_golden = _bundle(tmp_path / "no-golden", golden=False)
    result = cli("tune", str(no_golden), *FAST)
    assert result.exit_code == 2 and "no golden set" in _error_line(result)
    again = cli("tune", str(tuned[0]), *FAST)
    assert again.exit_code == 2 and "--force" in _error_line(again)
    assert cli("tune", str(tuned[0]), "--budget", "0", *FAST).exit_code == 2
    assert cli("tune", str(onnx_file())).exit_code == 2


def test_knobs_are_gated_by_capability_and_the_computed_precision_is_named(monkeypatch):
    from edgecnn.backends.openvino import tuning as openvino_tuning
    from edgecnn.bench.tuned import compute_precision, precision_label

    monkeypatch.setattr(openvino_tuning, "capabilities", lambda: {"optimization_capabilities": ["FP32", "INT8"]})
    hints = dict(openvino_tuning.axes("fp32", cores=2))["inference_precision"]
    assert hints == [{"inference_precision": "f32"}]
    monkeypatch.setattr(openvino_tuning, "capabilities",
                        lambda: {"optimization_capabilities": ["FP32", "BF16", "INT8"]})
    hints = dict(openvino_tuning.axes("fp32", cores=2))["inference_precision"]
    assert {"inference_precision": "bf16"} in hints
    assert compute_precision("openvino", "fp32", {"INFERENCE_PRECISION_HINT": "bf16"}) == "bf16"
    assert compute_precision("openvino", "int8", {"INFERENCE_PRECISION_HINT": "bf16"}) == "int8"
    assert precision_label("openvino", "fp32", "bf16") == "fp32 IR, bf16 compute"
    assert precision_label("onnxruntime", "fp32", "fp32") == "fp32"
    assert compute_precision("tflite", "fp32", {"xnnpack_fp16": True}) == "fp16"
    assert compute_precision("ncnn", "fp32", {"use_fp16_arithmetic": True}) == "fp16"


def test_runners_apply_the_knobs_tune_sweeps_and_refuse_bad_values():
    from edgecnn.backends import get_runner
    from edgecnn.errors import BadInputError

    with get_runner("onnxruntime").load(onnx_file(), threads=1, execution_mode="parallel", inter_op_threads=2,
                                        allow_spinning=False, graph_optimization="basic") as runner:
        assert runner.applied["execution_mode"] == "ORT_PARALLEL" and runner.applied["allow_spinning"] is False
        assert runner.applied["graph_optimization_level"] == "ORT_ENABLE_BASIC"
    with get_runner("openvino").load(openvino_file(), threads=2, num_streams=2, cpu_pinning=False) as runner:
        assert runner.applied["NUM_STREAMS"] == 2 and runner.applied["ENABLE_CPU_PINNING"] is False
        np.testing.assert_allclose(runner.run(sample_batch(3)), reference_logits(sample_batch(3)), atol=1e-4)
    with pytest.raises(BadInputError, match="num_streams"):
        get_runner("openvino").load(openvino_file(), num_streams=0)
    with pytest.raises(BadInputError, match="execution_mode"):
        get_runner("onnxruntime").load(onnx_file(), execution_mode="sideways")


def test_tune_runs_on_a_device_without_torch(tuned, tmp_path):
    from runtime_helpers import blocking_env, run_cli

    bundle = _copy(tuned[0], tmp_path)
    out = tmp_path / "tune.json"
    done = run_cli("tune", str(bundle), "--force", "--runtime", "onnxruntime", "--budget", "60", *FAST,
                   "--json", str(out), env=blocking_env(tmp_path, "torch"))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["artifacts"]
    assert [r["runtime"] for r in rows] == ["onnxruntime"] and rows[0]["settings"] is not None
    (stored,) = (bundle / "tuning").glob("*.json")
    kept = {r["path"] for r in json.loads(stored.read_text())["artifacts"]}
    assert kept == {"onnx/tiny.onnx", "openvino/tiny.xml"}, "the OpenVINO tuning was kept beside the new ONNX one"
