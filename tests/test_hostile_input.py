"""Hostile input (issue 23): numbers that are not numbers, tuning files and manifests trusted too much, errors
that blame the wrong thing, output paths that cannot be written.

Every case is refused where the value enters: exit 2, one `error:` line naming the field and the fix, nothing
written, no work done. Fleet files are in test_hostile_fleet.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import edgecnn.cli.explain  # noqa: F401  (registers the commands)
import edgecnn.cli.tune  # noqa: F401
from edgecnn.errors import BadInputError

REPO = Path(__file__).resolve().parent.parent


def error_line(result) -> str:
    """The one `error:` line of a refused command (and nothing unexpected about it)."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "unexpected" not in lines[0] and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def refused(result, *words: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    line = error_line(result)
    for word in words:
        assert word in line, line
    return line


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a command gets as far as loading a model or a bundle's runtime."""
    import edgecnn.sources

    def started(*args, **kwargs):
        raise AssertionError("the work started before the input was checked")

    monkeypatch.setattr(edgecnn.sources, "load_source", started)


# --- numbers that are not numbers ------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "0"])
def test_export_search_budget_must_be_finite_and_positive(cli, tmp_path, no_work, value):
    out = tmp_path / "bundle"
    result = cli("export", "lenet5", "--target", "onnx", "--precision", "int8", "--search-budget", value,
                 "--out", str(out))
    refused(result, "--search-budget")
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("command, option, value", [
    ("explain", "--budget", "-1"), ("explain", "--budget", "nan"), ("tune", "--budget", "inf"),
    ("tune", "--budget", "nan"), ("tune", "--min-time", "-inf"), ("bench", "--min-time", "nan"),
    ("bench", "--timeout", "-1"), ("bench", "--timeout", "inf"),
])
def test_seconds_options_are_refused_by_name_everywhere(cli, tmp_path, command, option, value):
    bundle = tmp_path / "no-bundle-needed"  # the number is refused before the bundle is even read
    refused(cli(command, str(bundle), option, value), option, value.lstrip("-") if value != "-1" else "-1")


def test_bench_and_tune_refuse_a_bad_number_before_contacting_a_device(cli, tmp_path):
    for args in (("bench", "--timeout", "nan"), ("tune", "--budget", "-1")):
        result = cli(args[0], str(tmp_path), *args[1:], "--on", "pi@unreachable.invalid")
        refused(result, args[1])
        assert "device(s)" not in result.stderr  # nothing was dispatched


def test_no_nan_is_ever_written_as_json(tmp_path):
    import numpy as np

    from edgecnn.atomic import write_json_atomic

    for bad in (float("nan"), float("inf"), np.float32("nan")):
        target = tmp_path / "report.json"
        with pytest.raises(ValueError, match=r"artifacts\[0\]\.p50 is not a finite number"):
            write_json_atomic(target, {"artifacts": [{"p50": bad}]})
        assert not list(tmp_path.iterdir())  # no broken file, no temp file
    write_json_atomic(tmp_path / "ok.json", {"p50": np.float32(1.5)})
    assert json.loads((tmp_path / "ok.json").read_text()) == {"p50": 1.5}


def test_a_manifest_holding_nan_is_refused_when_read(tmp_path, cli):
    (tmp_path / "manifest.json").write_text('{"artifacts": [], "model": {"accuracy": NaN}}')
    refused(cli("bench", str(tmp_path)), "manifest.json", "NaN")


# --- a small real bundle (ONNX, golden set) for the tuning and explain cases ---------------------------
@pytest.fixture(scope="module")
def onnx_bundle(tmp_path_factory) -> Path:
    from runtime_helpers import INPUT_SHAPE, onnx_file, reference_logits, sample_batch

    from edgecnn.bundle import GOLDEN_NAME, BundleWriter, artifact_entry, file_sha256, write_golden

    spec = {"shape": list(INPUT_SHAPE), "layout": "NCHW", "dtype": "float32", "batch": None}
    model = onnx_file()  # first: exporting after inference_mode trips torch's autograd
    inputs = sample_batch(16, seed=3)
    logits = reference_logits(inputs)
    with BundleWriter(tmp_path_factory.mktemp("hostile") / "bundle") as writer:
        fp32, int8 = writer.path("onnx/model.fp32.onnx"), writer.path("onnx/model.int8.onnx")
        shutil.copy2(model, fp32)
        shutil.copy2(model, int8)  # a stand-in: explain refuses the manifest before reading it
        entries = [artifact_entry(writer.root, [fp32], format="onnx", runtime="onnxruntime", precision="fp32",
                                  input=spec).to_dict(),
                   artifact_entry(writer.root, [int8], format="onnx", runtime="onnxruntime", precision="int8",
                                  input=spec, int8={"sensitivity": [], "layers_in_float": []},
                                  layer_names={"Conv_0": "0"}).to_dict()]
        write_golden(writer.path(GOLDEN_NAME), inputs, logits.argmax(1), logits)
        return writer.commit({
            "model": {"name": "tiny", "num_classes": 10, "accuracy_meaningful": False}, "target": "onnx",
            "profile": {"threads": 1}, "input": spec, "artifacts": entries,
            "golden": {"path": GOLDEN_NAME, "sha256": file_sha256(writer.root / GOLDEN_NAME), "samples": 16},
        })


def _copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "bundle"))


def _edit_manifest(bundle: Path, change) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    change(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _tuning(bundle: Path, settings: dict, *, relative: str) -> Path:
    """A tuning file for this machine with `settings` for the fp32 artifact, recorded (sha256 right) in the manifest."""
    from edgecnn.bench.tuned import SCHEMA, device_signature
    from edgecnn.bundle import file_sha256

    manifest = json.loads((bundle / "manifest.json").read_text())
    entry = manifest["artifacts"][0]
    path = (bundle / relative).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema": SCHEMA, "signature": device_signature(),
                                "artifacts": [{"path": entry["path"], "sha256": entry["sha256"],
                                               "settings": settings}]}))
    _edit_manifest(bundle, lambda m: m.__setitem__("tuning", [
        {"path": relative, "signature": device_signature(), "sha256": file_sha256(path)}]))
    return path


# --- a tuning file trusted too much ----------------------------------------------------------------------
def test_a_tuning_record_outside_the_bundle_is_refused(onnx_bundle, tmp_path, cli):
    bundle = _copy(onnx_bundle, tmp_path)
    evil = _tuning(bundle, {"threads": 1, "graph_optimization": "basic"}, relative="../evil-tuning.json")
    assert evil == tmp_path / "evil-tuning.json" and evil.is_file()
    for command in ("bench", "verify"):
        refused(cli(command, str(bundle)), "../evil-tuning.json", "leaves")
    from edgecnn.bench.tuned import load_bundle_runner

    with pytest.raises(BadInputError, match="leaves"):
        load_bundle_runner(bundle)


@pytest.mark.parametrize("settings, named", [
    ({"threads": "../../etc"}, "threads"),
    ({"threads": 2, "execution_mode": "parallel", "inter_op_threads": "lots"}, "inter_op_threads"),
    ({"threads": 0}, "threads"),
    ({"threads": True}, "threads"),
    ({"threads": 1, "num_streams": float("nan")}, "num_streams"),
    ({"threads": 1, "providers": [{"evil": 1}]}, "providers"),
])
def test_a_tuned_setting_of_the_wrong_type_is_refused_by_name(onnx_bundle, tmp_path, cli, settings, named):
    bundle = _copy(onnx_bundle, tmp_path)
    _tuning(bundle, settings, relative="tuning/this-machine.json")
    for command in ("bench", "verify"):
        refused(cli(command, str(bundle)), f"tuned setting {named}", "--untuned")
    assert cli("bench", str(bundle), "--untuned", "--iters", "3", "--warmup", "0").exit_code == 0


def test_a_tuning_file_that_is_not_an_object_is_refused(onnx_bundle, tmp_path, cli):
    bundle = _copy(onnx_bundle, tmp_path)
    path = _tuning(bundle, {"threads": 1}, relative="tuning/this-machine.json")
    path.write_text("[1, 2]")
    _tuning_sha = __import__("edgecnn.bundle", fromlist=["file_sha256"]).file_sha256(path)
    _edit_manifest(bundle, lambda m: m["tuning"][0].__setitem__("sha256", _tuning_sha))
    refused(cli("bench", str(bundle)), "tuning", "JSON object")


def test_a_golden_set_outside_the_bundle_is_refused(onnx_bundle, tmp_path, cli):
    bundle = _copy(onnx_bundle, tmp_path)
    _edit_manifest(bundle, lambda m: m["golden"].__setitem__("path", "../../golden.npz"))
    refused(cli("verify", str(bundle)), "golden.path", "leaves")


# --- a tampered manifest in explain -----------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("int8", "oops"), ("int8", {"sensitivity": "x"}), ("int8", {"layers_in_float": [1, 2]}),
    ("layer_names", ["Conv_0"]), ("layer_names", {"Conv_0": 7}),
])
def test_explain_refuses_a_manifest_field_of_the_wrong_type(onnx_bundle, tmp_path, cli, field, value):
    bundle = _copy(onnx_bundle, tmp_path)
    _edit_manifest(bundle, lambda m: m["artifacts"][1].__setitem__(field, value))
    refused(cli("explain", str(bundle), "--budget", "1"), "onnx/model.int8.onnx", field, "re-export")


# --- errors that blame the wrong thing ---------------------------------------------------------------------
def _export_subprocess(source: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """In its own process: library warnings go to the real stderr there (pytest swallows them in-process)."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "edgecnn", "export", source, "--target", "onnx", "--out", str(out),
                           *extra], capture_output=True, text=True, cwd=out.parent, env=env, timeout=300)


def test_a_garbage_torchscript_file_is_named_as_the_problem(tmp_path):
    import zipfile

    stated = ["--input-size", "8", "--mean", "0.5,0.5,0.5", "--std", "0.2,0.2,0.2"]
    (tmp_path / "model.ts").write_bytes(os.urandom(2000))
    with zipfile.ZipFile(tmp_path / "fake.ts", "w") as archive:  # looks like TorchScript, is not
        archive.writestr("fake/code/x.py", "garbage")
        archive.writestr("fake/constants.pkl", "garbage")
    for name, expected in (("model.ts", "is not TorchScript, not a checkpoint, not an ONNX file"),
                           ("fake.ts", "cannot read fake.ts as TorchScript")):
        done = _export_subprocess(name, tmp_path / "out", *stated)
        assert done.returncode == 2, done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and expected in errors[0], done.stderr
        assert "describe a foreign model" not in done.stderr
        assert "Warning" not in done.stderr, done.stderr  # torch's FutureWarning does not precede the error
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("source, expected", [
    ("fac.py:", "no function name after ':'"), ("pkg.models:", "no function name after ':'"),
    ("fac.py:1net", "is not a function name"),
])
def test_a_factory_reference_without_a_function_says_so(cli, tmp_path, source, expected):
    (tmp_path / "fac.py").write_text("import torch\n")
    out = tmp_path / "out"
    result = cli("export", source, "--target", "onnx", "--out", str(out), "--input-size", "8",
                 "--mean", "0.5,0.5,0.5", "--std", "0.2,0.2,0.2")
    line = refused(result, expected)
    assert "describe a foreign model" not in line and not out.exists()


def test_a_real_checkpoint_with_mean_still_says_it_brings_its_own(cli, tmp_path):
    import torch

    torch.save({"arch": "lenet5"}, tmp_path / "model.pt")  # a torch.save file: a checkpoint, not garbage
    result = cli("export", str(tmp_path / "model.pt"), "--target", "onnx", "--out", str(tmp_path / "o"),
                 "--mean", "0.5,0.5,0.5")
    refused(result, "--mean describe a foreign model")


# --- output paths ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("out", ["/sys/edgecnn-nope/bundle", "/proc/edgecnn-nope/bundle", "/sys/bundle"])
def test_export_out_that_cannot_be_made_is_refused_before_any_work(cli, no_work, out):
    refused(cli("export", "lenet5", "--target", "onnx", "--out", out), "--out", out)


@pytest.fixture
def read_only_dir(tmp_path):
    """A read-only tmpfs (root ignores chmod, not a read-only mount); skipped where mounting is not allowed."""
    folder = tmp_path / "ro"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_export_out_on_a_read_only_file_system(cli, no_work, read_only_dir):
    out = read_only_dir / "bundle"
    refused(cli("export", "lenet5", "--target", "onnx", "--out", str(out)), "--out", "Read-only file system")
    refused(cli("export", "lenet5", "--target", "onnx", "--out", str(out / "deeper")), "--out")
    assert not list(read_only_dir.iterdir())


@pytest.mark.parametrize("json_path", ["/proc/nope/x.json", "/sys/nope/x.json", "/proc/x.json"])
def test_bench_json_that_cannot_be_made_is_refused_up_front(onnx_bundle, cli, json_path):
    refused(cli("bench", str(onnx_bundle), "--json", json_path), "--json", json_path)


def test_json_on_a_read_only_file_system(onnx_bundle, cli, read_only_dir):
    refused(cli("bench", str(onnx_bundle), "--json", str(read_only_dir / "x.json")), "--json", "Read-only")


def test_a_losing_racer_is_refused_before_any_work(cli, tmp_path, no_work):
    """Another live export holds the folder: the second is refused at once, not after minutes of work."""
    out = tmp_path / "bundle"
    script = ("import sys, time; from edgecnn.atomic import claim_output; claim_output(sys.argv[1]); "
              "print('claimed', flush=True); time.sleep(60)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", script, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        line = refused(cli("export", "lenet5", "--target", "onnx", "--out", str(out)), str(out),
                       f"process {holder.pid}")
        assert "--out" in line
    finally:
        holder.kill()
        holder.wait()
    assert not out.exists()


def test_a_dead_exports_claim_is_taken_over_and_released(tmp_path):
    from edgecnn.bundle import BundleWriter

    out = tmp_path / "bundle"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    (tmp_path / ".bundle.claim").write_text(str(child.pid))  # what a killed export leaves
    with BundleWriter(out) as writer:
        writer.path("x.txt").write_text("x")
        writer.commit({"artifacts": []})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    writer = BundleWriter(tmp_path / "other")  # refused work before `with`: the claim goes with the writer
    assert (tmp_path / ".other.claim").exists()
    del writer
    assert not (tmp_path / ".other.claim").exists()


def test_train_and_quantize_outputs_are_checked_before_any_work(cli, onnx_bundle, monkeypatch):
    import edgecnn.train

    monkeypatch.setattr(edgecnn.train, "train", lambda *a, **k: pytest.fail("trained before checking --out"))
    refused(cli("train", "lenet5", "--data", "digits", "--out", "/sys/edgecnn-nope/run"), "--out")
    model = onnx_bundle / "onnx" / "model.fp32.onnx"
    refused(cli("quantize", str(model), "--calib-data", "digits", "--out", "/proc/nope/model.int8.onnx"), "--out")


def test_tune_on_a_read_only_bundle_is_refused_before_timing(onnx_bundle, cli, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        bundle = Path(shutil.copytree(onnx_bundle, folder / "bundle"))
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        refused(cli("tune", str(bundle), "--budget", "5"), "Read-only file system")
        assert not (bundle / "tuning").exists()
    finally:
        subprocess.run(["umount", str(folder)], check=True)
