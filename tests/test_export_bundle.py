"""`edgecnn export`: every CPU target and precision into a bundle, and the ways an export must refuse.

The model is a LeNet-5 trained briefly on scikit-learn's digits (the session fixture), so the
golden set, calibration data and parity numbers are real.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgecnn.bundle import BundleIntegrityError, file_sha256, load_bundle


def _export(cli, source, target, out, *extra):
    return cli("export", str(source), "--target", target, "--out", str(out), *extra)


def _ok(result):
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def onnx_int8_bundle(lenet_checkpoint, tmp_path_factory):
    from typer.testing import CliRunner

    from edgecnn.cli import app

    out = tmp_path_factory.mktemp("bundles") / "lenet-onnx-int8"
    result = CliRunner().invoke(app, ["export", str(lenet_checkpoint), "--target", "onnx", "--precision", "int8",
                                      "--out", str(out)])
    _ok(result)
    return out


def test_onnx_int8_bundle_has_everything_a_device_needs(onnx_int8_bundle, lenet_checkpoint):
    bundle = load_bundle(onnx_int8_bundle)
    manifest = bundle.manifest
    assert manifest["model"]["name"] == "lenet5"
    assert manifest["model"]["checkpoint"] == str(lenet_checkpoint)
    assert manifest["target"] == "onnx" and manifest["profile"]["runtime"] == "onnxruntime"
    assert manifest["input"]["shape"] == [1, 32, 32]
    assert manifest["preprocess"]["class_names"] == [str(i) for i in range(10)]
    assert {"torch", "onnx", "onnxruntime", "edgecnn"} <= set(manifest["tools"])
    assert [(a.path, a.precision) for a in bundle.artifacts] == [
        ("onnx/model.fp32.onnx", "fp32"), ("onnx/model.int8.onnx", "int8")]
    for entry in bundle.artifacts:
        path = bundle.artifact_path(entry)
        assert entry.sha256 == file_sha256(path) and entry.bytes == path.stat().st_size
    bundle.check_integrity()
    # The int8 graph is QDQ and smaller than the fp32 one.
    fp32, int8 = bundle.artifacts
    assert int8.bytes < fp32.bytes
    import onnx

    ops = {node.op_type for node in onnx.load(bundle.artifact_path(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # Calibration came from the checkpoint's own training data.
    assert manifest["calibration"]["source"] == "digits train split"
    assert manifest["calibration"]["samples"] == 300


def test_golden_set_matches_pytorch_and_parity_is_recorded(onnx_int8_bundle, lenet_checkpoint):
    import torch

    from edgecnn.checkpoint import load_model

    bundle = load_bundle(onnx_int8_bundle)
    golden = bundle.load_golden()
    n = bundle.manifest["golden"]["samples"]
    assert golden["inputs"].shape == (n, 1, 32, 32) and golden["logits"].shape == (n, 10)
    assert n >= 200 and set(np.unique(golden["labels"])) == set(range(10))
    model = load_model(lenet_checkpoint).model
    with torch.inference_mode():
        live = model(torch.from_numpy(golden["inputs"])).numpy()
    np.testing.assert_allclose(live, golden["logits"], atol=1e-4)
    fp32, int8 = bundle.artifacts
    assert fp32.extra["parity"]["top1_agreement"] == 1.0
    assert fp32.extra["parity"]["max_abs_diff"] < 1e-3
    assert int8.extra["parity"]["drop"] <= 2.0  # verify holds the 1-point gate, on the full test split
    # Fusion report: the graph was slimmed and holds no BatchNormalization.
    assert bundle.manifest["fusion"]["nodes_after"] <= bundle.manifest["fusion"]["nodes_before"]
    assert bundle.manifest["fusion"]["batchnorm_nodes_after"] == 0


def test_existing_bundle_kept_without_force(cli, onnx_int8_bundle, lenet_checkpoint):
    before = (onnx_int8_bundle / "manifest.json").read_text()
    result = _export(cli, lenet_checkpoint, "onnx", onnx_int8_bundle)
    assert result.exit_code == 2
    assert "--force" in result.stderr
    assert (onnx_int8_bundle / "manifest.json").read_text() == before


def test_force_replaces_a_bundle(cli, lenet_checkpoint, tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    _ok(_export(cli, lenet_checkpoint, "onnx", out, "--force"))
    assert not (out / "stale.txt").exists()
    assert [a.precision for a in load_bundle(out).artifacts] == ["fp32"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folders left behind"


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_x86_openvino_bundle(cli, lenet_checkpoint, tmp_path, precision):
    out = tmp_path / f"x86-{precision}"
    _ok(_export(cli, lenet_checkpoint, "x86", out, "--precision", precision))
    bundle = load_bundle(out)
    assert [(a.format, a.precision) for a in bundle.artifacts] == [("openvino", "fp32"), ("openvino", precision)]
    for entry in bundle.artifacts:
        assert [Path(f["path"]).suffix for f in entry.files] == [".xml", ".bin"]
        assert entry.extra["parity"]["top1_agreement"] >= (0.995 if entry.precision != "int8" else 0.95)
    bundle.check_integrity()
    if precision == "int8":
        assert bundle.artifacts[1].extra["fake_quantize_nodes"] > 0


def test_arm_tflite_int8_bundle(cli, lenet_checkpoint, tmp_path):
    out = tmp_path / "arm"
    _ok(_export(cli, lenet_checkpoint, "arm", out, "--precision", "int8"))
    bundle = load_bundle(out)
    assert [(a.format, a.precision) for a in bundle.artifacts] == [("tflite", "fp32"), ("tflite", "int8")]
    fp32, int8 = bundle.artifacts
    assert fp32.extra["parity"]["top1_agreement"] == 1.0
    assert int8.extra["parity"]["drop"] <= 2.0
    assert fp32.input["batch"] == 1  # TFLite tensors are static


def test_batchnorm_is_folded_for_a_bn_network(cli, tmp_path):
    """A zoo model with BatchNorm everywhere: no BatchNormalization node reaches the bundle."""
    import onnx

    out = tmp_path / "mnv3"
    result = _ok(_export(cli, "mobilenet_v3_small", "onnx", out, "--weights", "random", "--input-size", "32"))
    assert "random weights" in result.stderr
    bundle = load_bundle(out)
    graph = onnx.load(bundle.artifact_path(bundle.artifacts[0])).graph
    assert not [n for n in graph.node if n.op_type == "BatchNormalization"]
    fusion = bundle.manifest["fusion"]
    assert fusion["batchnorm_modules_folded"] > 10 and fusion["nodes_after"] < fusion["nodes_before"]
    assert bundle.manifest["model"]["accuracy_meaningful"] is False
    assert bundle.manifest["golden"]["labels_meaningful"] is False


def test_parity_failure_raises_and_leaves_no_bundle(cli, lenet_checkpoint, tmp_path, monkeypatch):
    import edgecnn.inference as infer

    real = infer.run_logits

    def scrambled(*args, **kwargs):  # an exporter bug: outputs for the wrong images
        logits, info = real(*args, **kwargs)
        return logits[::-1].copy(), info

    monkeypatch.setattr(infer, "run_logits", scrambled)
    out = tmp_path / "broken"
    result = _export(cli, lenet_checkpoint, "onnx", out)
    assert result.exit_code == 1, result.stderr
    assert "agreement" in result.stderr
    assert not out.exists()
    assert not list(tmp_path.iterdir()), "a half-written bundle was left behind"


def test_int8_without_data_is_refused_with_the_fix(cli, tmp_path):
    result = _export(cli, "lenet5", "onnx", tmp_path / "x", "--weights", "random", "--precision", "int8")
    assert result.exit_code == 2
    assert "--calib-data" in result.stderr
    assert not (tmp_path / "x").exists()


def test_noise_calibration_only_by_name_and_with_a_warning(cli, tmp_path):
    out = tmp_path / "noise"
    result = _ok(_export(cli, "lenet5", "onnx", out, "--weights", "random", "--precision", "int8",
                         "--calib-data", "noise", "--calib-size", "16"))
    assert "means nothing" in result.stderr
    assert load_bundle(out).manifest["calibration"]["source"] == "noise"


def test_precision_the_target_cannot_run_is_refused(cli, lenet_checkpoint, tmp_path):
    result = _export(cli, lenet_checkpoint, "onnx", tmp_path / "x", "--precision", "fp16")
    assert result.exit_code == 2 and "fp16" in result.stderr


@pytest.mark.parametrize("body, field", [
    ('description="d"\nruntime="onnxruntime"\nprecisions=["fp32"]\ndefault_precision="fp32"\nthreads=-1\n'
     'opset=17\n[input]\nmax_size=64\nmax_batch=1\n', "threads"),
    ('description="d"\nprecisions=["fp32"]\ndefault_precision="fp32"\nthreads=0\nopset=17\n'
     '[input]\nmax_size=64\nmax_batch=1\n', "runtime"),
    ('description="d"\nruntime="openvino"\nprecisions=["fp32"]\ndefault_precision="int8"\nthreads=0\n'
     'opset=17\n[input]\nmax_size=64\nmax_batch=1\n', "default_precision"),
    ('description="d"\nruntime="openvino"\nprecisions=["fp32"]\ndefault_precision="fp32"\nthreads=0\n'
     'opset=17\nthread=2\n[input]\nmax_size=64\nmax_batch=1\n', "thread"),
])
def test_bad_profile_is_refused_naming_the_field(cli, lenet_checkpoint, tmp_path, body, field):
    profile = tmp_path / "board.toml"
    profile.write_text(body)
    result = _export(cli, lenet_checkpoint, str(profile), tmp_path / "x")
    assert result.exit_code == 2
    assert f"'{field}'" in result.stderr


def test_unknown_target_suggests_names(cli, lenet_checkpoint, tmp_path):
    result = _export(cli, lenet_checkpoint, "x68", tmp_path / "x")
    assert result.exit_code == 2 and "x86" in result.stderr


def test_every_shipped_profile_is_valid(cli):
    from edgecnn.profiles import list_profiles

    names = {p.name for p in list_profiles()}
    assert {"onnx", "x86", "arm", "rpi4", "rpi5", "jetson", "jetson-nano", "cuda"} <= names
    result = cli("devices", "--json", "/dev/null")
    assert result.exit_code == 0 and "rpi4" in result.stdout


def test_tampered_artifact_and_manifest_are_refused(onnx_int8_bundle, tmp_path, cli):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(onnx_int8_bundle, copy)
    artifact = copy / "onnx" / "model.int8.onnx"
    data = bytearray(artifact.read_bytes())
    data[-1] ^= 0xFF
    artifact.write_bytes(bytes(data))
    bundle = load_bundle(copy)
    with pytest.raises(BundleIntegrityError, match="model.int8.onnx"):
        bundle.check_integrity()
    result = cli("bench", str(copy), "--iters", "2", "--warmup", "1")
    assert result.exit_code == 2 and "sha256" in result.stderr

    manifest = json.loads((onnx_int8_bundle / "manifest.json").read_text())
    manifest["artifacts"][0]["sha256"] = "0" * 64
    other = tmp_path / "other"
    shutil.copytree(onnx_int8_bundle, other)
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleIntegrityError):
        load_bundle(other).check_integrity()
    manifest["artifacts"][0]["path"] = "../outside.onnx"
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Exception, match="leaves the bundle"):
        load_bundle(other)


def test_calibration_data_of_the_wrong_shape_is_refused(onnx_int8_bundle, tmp_path):
    from edgecnn.errors import BadInputError
    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8

    wrong = np.zeros((8, 3, 32, 32), dtype=np.float32)  # the model takes 1x32x32
    with pytest.raises(BadInputError, match="calibration"):
        quantize_onnx_int8(onnx_int8_bundle / "onnx" / "model.fp32.onnx", tmp_path / "q.onnx", wrong)
    assert not (tmp_path / "q.onnx").exists()


def test_quantize_command_takes_preprocessing_from_the_bundle(cli, onnx_int8_bundle, tmp_path):
    out = tmp_path / "again.int8.onnx"
    result = _ok(cli("quantize", str(onnx_int8_bundle / "onnx" / "model.fp32.onnx"), "--calib-data", "digits",
                     "--calib-size", "50", "--out", str(out)))
    assert out.is_file() and "per-channel" in result.stdout
    again = cli("quantize", str(onnx_int8_bundle / "onnx" / "model.fp32.onnx"), "--calib-data", "digits",
                "--out", str(out))
    assert again.exit_code == 2 and "--force" in again.stderr


def test_jetson_bundle_without_tensorrt(cli, lenet_checkpoint, tmp_path):
    """`export --target jetson` on a host without TensorRT: a complete bundle and how to finish."""
    pytest.importorskip("onnxruntime")
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here: the engine path is covered by tests/test_tensorrt.py")
    out = tmp_path / "jetson"
    result = _ok(_export(cli, lenet_checkpoint, "jetson", out, "--precision", "int8"))
    assert "build_engine.sh" in result.stdout
    bundle = load_bundle(out)
    assert bundle.manifest["target"] == "jetson"
    assert {(a.path, a.precision) for a in bundle.artifacts} >= {
        ("onnx/model.fp32.onnx", "fp32"), ("onnx/model.int8.qdq.onnx", "int8")}
    assert (out / "build_engine.sh").is_file() and (out / "README.md").is_file()
    assert bundle.manifest["tensorrt"]["engines"]
    int8 = next(a for a in bundle.artifacts if a.precision == "int8")
    assert int8.extra["parity"]["drop"] <= 1.0 + 1e-9


def test_users_quoted_command_works_offline_with_random_weights(cli, tmp_path):
    """`edgecnn export mobilenet --target jetson`: int8 by default needs data, so fp16 with a note."""
    out = tmp_path / "mnv2-jetson"
    result = _ok(_export(cli, "mobilenet", "jetson", out, "--weights", "random", "--input-size", "64"))
    assert "mobilenet -> mobilenet_v2" in result.stderr
    assert "built fp16 instead" in " ".join(result.stderr.split())  # rich wraps long lines
    bundle = load_bundle(out)
    assert bundle.manifest["precision"] == "fp16"
    assert {a.precision for a in bundle.artifacts} == {"fp32", "fp16"}
    script = (out / "build_engine.sh").read_text()
    assert "trtexec" in script
