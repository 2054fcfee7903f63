"""The ncnn backend: export to an arm-ncnn bundle (pnnx), its Runner, and bench/verify on it without torch."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tomllib

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ncnn") is None or importlib.util.find_spec("pnnx") is None,
    reason="needs ncnn and pnnx (pip install 'edgecnn[pnnx]')",
)

from edgecnn.backends import get_backend, get_runner, runtime_for_path  # noqa: E402
from edgecnn.backends.runner import FixedBatchError  # noqa: E402
from edgecnn.bundle import load_bundle  # noqa: E402
from edgecnn.errors import BadInputError  # noqa: E402
from runtime_helpers import REPO, blocking_env  # noqa: E402

FAST = ["--warmup", "2", "--iters", "10"]


def _ok(result):
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    """A ResNet-18 trained on digits at 3x32x32 for a few seconds (about 96 % test accuracy).

    Not the suite's LeNet-5: its partial C3 connections gather channels with index_select, which
    pnnx has no ncnn layer for (the export refuses it; see the test below).
    """
    import torch

    from edgecnn.checkpoint import save_checkpoint
    from edgecnn.preprocess import PreprocessSpec
    from edgecnn.zoo import build_model
    from export_helpers import fit_on_digits

    torch.manual_seed(0)
    model = fit_on_digits(build_model("resnet18", num_classes=10), epochs=3, lr=3e-3)
    preprocess = PreprocessSpec(size=32, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3,
                                class_names=tuple(str(i) for i in range(10)))
    return save_checkpoint(tmp_path_factory.mktemp("resnet18-digits") / "resnet18.pt", arch="resnet18",
                           state_dict=model.state_dict(), preprocess=preprocess, data="digits", seed=0)


@pytest.fixture(scope="module")
def ncnn_bundle(digits_checkpoint, tmp_path_factory):
    """The digits-trained ResNet-18 exported for arm-ncnn at fp16 (so fp32 and fp16 artifacts)."""
    from typer.testing import CliRunner

    from edgecnn.cli import app

    out = tmp_path_factory.mktemp("ncnn") / "resnet18-arm-ncnn"
    _ok(CliRunner().invoke(app, ["export", str(digits_checkpoint), "--target", "arm-ncnn", "--precision", "fp16",
                                 "--out", str(out)]))
    return out


def _run_cli(tmp_path, *args):
    """The CLI in a subprocess where `import torch` fails; says on stderr whether torch got imported."""
    code = ("import sys; import edgecnn.cli.bench, edgecnn.cli.verify; from edgecnn.cli import main; "
            "sys.argv = ['edgecnn'] + sys.argv[1:]\n"
            "try:\n    main()\nfinally:\n    print('TORCH_IMPORTED', 'torch' in sys.modules, file=sys.stderr)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=blocking_env(tmp_path, "torch"), timeout=300, cwd=REPO)


def test_export_writes_fp32_and_fp16_ncnn_with_parity(ncnn_bundle):
    bundle = load_bundle(ncnn_bundle)
    bundle.check_integrity()
    manifest = bundle.manifest
    assert manifest["target"] == "arm-ncnn" and manifest["profile"]["runtime"] == "ncnn"
    assert manifest["profile"]["format"] == "ncnn"
    assert [(a.path, a.format, a.runtime, a.precision) for a in bundle.artifacts] == [
        ("ncnn/model.fp32.param", "ncnn", "ncnn", "fp32"), ("ncnn/model.fp16.param", "ncnn", "ncnn", "fp16")]
    fp32, fp16 = bundle.artifacts
    for entry in bundle.artifacts:
        assert [f["path"].rsplit(".", 1)[1] for f in entry.files] == ["param", "bin"]
        assert entry.input["batch"] == 1
        parity = entry.extra["parity"]
        assert parity["samples"] == manifest["golden"]["samples"] >= 200
        assert parity["top1_agreement"] >= (0.995 if entry.precision == "fp32" else 0.98)
        assert parity["drop"] <= 1.0  # real digits labels: the accuracy is measured, not only agreement
    assert fp32.extra["parity"]["max_abs_diff"] < 1e-3
    # pnnx fp16=1 stores the weights as fp16: the .bin is about half the fp32 one.
    bins = [bundle.root / e.files[1]["path"] for e in (fp32, fp16)]
    assert 0.4 < bins[1].stat().st_size / bins[0].stat().st_size < 0.6
    # pnnx folded the BatchNorms away; the .param says what input it takes.
    assert manifest["fusion"]["batchnorm_layers_after"] == 0
    assert "0=32 1=32 2=3" in (bundle.root / fp32.path).read_text()
    assert manifest["tools"]["pnnx"] and manifest["tools"]["ncnn"]


def test_bench_and_verify_run_the_bundle_without_torch(ncnn_bundle, tmp_path):
    report_path = tmp_path / "bench.json"
    proc = _run_cli(tmp_path, "bench", str(ncnn_bundle), "--threads", "1", *FAST, "--json", str(report_path))
    assert proc.returncode == 0, proc.stderr
    assert "TORCH_IMPORTED False" in proc.stderr
    assert "Applied by ncnn/model.fp16.param: num_threads=1, use_fp16_storage=True" in proc.stdout
    rows = {r["precision"]: r for r in json.loads(report_path.read_text())["artifacts"]}
    assert set(rows) == {"fp32", "fp16"}
    for precision, row in rows.items():
        assert row["runtime"] == "ncnn" and row["torch_imported"] is False and row["batch"] == 1
        assert row["input_shape"] == [1, 3, 32, 32] and row["latency_ms"]["p50"] > 0
        assert row["applied"]["num_threads"] == 1
        assert row["applied"]["use_fp16_arithmetic"] is (precision == "fp16")

    verify_path = tmp_path / "verify.json"
    proc = _run_cli(tmp_path, "verify", str(ncnn_bundle), "--threads", "1", "--json", str(verify_path))
    assert proc.returncode == 0, proc.stderr
    assert "TORCH_IMPORTED False" in proc.stderr
    report = json.loads(verify_path.read_text())
    assert report["passed"] is True and len(report["artifacts"]) == 2


def test_runner_applies_threads_and_fp16_per_precision(ncnn_bundle):
    import ncnn

    bundle = load_bundle(ncnn_bundle)
    golden = bundle.load_golden()
    for entry in bundle.artifacts:
        runner = get_runner("ncnn").load(bundle.artifact_path(entry), threads=1, precision=entry.precision,
                                         input_shape=[3, 32, 32])
        fp16 = entry.precision == "fp16"
        assert runner.applied["num_threads"] == 1 and runner.applied["ncnn_version"] == ncnn.__version__
        assert (runner.applied["use_fp16_storage"], runner.applied["use_fp16_arithmetic"]) == (fp16, fp16)
        assert runner.applied["use_packing_layout"] is True and runner.applied["use_vulkan_compute"] is False
        assert (runner.input_name, runner.output_name) == ("in0", "out0")
        assert runner.input_shape == (3, 32, 32) and runner.fixed_batch == 1
        # Runner.run splits a batch into single-image runs.
        logits = runner.run(golden["inputs"][:5])
        assert logits.shape == (5, 10)
        np.testing.assert_allclose(logits, golden["logits"][:5], atol=0.05 if fp16 else 1e-3)
        with pytest.raises(FixedBatchError):
            runner.bind(golden["inputs"][:2])
        runner.close()
    path = bundle.artifact_path(bundle.artifacts[0])
    with pytest.raises(FixedBatchError, match="one image at a time"):
        get_runner("ncnn").load(path, threads=1, batch=4)
    with pytest.raises(BadInputError, match="not int8"):
        get_runner("ncnn").load(path, threads=1, precision="int8")
    with pytest.raises(BadInputError, match="manifest"):
        get_runner("ncnn").load(path, threads=1, input_shape=[1, 32, 32])


def test_corrupt_ncnn_files_are_refused_with_exit_2(ncnn_bundle, tmp_path, cli):
    bundle = load_bundle(ncnn_bundle)
    entry = bundle.artifacts[0]
    param, weights = tmp_path / "model.param", tmp_path / "model.bin"
    shutil.copy2(bundle.artifact_path(entry), param)
    shutil.copy2(bundle.root / entry.files[1]["path"], weights)
    assert runtime_for_path(param) == "ncnn"
    _ok(cli("bench", str(param), "--threads", "1", *FAST))  # the .param alone says its input shape

    param.write_bytes(b"\x00garbage\xff" * 50)
    result = cli("bench", str(param), "--threads", "1", *FAST)
    assert result.exit_code == 2 and "not an ncnn .param file" in result.stderr

    good = (bundle.artifact_path(entry)).read_text().splitlines()
    param.write_text("\n".join([good[0], good[1]] + good[2:-1]) + "\n")  # one layer short of its header
    with pytest.raises(BadInputError, match="declares"):
        get_runner("ncnn").load(param, threads=1)

    param.write_text("\n".join(good) + "\n")
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(BadInputError, match="truncated"):
        get_runner("ncnn").load(param, threads=1)

    # Inside a bundle, a changed .param is caught by its hash before ncnn sees it.
    tampered = tmp_path / "bundle"
    shutil.copytree(ncnn_bundle, tampered)
    with open(tampered / entry.path, "a") as handle:
        handle.write("Garbage x 0 0\n")
    result = cli("bench", str(tampered), *FAST)
    assert result.exit_code == 2 and "sha256" in result.stderr


def test_profiles_extras_and_registration():
    from edgecnn.profiles import ProfileError, load_profile

    backend = get_backend("ncnn")
    assert backend.static_batch and backend.format == "ncnn" and backend.precisions == ("fp32", "fp16")
    for name, default in (("rpi5-ncnn", "fp16"), ("arm-ncnn", "fp32")):
        profile = load_profile(name)
        assert profile.runtime == "ncnn" and profile.precisions == ("fp32", "fp16")
        assert profile.default_precision == default and profile.max_batch == 1
        with pytest.raises(ProfileError, match="ncnn2table"):
            profile.check_precision("int8")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert [r.split(">=")[0] for r in extras[backend.device_extra]] == ["ncnn", "pillow"]  # torch-free on the device (pillow reads photos)
    assert {"pnnx", "ncnn"} <= {r.split(">=")[0] for r in extras[backend.host_extra]}
    assert backend.host_extra in extras["all"][0]


def test_a_model_with_an_op_ncnn_lacks_is_refused_naming_it(lenet_checkpoint, tmp_path, cli):
    """LeNet-5's C3 gathers channels with index_select: pnnx keeps it as torch.index_select."""
    out = tmp_path / "lenet-ncnn"
    result = cli("export", str(lenet_checkpoint), "--target", "rpi5-ncnn", "--out", str(out))
    assert result.exit_code == 2
    assert "pnnx has no ncnn layer for torch.index_select" in result.stderr
    assert not out.exists()


def _load_in_child(tmp_path, param, code: str, env_extra: dict | None = None) -> dict:
    """Run `code` in a fresh Python (OpenMP reads its wait policy once per process); its last stdout line as JSON."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(env_extra or {})
    prelude = ("import json, os, sys\nfrom edgecnn.backends import get_runner\n"
               f"param = {str(param)!r}\n")
    done = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_runner_waits_passively_by_default_spins_on_request_and_says_which(ncnn_bundle, tmp_path):
    param = load_bundle(ncnn_bundle).artifact_path(load_bundle(ncnn_bundle).artifacts[0])
    code = ("a = get_runner('ncnn').load(param, threads=2).applied\n"
            "b = get_runner('ncnn').load(param, threads=2, openmp_wait='spin').applied\n"
            "print(json.dumps({'a': a, 'b': b, 'env': os.environ.get('OMP_WAIT_POLICY')}))")
    seen = _load_in_child(tmp_path, param, code)
    assert seen["a"]["openmp_wait"] == "passive" and seen["a"]["openmp_blocktime"] == 0
    assert seen["a"]["num_threads"] == 2 and "openmp_wait_asked" not in seen["a"]
    # The Linux wheels bundle GNU libgomp: Option.openmp_blocktime alone would not reach it.
    assert seen["a"]["openmp_runtime"] in ("libgomp", "libomp", "libgomp, libomp")
    # The second net shares the process's OpenMP runtime: the wait in effect is said, and what was asked.
    assert seen["b"]["openmp_wait"] == "passive" and seen["b"]["openmp_wait_asked"] == "spin"
    assert seen["env"] is None, "the variables were set for ncnn's import only"

    code = ("r = get_runner('ncnn').load(param, threads=2, openmp_wait='spin')\n"
            "print(json.dumps({'a': r.applied, 'env': os.environ.get('OMP_WAIT_POLICY')}))")
    seen = _load_in_child(tmp_path, param, code, {"OMP_WAIT_POLICY": "ACTIVE"})
    assert seen["a"]["openmp_wait"] == "spin" and seen["a"]["openmp_blocktime"] == 20
    assert seen["env"] == "ACTIVE", "the caller's own setting is back after the import"


def test_the_wait_policy_is_in_the_environment_when_ncnn_loads(ncnn_bundle, monkeypatch):
    import os

    import ncnn

    import edgecnn.backends.ncnn.runner as runner_module

    param = load_bundle(ncnn_bundle).artifact_path(load_bundle(ncnn_bundle).artifacts[0])
    for wait, expected in (("passive", {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0"}),
                           ("spin", {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None})):
        seen = {}

        def fake_require(module, extra, purpose=""):
            seen.update({name: os.environ.get(name) for name in expected})
            return ncnn

        monkeypatch.setenv("GOMP_SPINCOUNT", "12345")  # a caller's value: hidden from the import, then restored
        monkeypatch.delitem(sys.modules, "ncnn", raising=False)
        monkeypatch.setattr(runner_module, "_imported_wait", None)
        monkeypatch.setattr(runner_module, "require", fake_require)
        runner = get_runner("ncnn").load(param, threads=2, openmp_wait=wait)
        assert seen == expected and runner.applied["openmp_wait"] == wait
        assert os.environ["GOMP_SPINCOUNT"] == "12345"
        runner.close()


def test_a_bad_openmp_wait_is_refused_naming_the_setting(ncnn_bundle):
    param = load_bundle(ncnn_bundle).artifact_path(load_bundle(ncnn_bundle).artifacts[0])
    for bad in ("busy", True, 0):
        with pytest.raises(BadInputError, match="openmp_wait must be passive or spin") as caught:
            get_runner("ncnn").load(param, threads=2, openmp_wait=bad)
        assert caught.value.exit_code == 2


def test_tune_sweeps_the_openmp_wait_after_the_default():
    from edgecnn.backends.ncnn import tuning
    from edgecnn.backends.ncnn.runner import NcnnRunner
    from edgecnn.bench import BenchTarget
    from edgecnn.tune.search import plan

    knobs = dict(tuning.axes("fp32", cores=2))
    assert knobs["openmp_wait"] == [{"openmp_wait": "passive"}, {"openmp_wait": "spin"}]
    assert dict(tuning.axes("fp32", cores=1))["openmp_wait"] == [{"openmp_wait": "passive"}]  # nothing to sweep
    for values in knobs.values():
        for value in values:
            assert set(value) <= NcnnRunner.options, "every knob tune sweeps is one the runner takes"
    assert "load" in tuning.NOTE
    target = BenchTarget(name="model.fp32.param", path=REPO / "model.fp32.param", runtime="ncnn", precision="fp32")
    _, axes = plan(target, default_threads=2, cores=2)
    assert [{"openmp_wait": "passive"}, {"openmp_wait": "spin"}] in axes
