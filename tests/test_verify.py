"""`edgecnn verify`: parity numbers, thresholds, broken models caught, JUnit/Markdown, no torch.

The bundles are built here from a LeNet-5 trained for three epochs on scikit-learn's digits
(about 94 % test top-1): ONNX fp32, ONNX QDQ int8 (calibrated on real images), OpenVINO IR
fp32, and a golden set of the 269 test images with their PyTorch logits.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import edgecnn.cli.verify  # noqa: E402,F401  (registers the command until edgecnn.cli imports it)
from edgecnn.errors import BadInputError  # noqa: E402
from edgecnn.verify import (  # noqa: E402
    DEFAULT_THRESHOLDS,
    Thresholds,
    build_overrides,
    evaluate_artifact,
    guess_precision,
    markdown_summary,
    parse_threshold_option,
)
from runtime_helpers import REPO, blocking_env  # noqa: E402

THREADS = 1
ARTIFACT_KEYS = {
    "top1", "reference_top1", "drop", "agreement", "max_abs_diff", "cosine", "reference_source",
    "thresholds", "failed_checks", "passed", "checks", "runtime", "precision", "samples", "path",
}


# ------------------------------------------------------------------------------- the fixtures


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint path, LoadedModel) of a LeNet-5 trained 3 epochs on digits."""
    from edgecnn.checkpoint import load_model
    from edgecnn.train import TrainConfig, train

    out = tmp_path_factory.mktemp("lenet")
    threads = torch.get_num_threads()
    try:
        result = train(TrainConfig(model="lenet5", data="digits", out_dir=str(out), epochs=3, lr=0.01,
                                   augment=False, threads=THREADS), progress=False)
    finally:
        torch.set_num_threads(threads)
    return result.checkpoint, load_model(result.checkpoint)


@pytest.fixture(scope="module")
def parts(trained, tmp_path_factory):
    """Artifacts and golden arrays shared by every bundle: built once."""
    from edgecnn.data import calibration_images, load_data, preprocessed_split
    from edgecnn.export.onnx import export_onnx
    from edgecnn.backends.openvino.convert import export_openvino
    from edgecnn.backends.torch.reference import torch_logits
    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8

    checkpoint, loaded = trained
    folder = tmp_path_factory.mktemp("parts")
    dataset = load_data("digits")
    preprocess = loaded.preprocess
    inputs, labels = preprocessed_split(dataset, "test", preprocess)
    calibration, _ = calibration_images(dataset, preprocess, n=128)
    shape = preprocess.input_shape
    fp32 = export_onnx(loaded.model, shape, folder / "model.onnx", sample=calibration[:2]).path
    int8 = quantize_onnx_int8(fp32, folder / "model.int8.onnx", calibration).path
    # Broken on purpose: INT8 calibrated on constant (all-zero after normalisation) images,
    # so every activation range is collapsed.
    constant = np.zeros_like(calibration[:32])
    bad_int8 = quantize_onnx_int8(fp32, folder / "constant.int8.onnx", constant).path
    # Broken on purpose: the same architecture, re-initialised weights.
    torch.manual_seed(123)
    other = loaded.spec.build(loaded.num_classes).eval()
    other_onnx = export_onnx(other, shape, folder / "other.onnx", sample=calibration[:2]).path
    ir = export_openvino(fp32, folder / "model.xml").xml_path
    return {
        "checkpoint": checkpoint, "preprocess": preprocess, "inputs": inputs, "labels": labels,
        "logits": torch_logits(loaded.model, inputs), "onnx": fp32, "int8": int8, "bad_int8": bad_int8,
        "other_onnx": other_onnx, "openvino": ir,
    }


ARTIFACTS = {  # name -> (parts key, format, runtime, precision, sub-folder)
    "onnx": ("onnx", "onnx", "onnxruntime", "fp32", "onnx"),
    "int8": ("int8", "onnx", "onnxruntime", "int8", "onnx"),
    "openvino": ("openvino", "openvino", "openvino", "fp32", "openvino"),
    "bad_int8": ("bad_int8", "onnx", "onnxruntime", "int8", "onnx"),
    "other_onnx": ("other_onnx", "onnx", "onnxruntime", "fp32", "onnx"),
}


def make_bundle(parts, out: Path, names=("onnx", "int8", "openvino"), *, accuracy_meaningful=True,
                checkpoint=True, golden=True) -> Path:
    """A bundle written the way `edgecnn export` writes one (BundleWriter, sha256 of every file)."""
    from edgecnn.bundle import GOLDEN_NAME, BundleWriter, artifact_entry, file_sha256, write_golden

    preprocess = parts["preprocess"]
    shape = list(preprocess.input_shape)
    with BundleWriter(out) as writer:
        entries = []
        for name in names:
            key, fmt, runtime, precision, sub = ARTIFACTS[name]
            source = Path(parts[key])
            # Every artifact is stored under the name a good one would have: a broken one must be
            # caught by its numbers, not by its file name.
            stem = f"model.{precision}" if precision != "fp32" else "model"
            files = [source] + ([source.with_suffix(".bin")] if fmt == "openvino" else [])
            copied = []
            for file in files:
                target = writer.path(f"{sub}/{stem}{file.suffix}")
                shutil.copy2(file, target)
                copied.append(target)
            entries.append(artifact_entry(writer.root, copied, format=fmt, runtime=runtime, precision=precision,
                                          input={"shape": shape, "layout": "NCHW", "dtype": "float32", "batch": None}))
        manifest = {
            "model": {"name": "lenet5", "num_classes": 10, "accuracy_meaningful": accuracy_meaningful,
                      "checkpoint": str(parts["checkpoint"]) if checkpoint else None, "seed": 0},
            "target": "onnx",
            "input": {"shape": shape, "layout": "NCHW", "dtype": "float32"},
            "preprocess": preprocess.to_dict(),
            "artifacts": [e.to_dict() for e in entries],
        }
        if golden:
            golden_path = writer.path(GOLDEN_NAME)
            write_golden(golden_path, parts["inputs"], parts["labels"], parts["logits"])
            manifest["golden"] = {"path": GOLDEN_NAME, "sha256": file_sha256(golden_path),
                                  "samples": int(len(parts["labels"]))}
        return writer.commit(manifest)


@pytest.fixture(scope="module")
def good_bundle(parts, tmp_path_factory):
    return make_bundle(parts, tmp_path_factory.mktemp("good") / "bundle")


def _cli_json(cli, tmp_path, *args):
    report_path = tmp_path / "verify.json"
    result = cli("verify", *args, "--threads", str(THREADS), "--json", str(report_path))
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    return result, report


# ------------------------------------------------------------------------------- pure functions


def test_thresholds_defaults_overrides_and_parsing():
    assert DEFAULT_THRESHOLDS["fp32"] == Thresholds(min_agreement=0.995)
    assert DEFAULT_THRESHOLDS["int8"] == Thresholds(max_drop=1.0, min_agreement=0.97)
    overrides = build_overrides(min_agreement=0.9, thresholds=["int8.max_drop=2.5", "fp16.min_agreement=off",
                                                                "min_cosine=0.99"])
    assert overrides.for_precision("int8") == Thresholds(max_drop=2.5, min_agreement=0.9, min_cosine=0.99)
    assert overrides.for_precision("fp32") == Thresholds(min_agreement=0.9, min_cosine=0.99)
    assert overrides.for_precision("fp16") == Thresholds(min_agreement=None, min_cosine=0.99)
    assert parse_threshold_option("INT8.max-drop=1") == ("int8", "max_drop", 1.0)
    for bad in ("int8.max_drop", "int4.max_drop=1", "max_speed=3", "min_agreement=97", "max_drop=-1",
                "max_drop=abc"):
        with pytest.raises(BadInputError):
            parse_threshold_option(bad)
    with pytest.raises(BadInputError, match="fraction"):
        build_overrides(min_agreement=97)
    assert guess_precision(Path("m.int8.onnx")) == "int8"
    assert guess_precision(Path("mobilenet_fp16.xml")) == "fp16"
    assert guess_precision(Path("model.onnx")) == "fp32"


def test_evaluate_artifact_metrics_and_named_failures():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((200, 10)).astype(np.float32)
    labels = reference.argmax(1)
    labels[:20] = (labels[:20] + 1) % 10  # reference top-1: 90 %
    same = evaluate_artifact(reference.copy(), reference, labels, DEFAULT_THRESHOLDS["int8"])
    assert same["metrics"]["agreement"] == 1.0 and same["metrics"]["drop"] == 0.0
    assert same["metrics"]["max_abs_diff"] == 0.0 and same["metrics"]["cosine"] == pytest.approx(1.0)
    assert all(c.passed for c in same["checks"])

    # Flip the top-1 of 10 samples whose label agrees with the reference: -5 points, 95 % agreement.
    broken = reference.copy()
    rows = np.arange(20, 30)
    broken[rows, (labels[rows] + 1) % 10] = 100.0
    result = evaluate_artifact(broken, reference, labels, DEFAULT_THRESHOLDS["int8"])
    metrics = result["metrics"]
    assert metrics["reference_top1"] == pytest.approx(90.0) and metrics["top1"] == pytest.approx(85.0)
    assert metrics["drop"] == pytest.approx(5.0) and metrics["agreement"] == pytest.approx(0.95)
    assert {c.name for c in result["checks"] if c.passed is False} == {"drop", "agreement"}

    # Random weights: the drop is reported but not checked.
    skipped = evaluate_artifact(broken, reference, labels, DEFAULT_THRESHOLDS["int8"], accuracy_meaningful=False)
    by_name = {c.name: c for c in skipped["checks"]}
    assert by_name["drop"].passed is None and by_name["agreement"].passed is False

    nan = reference.copy()
    nan[0, 0] = np.nan
    assert {c.name for c in evaluate_artifact(nan, reference, labels, Thresholds())["checks"]
            if c.passed is False} == {"finite"}
    wrong = evaluate_artifact(reference[:, :5], reference, labels, Thresholds())
    assert [c.name for c in wrong["checks"] if c.passed is False] == ["output_shape"]


# ----------------------------------------------------------------------------- bundles, for real


def test_good_bundle_passes_on_golden_with_every_field(good_bundle, tmp_path, cli):
    junit, summary = tmp_path / "junit.xml", tmp_path / "summary.md"
    summary.write_text("## earlier step\n")  # --summary appends, like $GITHUB_STEP_SUMMARY
    result, report = _cli_json(cli, tmp_path, str(good_bundle), "--junit", str(junit), "--summary", str(summary))
    assert result.exit_code == 0, result.output
    assert report["passed"] is True and report["samples"] == 269 and report["samples_source"] == "golden"
    # torch and the checkpoint are here: the reference is re-run live (and matched the golden logits).
    assert report["reference_source"] == "pytorch-live"
    assert report["reference_top1"] > 85
    rows = {r["path"].split("/bundle/")[-1]: r for r in report["artifacts"]}
    assert set(rows) == {"onnx/model.onnx", "onnx/model.int8.onnx", "openvino/model.xml"}
    for row in rows.values():
        assert ARTIFACT_KEYS <= set(row), ARTIFACT_KEYS - set(row)
        assert row["passed"] is True and row["failed_checks"] == []
        assert row["reference_top1"] == pytest.approx(report["reference_top1"])
        assert row["drop"] == pytest.approx(row["reference_top1"] - row["top1"], abs=1e-3)
        assert 0.97 <= row["agreement"] <= 1 and 0.99 < row["cosine"] <= 1.000001
    for name in ("onnx/model.onnx", "openvino/model.xml"):
        assert rows[name]["agreement"] == 1.0 and rows[name]["max_abs_diff"] < 1e-3
        assert rows[name]["thresholds"] == {"max_drop": None, "min_agreement": 0.995, "min_cosine": None,
                                            "max_abs_diff": None}
    int8 = rows["onnx/model.int8.onnx"]
    assert int8["thresholds"]["max_drop"] == 1.0 and int8["thresholds"]["min_agreement"] == 0.97
    assert int8["max_abs_diff"] > 1e-3  # really quantized, not a copy of the fp32 file
    assert {c["name"] for c in int8["checks"]} >= {"drop", "agreement", "finite"}
    assert "pass" in result.stdout and "FAIL" not in result.stdout

    _check_junit(junit, expected_tests=3, expected_failures=0)
    text = summary.read_text()
    assert text.startswith("## earlier step\n")
    _check_markdown_table(text, rows=3)


def test_golden_reference_when_asked_and_limit(good_bundle, tmp_path, cli):
    result, report = _cli_json(cli, tmp_path, str(good_bundle), "--reference-source", "golden", "--limit", "50",
                               "--runtime", "onnx")
    assert result.exit_code == 0, result.output
    assert report["reference_source"] == "golden" and report["samples"] == 50
    assert {r["runtime"] for r in report["artifacts"]} == {"onnxruntime"}
    assert all(r["reference_source"] == "golden" for r in report["artifacts"])


def test_verify_on_data_uses_the_live_reference(good_bundle, tmp_path, cli):
    result, report = _cli_json(cli, tmp_path, str(good_bundle), "--data", "digits", "--runtime", "onnxruntime")
    assert result.exit_code == 0, result.output
    assert report["samples_source"] == "data:digits" and report["reference_source"] == "pytorch-live"
    assert report["samples"] == 269 and all(r["passed"] for r in report["artifacts"])


def test_data_whose_preprocessing_differs_is_bad_input(good_bundle, tmp_path, cli):
    from PIL import Image

    # Ten classes named like the digits', but 48x48 near-white images: other size, other statistics.
    folder = tmp_path / "white"
    rng = np.random.default_rng(0)
    for label in range(10):
        (folder / str(label)).mkdir(parents=True)
        for i in range(8):
            pixels = (235 + rng.integers(0, 20, (48, 48))).astype(np.uint8)
            Image.fromarray(pixels).save(folder / str(label) / f"{i}.png")
    result = cli("verify", str(good_bundle), "--data", f"imagefolder:{folder}", "--threads", "1")
    assert result.exit_code == 2, result.output
    assert "does not match the model's preprocessing" in result.output
    assert "mean/std" in result.output and "size" in result.output

    three = tmp_path / "three"
    for label in ("cat", "dog", "eel"):
        (three / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(three / label / f"{i}.png")
    result = cli("verify", str(good_bundle), "--data", f"imagefolder:{three}", "--threads", "1")
    assert result.exit_code == 2 and "class count: the model predicts 10 classes, the data has 3" in result.output


def test_int8_calibrated_on_constant_images_fails_naming_the_check(parts, tmp_path, cli):
    bundle = make_bundle(parts, tmp_path / "bad", names=("onnx", "bad_int8"))
    junit, summary = tmp_path / "junit.xml", tmp_path / "summary.md"
    result, report = _cli_json(cli, tmp_path, str(bundle), "--junit", str(junit), "--summary", str(summary))
    assert result.exit_code == 1, result.output
    rows = {r["precision"]: r for r in report["artifacts"]}
    assert rows["fp32"]["passed"] is True
    bad = rows["int8"]
    assert bad["passed"] is False and "drop" in bad["failed_checks"] and "agreement" in bad["failed_checks"]
    assert bad["drop"] > 1.0 and bad["agreement"] < 0.97
    assert "onnx/model.int8.onnx: drop, agreement" in result.output  # the error line names them
    assert "FAIL" in result.stdout
    cases = _check_junit(junit, expected_tests=2, expected_failures=1)
    failure = cases["onnx/model.int8.onnx [onnxruntime int8]"].find("failure")
    assert "drop" in failure.get("message") and "agreement" in failure.get("message")
    _check_markdown_table(summary.read_text(), rows=2)
    assert "❌ fail: drop" in summary.read_text()

    # A looser int8 threshold set per precision does not rescue an agreement this low.
    result, report = _cli_json(cli, tmp_path, str(bundle), "--threshold", "int8.max_drop=100",
                               "--runtime", "onnx")
    assert result.exit_code == 1 and report["artifacts"][1]["failed_checks"] == ["agreement"]


def test_artifact_from_other_weights_fails_with_a_correct_hash(parts, tmp_path, cli):
    bundle = make_bundle(parts, tmp_path / "other", names=("other_onnx",))
    result, report = _cli_json(cli, tmp_path, str(bundle))
    assert result.exit_code == 1, result.output
    (row,) = report["artifacts"]
    assert row["failed_checks"] == ["agreement"] and row["agreement"] < 0.5
    assert "agreement" in result.output
    # The same bundle with the checks relaxed below what it reaches passes: the exit code follows them.
    result, _ = _cli_json(cli, tmp_path, str(bundle), "--min-agreement", "0")
    assert result.exit_code == 0, result.output


def test_random_weights_check_agreement_only(parts, tmp_path, cli):
    bundle = make_bundle(parts, tmp_path / "random", names=("bad_int8",), accuracy_meaningful=False)
    result, report = _cli_json(cli, tmp_path, str(bundle))
    assert result.exit_code == 1
    (row,) = report["artifacts"]
    assert report["accuracy_meaningful"] is False
    assert row["failed_checks"] == ["agreement"]
    assert [c["passed"] for c in row["checks"] if c["name"] == "drop"] == [None]
    assert "random weights" in result.output


def test_tampered_artifact_and_missing_golden_are_bad_input(parts, tmp_path, cli):
    bundle = make_bundle(parts, tmp_path / "tampered", names=("onnx",))
    artifact = bundle / "onnx" / "model.onnx"
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    result = cli("verify", str(bundle))
    assert result.exit_code == 2 and "does not match the manifest" in result.output

    no_golden = make_bundle(parts, tmp_path / "nogolden", names=("onnx",), golden=False)
    result = cli("verify", str(no_golden))
    assert result.exit_code == 2 and "no golden set" in result.output
    assert cli("verify", str(tmp_path / "missing")).exit_code == 2
    result = cli("verify", str(bundle), "--min-agreement", "95")
    assert result.exit_code == 2 and "fraction" in result.output


def test_an_output_path_that_cannot_be_written_exits_2_before_any_work(good_bundle, tmp_path, cli, monkeypatch):
    """--json/--junit/--summary under a regular FILE (unwritable even for root): exit 2 naming it, nothing run."""
    import edgecnn.verify

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    ran = []
    monkeypatch.setattr(edgecnn.verify, "verify", lambda *args, **kwargs: ran.append(args))
    for option in ("--json", "--junit", "--summary"):
        target = blocker / "no" / "such" / "dir" / "x.out"
        result = cli("verify", str(good_bundle), "--threads", str(THREADS), option, str(target))
        assert result.exit_code == 2, result.output
        assert f"{option} {target}" in result.output and "not a directory" in result.output
    assert ran == []


def test_changed_checkpoint_falls_back_to_the_golden_reference(parts, trained, tmp_path, cli):
    from edgecnn.checkpoint import save_checkpoint

    _, loaded = trained
    torch.manual_seed(7)
    changed = tmp_path / "changed.pt"
    save_checkpoint(changed, arch="lenet5", state_dict=loaded.spec.build(10).state_dict(),
                    preprocess=loaded.preprocess)
    bundle = make_bundle(parts, tmp_path / "b", names=("onnx",))
    result, report = _cli_json(cli, tmp_path, str(bundle), "--reference", str(changed))
    assert result.exit_code == 0, result.output
    assert report["reference_source"] == "golden" and "no longer reproduces" in " ".join(report["notes"])
    # On --data there are no golden logits to fall back to: refuse rather than compare to the wrong model.
    result = cli("verify", str(bundle), "--reference", str(changed), "--data", "digits", "--threads", "1")
    assert result.exit_code == 2 and "changed after export" in result.output


def test_single_artifact_with_a_checkpoint_or_a_golden_set(parts, good_bundle, tmp_path, cli):
    result, report = _cli_json(cli, tmp_path, str(parts["int8"]), "--reference", str(parts["checkpoint"]))
    assert result.exit_code == 0, result.output
    (row,) = report["artifacts"]
    assert row["precision"] == "int8" and row["thresholds"]["max_drop"] == 1.0  # from the file name
    assert report["reference_source"] == "pytorch-live" and report["samples_source"] == "data:digits"

    result, report = _cli_json(cli, tmp_path, str(parts["openvino"]), "--reference", str(good_bundle / "golden.npz"))
    assert result.exit_code == 0, result.output
    assert report["reference_source"] == "golden" and report["artifacts"][0]["runtime"] == "openvino"

    result, report = _cli_json(cli, tmp_path, str(parts["other_onnx"]), "--reference", str(good_bundle))
    assert result.exit_code == 1 and report["artifacts"][0]["failed_checks"] == ["agreement"]

    result = cli("verify", str(parts["onnx"]))
    assert result.exit_code == 2 and "--reference" in result.output


def test_verify_without_torch_passes_on_the_golden_set(good_bundle, tmp_path):
    report_path, junit = tmp_path / "r.json", tmp_path / "j.xml"
    code = (
        "import sys; import edgecnn.cli.verify; from edgecnn.cli import main; "
        "sys.argv = ['edgecnn'] + sys.argv[1:]\n"
        "try:\n    main()\nfinally:\n    print('TORCH_IMPORTED', 'torch' in sys.modules, file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "verify", str(good_bundle), "--threads", "1", "--json", str(report_path),
         "--junit", str(junit)],
        capture_output=True, text=True, env=blocking_env(tmp_path, "torch"), timeout=180, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "TORCH_IMPORTED False" in proc.stderr
    report = json.loads(report_path.read_text())
    assert report["reference_source"] == "golden" and report["passed"] is True
    assert len(report["artifacts"]) == 3
    assert "torch is not installed here" in " ".join(report["notes"])
    _check_junit(junit, expected_tests=3, expected_failures=0)


# ------------------------------------------------------------------------- JUnit and Markdown


def _check_junit(path: Path, *, expected_tests: int, expected_failures: int) -> dict[str, ET.Element]:
    """Parse with a JUnit parser when one is installed, and always check the structure CI tools read."""
    try:
        import junitparser
    except ImportError:
        junitparser = None
    if junitparser is not None:
        xml = junitparser.JUnitXml.fromfile(str(path))
        suites = list(xml) if isinstance(xml, junitparser.JUnitXml) else [xml]
        assert sum(s.tests for s in suites) == expected_tests
        assert sum(s.failures for s in suites) == expected_failures
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases) == expected_tests
    failed = [c for c in cases if c.find("failure") is not None]
    assert int(suite.get("failures")) == len(failed) == expected_failures == int(root.get("failures"))
    assert int(suite.get("errors")) == 0
    for case in cases:
        assert case.get("classname") and case.get("name")
        float(case.get("time"))
        for failure in case.findall("failure"):
            assert failure.get("message", "").startswith("failed checks: ")
    assert {p.get("name") for p in suite.find("properties")} >= {"reference_source", "samples"}
    return {c.get("name"): c for c in cases}


def _check_markdown_table(text: str, *, rows: int) -> None:
    """A real Markdown parser (markdown-it, which rich depends on) must find one table of `rows` rows."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    tables = [i for i, t in enumerate(tokens) if t.type == "table_open"]
    assert len(tables) == 1, "expected exactly one table"
    start = tables[0]
    end = next(i for i in range(start, len(tokens)) if tokens[i].type == "table_close")
    body = tokens[start:end]
    header_cells = sum(1 for t in body if t.type == "th_open")
    data_rows = sum(1 for t in body if t.type == "tr_open") - 1
    assert header_cells == 10 and data_rows == rows
    assert sum(1 for t in body if t.type == "td_open") == 10 * rows
    # And the plain-text shape: every table line has the header's number of unescaped pipes.
    lines = [line for line in text.splitlines() if line.startswith("|")]
    counts = {len([c for c in _split_row(line)]) for line in lines}
    assert counts == {10}, counts


def _split_row(line: str) -> list[str]:
    cells, current, escaped = [], "", False
    for char in line.strip()[1:-1]:
        if char == "|" and not escaped:
            cells.append(current)
            current = ""
        else:
            current += char
        escaped = char == "\\" and not escaped
    return cells + [current]


def test_markdown_escapes_pipes_in_names():
    from edgecnn.verify import ArtifactResult, Check, VerifyReport

    result = ArtifactResult(
        name="odd|name.onnx", path="x", format="onnx", runtime="onnxruntime", precision="fp32", samples=2,
        top1=50.0, reference_top1=50.0, drop=0.0, agreement=1.0, max_abs_diff=0.0, mean_abs_diff=0.0,
        cosine=1.0, min_cosine=1.0, reference_source="golden", thresholds=Thresholds(min_agreement=0.995),
        checks=[Check("agreement", 1.0, 0.995, ">=", True)], accuracy_meaningful=True,
    )
    report = VerifyReport(model="m|x", target=None, bundle=None, samples=2, samples_source="golden",
                          reference_source="golden", reference_top1=50.0, accuracy_meaningful=True,
                          checkpoint=None, artifacts=[result], notes=["a | note"])
    _check_markdown_table(markdown_summary(report), rows=1)


def test_tflite_runs_at_its_static_batch_and_unlabelled_golden_checks_agreement(tmp_path, cli):
    """A .tflite (static batch 1) next to an ONNX file, with a noise golden set whose labels mean nothing."""
    from edgecnn.bundle import file_sha256, write_golden
    from runtime_helpers import make_bundle as make_runtime_bundle
    from runtime_helpers import reference_logits, sample_batch

    pytest.importorskip("ai_edge_litert")
    bundle = make_runtime_bundle(tmp_path / "tiny", formats=("onnx", "tflite"))
    inputs = sample_batch(40, seed=3)
    write_golden(bundle / "golden.npz", inputs, np.full(40, -1), reference_logits(inputs))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["golden"] = {"path": "golden.npz", "sha256": file_sha256(bundle / "golden.npz"), "samples": 40,
                          "labels_meaningful": False}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    result, report = _cli_json(cli, tmp_path, str(bundle), "--batch", "16")
    assert result.exit_code == 0, result.output
    rows = {r["runtime"]: r for r in report["artifacts"]}
    assert rows["tflite"]["batch"] == 1 and rows["onnxruntime"]["batch"] == 16
    for row in rows.values():
        assert row["agreement"] == 1.0 and row["max_abs_diff"] < 1e-4 and row["samples"] == 40
        assert row["top1"] is None and row["drop"] is None and row["failed_checks"] == []
    assert report["reference_source"] == "golden" and report["reference_top1"] is None
    assert "no meaningful labels" in " ".join(report["notes"])


def test_an_artifact_that_does_not_run_fails_by_name_and_the_others_still_run(parts, trained, tmp_path, cli):
    """An ONNX file exported for 40x40 inputs in a bundle whose golden set is 32x32: `runs` fails."""
    from edgecnn.export.onnx import export_onnx

    _, loaded = trained
    wrong = export_onnx(loaded.model, (1, 40, 40), tmp_path / "model40.onnx").path
    bundle = make_bundle({**parts, "other_onnx": wrong}, tmp_path / "b", names=("openvino", "other_onnx"))
    result, report = _cli_json(cli, tmp_path, str(bundle), "--reference-source", "golden")
    assert result.exit_code == 1, result.output
    ov_row, onnx_row = report["artifacts"]
    assert ov_row["passed"] is True
    assert onnx_row["failed_checks"] == ["runs"] and onnx_row["agreement"] is None
    assert "does not match" in onnx_row["checks"][0]["reason"]
    assert "onnx/model.onnx: runs" in result.output
