"""The Python API (edgecnn.api): the README walkthrough as a script gives the CLI's numbers on the same bundle,
an in-memory nn.Module exports without a factory file, `import edgecnn` imports no torch and a bundle is
benched and verified where torch cannot be imported, errors are the typed ones, remote runs reach edgecnn.remote.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgecnn
from edgecnn.errors import BadInputError, CheckFailedError
from runtime_helpers import blocking_env

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "python_api.py"
# Few epochs at a higher learning rate without augmentation (as test_examples does): ~94 % in seconds.
TINY = ["--model", "lenet5", "--epochs", "3", "--lr", "0.01", "--no-augment", "--min-time", "0.3",
        "--explain-budget", "10"]
BENCH = {"batch": 1, "warmup": 5, "min_time": 0.3}  # what the example's bench uses (with --min-time 0.3)
VOLATILE = {"created", "seconds"}


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    """examples/python_api.py run as a user runs it: (its --json summary, the folder it wrote in)."""
    out = tmp_path_factory.mktemp("python-api")
    summary = out / "summary.json"
    result = subprocess.run([sys.executable, str(EXAMPLE), *TINY, "--out", str(out), "--json", str(summary)],
                            capture_output=True, text=True, env=_env(), cwd=out, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trained lenet5" in result.stdout
    return json.loads(summary.read_text()), out


def _stable(payload):
    """A report without its wall-clock fields (created, seconds), at every depth."""
    if isinstance(payload, dict):
        return {k: _stable(v) for k, v in payload.items() if k not in VOLATILE}
    if isinstance(payload, list):
        return [_stable(v) for v in payload]
    return payload


def test_the_walkthrough_exports_verifies_benches_and_explains_every_target(walkthrough):
    summary, _ = walkthrough
    assert set(summary["targets"]) == {"onnx", "x86", "arm"}
    for target, results in summary["targets"].items():
        manifest = json.loads((Path(results["bundle"]) / "manifest.json").read_text())
        assert manifest["precision"] == "int8" and manifest["model"]["source"] == "checkpoint", target
        assert results["verify"]["passed"], results["verify"]["failed"]
        assert {a["precision"] for a in results["bench"]["artifacts"]} == {"fp32", "int8"}
        assert results["explain"]["artifacts"] and results["explain"]["artifacts"][0]["layers"]


@pytest.mark.parametrize("target", ["onnx", "x86", "arm"])
def test_the_api_gives_the_clis_numbers_on_the_same_bundle(walkthrough, target, cli, tmp_path):
    summary, _ = walkthrough
    results = summary["targets"][target]
    bundle = results["bundle"]
    verified = tmp_path / "verify.json"
    assert cli("verify", bundle, "--data", "digits", "--json", str(verified)).exit_code == 0
    # Every verify number identical: agreement, top-1, logit differences, checks, thresholds.
    assert _stable(json.loads(verified.read_text())) == _stable(results["verify"])
    benched = tmp_path / "bench.json"
    assert cli("bench", bundle, "--batch", "1", "--warmup", "5", "--min-time", "0.3",
               "--json", str(benched)).exit_code == 0
    by_cli, by_api = json.loads(benched.read_text()), results["bench"]
    # The method is the same; the timings are two runs' own.
    assert by_cli["settings"] == by_api["settings"] and by_cli["schema"] == by_api["schema"]
    method = ("name", "path", "runtime", "precision", "batch", "threads", "warmup", "input_shape", "applied",
              "compute_precision", "precision_label", "size_mb", "tuned_from")
    assert [{k: r[k] for k in method} for r in by_cli["artifacts"]] == \
           [{k: r[k] for k in method} for r in by_api["artifacts"]]
    assert set(by_cli["artifacts"][0]) == set(by_api["artifacts"][0])


def test_bundle_open_results_are_typed_and_to_dict_is_the_json(walkthrough):
    summary, _ = walkthrough
    bundle = edgecnn.Bundle.open(summary["targets"]["onnx"]["bundle"])
    assert bundle.target == "onnx" and bundle.precision == "int8" and len(bundle.artifacts) == 2
    events = []
    timed = bundle.bench(**BENCH, progress=events.append)
    assert [row.batch for row in timed.rows] == [1, 1] and all(row.p50_ms > 0 for row in timed.rows)
    assert timed.to_dict()["artifacts"][0]["latency_ms"]["p50"] == timed.rows[0].p50_ms
    assert [e.done for e in events if e.kind == "step"] == [1, 2] and "timed runs" in timed.method
    verified = bundle.verify()  # the golden set
    assert verified.passed and verified.to_dict()["passed"] is True
    assert verified.artifacts[1].agreement == verified.to_dict()["artifacts"][1]["agreement"]


def test_a_failed_verify_returns_passed_false_and_raises_only_when_asked(walkthrough):
    summary, _ = walkthrough
    bundle = edgecnn.Bundle.open(summary["targets"]["onnx"]["bundle"])
    strict = {"max_abs_diff": 1e-12, "runtime": "onnxruntime"}  # int8 logits are never that close
    report = bundle.verify(**strict)
    assert not report.passed and "max_abs_diff" in report.failed[0].failed_checks
    with pytest.raises(CheckFailedError):
        bundle.verify(**strict, check=True)


def test_bench_and_verify_run_where_torch_cannot_be_imported(walkthrough, tmp_path):
    summary, _ = walkthrough
    script = (
        "import json, sys; import edgecnn\n"
        "assert 'torch' not in sys.modules\n"
        f"bundle = edgecnn.Bundle.open({summary['targets']['onnx']['bundle']!r})\n"
        "timed = bundle.bench(batch=[1, 2], warmup=2, iters=20)\n"
        "verified = bundle.verify()\n"
        "assert 'torch' not in sys.modules\n"
        "print(json.dumps({'rows': len(timed.rows), 'passed': verified.passed,"
        " 'reference': verified.reference_source, 'torch': [r['torch_imported'] for r in timed.to_dict()['artifacts']]}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=blocking_env(tmp_path, "torch"), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"rows": 4, "passed": True, "reference": "golden", "torch": [False] * 4}


def test_import_edgecnn_imports_no_torch_and_reaches_the_api():
    script = ("import sys, edgecnn\n"
              "names = [edgecnn.load, edgecnn.Bundle, edgecnn.data.ImageFolder, edgecnn.remote.run_remote,"
              " edgecnn.BadInputError, edgecnn.train, edgecnn.export]\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnxruntime', 'openvino')))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_train_and_export_are_callable_and_still_their_packages():
    import edgecnn.export.onnx  # noqa: F401  (the subpackage, imported: the name stays the API's)
    import edgecnn.train

    assert callable(edgecnn.train) and callable(edgecnn.export)
    assert edgecnn.train.TrainConfig.__name__ == "TrainConfig" and edgecnn.export.onnx.__name__ == "edgecnn.export.onnx"
    assert "target" in str(__import__("inspect").signature(edgecnn.export))


def _digits_pixels():
    from sklearn.datasets import load_digits

    data = load_digits()
    return np.round(data.images * (255.0 / 16.0)).astype(np.uint8), data.target.astype(np.int64)


NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def test_an_in_memory_module_exports_without_a_factory_file(tmp_path):
    from export_helpers import trained_tiny_cnn

    pixels, labels = _digits_pixels()
    model = edgecnn.load(trained_tiny_cnn(), input_size=32, mean=[0.5] * 3, std=[0.5] * 3, classes=NAMES,
                         name="tiny_cnn")
    assert model.input_shape == (3, 32, 32) and model.class_names == tuple(NAMES)
    calibration = edgecnn.data.Images(pixels[:1200], labels[:1200], class_names=NAMES)
    bundle = edgecnn.export(model, target="onnx", precision="int8", calib_data=calibration, calib_size=200,
                            golden_size=100, out=tmp_path / "bundle")
    assert not list(tmp_path.rglob("*.py"))  # nothing written to import the model from
    manifest = bundle.manifest
    assert manifest["model"]["source"] == "module" and manifest["model"]["name"] == "tiny_cnn"
    assert manifest["golden"]["labels_meaningful"] and manifest["model"]["checkpoint"] is None
    assert bundle.export_result.to_dict()["bundle"] == str(bundle.path)
    assert bundle.verify().passed  # the golden set: the module's logits, stored at export
    # On images in memory the export never saw: nothing on disk re-runs the module, the caller's copy does.
    held_out = edgecnn.data.Images(pixels[1200:], labels[1200:], class_names=NAMES)
    with pytest.raises(BadInputError, match="no live reference"):
        bundle.verify(data=held_out)
    report = bundle.verify(data=held_out, reference=model)
    assert report.passed, report.failure_message()
    assert report.samples == len(pixels) - 1200 and report.artifacts[0].top1 > 80
    assert report.reference_label == "PyTorch fp32 of the in-memory model"
    unlabeled = bundle.verify(data=pixels[1200:1300], reference=model)  # a bare array: agreement only
    assert unlabeled.artifacts[0].top1 is None and unlabeled.artifacts[1].agreement >= 0.9
    # The caller's module is left as it was: export folded BatchNorm in a copy.
    assert any(type(layer).__name__ == "BatchNorm2d" for layer in trained_tiny_cnn().modules())


def test_bad_input_is_the_typed_error(tmp_path):
    with pytest.raises(BadInputError, match="mobilenet_v9"):
        edgecnn.load("mobilenet_v9")
    with pytest.raises(BadInputError, match="input"):
        edgecnn.load(__import__("torch").nn.Linear(4, 2))  # no stated preprocessing
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    with pytest.raises(BadInputError, match="exists"):
        edgecnn.export("lenet5", target="onnx", out=tmp_path / "taken", weights="random")
    with pytest.raises(BadInputError):
        edgecnn.Bundle.open(tmp_path / "nowhere")


def test_data_specs_are_the_clis_strings():
    assert str(edgecnn.data.ImageFolder("photos")) == "imagefolder:photos"
    assert str(edgecnn.data.Idx("raw")) == "idx:raw" and str(edgecnn.data.Digits()) == "digits"
    assert edgecnn.data.as_data(edgecnn.data.Cifar10()) == "cifar10"
    images = edgecnn.data.as_data(np.zeros((4, 8, 8), dtype=np.float32))
    assert isinstance(images, edgecnn.data.Images)
    with pytest.raises(BadInputError, match="shapes"):
        edgecnn.data.Images([np.zeros((8, 8)), np.zeros((9, 9))]).dataset()


def test_bench_on_a_device_runs_through_edgecnn_remote(walkthrough, monkeypatch):
    """`bundle.bench(on=[...])` builds the job `edgecnn bench --on` builds and merges the devices' JSON."""
    from edgecnn.remote import dispatch
    from edgecnn.remote.job import DeviceRun

    summary, _ = walkthrough
    bundle = edgecnn.Bundle.open(summary["targets"]["onnx"]["bundle"])
    row = {**summary["targets"]["onnx"]["bench"]["artifacts"][0]}
    seen = {}

    def fake_fleet(devices, job, options, *, keep, note):
        seen.update(devices=[d.ssh for d in devices], args=job.args, runtimes=job.runtimes, keep=keep)
        return [DeviceRun(device=devices[0], info={"machine": "aarch64"}, payload={"artifacts": [row], "skipped": []})]

    monkeypatch.setattr(dispatch, "run_fleet", fake_fleet)
    result = bundle.bench(batch=[1, 8], warmup=3, on="pi@pi5.local", keep=True)
    assert seen["devices"] == ["pi@pi5.local"] and seen["keep"] is True
    assert seen["args"] == ("--batch", "1,8", "--warmup", "3") and seen["runtimes"] == ("onnxruntime",)
    assert result.passed and result.rows[0]["device"]["machine"] == "aarch64"
    assert result.bench_rows[0].device["host"] == "pi@pi5.local"
    assert result.to_dict()["remote"] is True
