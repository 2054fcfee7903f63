"""TensorRT target: Q/DQ rules and accuracy, fp16 graph, build_engine.sh per TensorRT version,
profiles, the host-side bundle, provenance refusal; engine build/bench/verify where TensorRT is.

Everything up to the engine runs here. The tests marked `tensorrt`/`gpu` need TensorRT and a CUDA
device and skip by capability elsewhere (TensorRT cannot be installed on the CI machines).
"""

from __future__ import annotations

import functools
import json
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
from onnx import numpy_helper  # noqa: E402
from torch import nn  # noqa: E402

from edgecnn.errors import BadInputError  # noqa: E402
from edgecnn.backends.tensorrt.bundle_parts import (  # noqa: E402
    BUILD_SCRIPT_NAME, prepare_tensorrt_bundle, write_build_script,
)
from edgecnn.backends.tensorrt.engine import adoptable_engine, build_engine, register_engines  # noqa: E402
from edgecnn.backends.tensorrt.plans import TIMING_CACHE, EnginePlan, plan_engines  # noqa: E402
from edgecnn.backends.tensorrt.provenance import parse_trt_version  # noqa: E402
from edgecnn.backends.tensorrt.qdq_check import check_tensorrt_qdq  # noqa: E402
from edgecnn.backends.tensorrt.quantize import quantize_qdq_int8  # noqa: E402
from edgecnn.profiles import load_profile  # noqa: E402
from export_helpers import accuracy, digits  # noqa: E402

INPUT_SPEC = {"shape": [3, 32, 32], "layout": "NCHW", "dtype": "float32", "batch": "dynamic"}
BASH = shutil.which("bash")


# --- a small real model: conv + BN + residual add, trained a few seconds on digits -------------------


class TinyResNet(nn.Module):
    """Stem, one residual block (the add TensorRT fuses), a strided conv, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.block = nn.Sequential(
            nn.Conv2d(16, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
        )
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        return self.head(self.down(x))


@functools.lru_cache(maxsize=1)
def trained_resnet() -> nn.Module:
    torch.manual_seed(0)
    model = TinyResNet()
    train_x, train_y, _, _ = digits()
    x, y = torch.from_numpy(train_x), torch.from_numpy(train_y)
    epochs, batch = 5, 64
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-2,
                                                   total_steps=epochs * ((len(x) + batch - 1) // batch))
    generator = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: one thread is the fast choice
    try:
        model.train()
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=generator).split(batch):
                optimiser.zero_grad()
                nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                optimiser.step()
                schedule.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A complete host-side TensorRT bundle for `jetson`: fp32 ONNX, fp16 graph, Q/DQ int8, golden set."""
    from edgecnn.bundle import BundleWriter, artifact_entry, file_sha256, write_golden
    from edgecnn.inference import artifact_logits as onnx_logits
    from edgecnn.export.onnx import export_onnx

    train_x, _, test_x, test_y = digits()
    profile = load_profile("jetson")
    out = tmp_path_factory.mktemp("trt") / "resnet-jetson"
    with BundleWriter(out) as writer:
        fp32 = writer.path("onnx/model.fp32.onnx")
        export_onnx(trained_resnet(), (3, 32, 32), fp32, opset=profile.opset)
        calibration = train_x[np.random.default_rng(0).choice(len(train_x), 256, replace=False)]
        parts = prepare_tensorrt_bundle(writer.root, fp32, profile, input_spec=INPUT_SPEC,
                                        model_name="tiny-resnet", calibration_batches=calibration)
        golden = writer.path("golden.npz")
        write_golden(golden, test_x[:64], test_y[:64], onnx_logits(fp32, test_x[:64], threads=1))
        entries = [artifact_entry(writer.root, [fp32], format="onnx", runtime="onnxruntime", precision="fp32",
                                  input=INPUT_SPEC), *parts.artifacts]
        root = writer.commit({
            "target": profile.name, "profile": profile.to_dict(), "model": {"name": "tiny-resnet"},
            "input": INPUT_SPEC, "artifacts": [e.to_dict() for e in entries],
            "golden": {"path": "golden.npz", "sha256": file_sha256(golden)},
            "tensorrt": parts.manifest_section,
        })
    return {"root": root, "parts": parts, "fp32": root / "onnx/model.fp32.onnx",
            "qdq": root / "onnx/model.int8.qdq.onnx", "fp16": root / "onnx/model.fp16.onnx",
            "test_x": test_x, "test_y": test_y}


def _graph(path):
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    return model, inits, producers


# --- Q/DQ rules --------------------------------------------------------------------------------------


def test_qdq_model_follows_tensorrt_rules(bundle):
    quant = bundle["parts"].quantization
    assert quant.backend == "onnxruntime" and quant.problems == []
    assert check_tensorrt_qdq(bundle["qdq"]) == []
    model, inits, producers = _graph(bundle["qdq"])
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq, "no Q/DQ nodes"
    for node in qdq:  # symmetric int8 everywhere
        zero = inits[node.input[2]]
        assert zero.dtype == np.int8 and not zero.any(), node.name
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 4
    for conv in convs:
        data_dq, weight_dq = producers[conv.input[0]], producers[conv.input[1]]
        assert data_dq.op_type == weight_dq.op_type == "DequantizeLinear"
        assert inits[data_dq.input[1]].size == 1  # per-tensor activations
        weight, scale = inits[weight_dq.input[0]], inits[weight_dq.input[1]]
        assert weight.dtype == np.int8
        axis = next((a.i for a in weight_dq.attribute if a.name == "axis"), 1)
        assert axis == 0 and scale.shape == (weight.shape[0],)  # per output channel
        assert len(conv.input) == 3 and conv.input[2] in inits and inits[conv.input[2]].dtype == np.float32
    # conv -> activation with nothing between them (TensorRT fuses conv+bias+act)
    for node in model.graph.node:
        if node.op_type in ("Relu", "Clip") and node.input[0] in producers:
            assert producers[node.input[0]].op_type in ("Conv", "Add"), node.name
    # residual add: the identity branch arrives quantized, the conv branch in float (fused into the conv)
    (add,) = [n for n in model.graph.node if n.op_type == "Add"]
    kinds = sorted(producers[i].op_type for i in add.input)
    assert kinds == ["Conv", "DequantizeLinear"]
    # the logits leave in float
    assert producers["logits"].op_type == "Gemm"
    assert quant.qdq_pairs_removed >= 4


def test_qdq_checker_finds_each_broken_rule(bundle, tmp_path):
    model, _, producers = _graph(bundle["qdq"])
    inits = {i.name: i for i in model.graph.initializer}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    weight_dq = producers[conv.input[1]]
    data_dq = producers[conv.input[0]]
    # a nonzero zero point, a per-tensor weight scale, a per-channel activation scale
    zero = inits[data_dq.input[2]]
    zero.CopyFrom(numpy_helper.from_array(np.array(3, dtype=np.int8), zero.name))
    scale = inits[weight_dq.input[1]]
    scale.CopyFrom(numpy_helper.from_array(np.array(0.01, dtype=np.float32), scale.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    problems = " | ".join(check_tensorrt_qdq(broken))
    assert "zero point is not 0" in problems
    assert "per-tensor; TensorRT wants one per output channel" in problems
    # the fp32 model is no Q/DQ model at all: every conv runs in float
    problems = check_tensorrt_qdq(bundle["fp32"])
    assert any("no QuantizeLinear" in p for p in problems)
    assert sum("not fed by DequantizeLinear" in p for p in problems) >= 4


def test_ort_symmetric_qdq_is_fixed_for_tensorrt(bundle, tmp_path):
    """ONNX Runtime's raw symmetric output quantizes conv outputs and logits; the placement pass fixes both."""
    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8

    train_x = digits()[0][:32]
    raw = quantize_onnx_int8(bundle["fp32"], tmp_path / "raw.onnx", train_x, symmetric=True).path
    problems = check_tensorrt_qdq(raw)
    assert any("stops TensorRT fusing" in p for p in problems)
    assert any("comes out of DequantizeLinear" in p for p in problems)


def test_qdq_model_keeps_accuracy_in_onnxruntime(bundle):
    from edgecnn.inference import artifact_logits as onnx_logits

    x, y = bundle["test_x"], bundle["test_y"]
    fp32 = accuracy(onnx_logits(bundle["fp32"], x, threads=1), y)
    int8 = accuracy(onnx_logits(bundle["qdq"], x, threads=1), y)
    print(f"digits top-1: fp32 {fp32:.4f}, TensorRT Q/DQ int8 (ORT) {int8:.4f}")
    assert fp32 > 0.85, "the model did not train"
    assert fp32 - int8 <= 0.01


def test_fp16_graph_keeps_float32_io_and_agrees(bundle):
    from edgecnn.inference import artifact_logits as onnx_logits

    model = onnx.load(str(bundle["fp16"]))
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [onnx.TensorProto.FLOAT]
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [onnx.TensorProto.FLOAT]
    weights = [i for i in model.graph.initializer if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    assert weights and all(i.data_type == onnx.TensorProto.FLOAT16 for i in weights)
    x = bundle["test_x"][:128]
    reference, half = onnx_logits(bundle["fp32"], x, threads=1), onnx_logits(bundle["fp16"], x, threads=1)
    assert np.mean(reference.argmax(1) == half.argmax(1)) >= 0.99
    assert np.abs(reference - half).max() < 0.05 * np.abs(reference).max()


def test_quantize_refuses_bad_arguments(bundle, tmp_path):
    x = digits()[0][:8]
    with pytest.raises(BadInputError, match="calibration method"):
        quantize_qdq_int8(bundle["fp32"], tmp_path / "q.onnx", x, method="mse")
    with pytest.raises(BadInputError, match="not found"):
        quantize_qdq_int8(tmp_path / "missing.onnx", tmp_path / "q.onnx", x)


# --- the host-side bundle ------------------------------------------------------------------------------


def test_bundle_has_plans_script_and_readme(bundle):
    root, parts = bundle["root"], bundle["parts"]
    manifest = json.loads((root / "manifest.json").read_text())
    plans = {p["precision"]: p for p in manifest["tensorrt"]["engines"]}
    assert set(plans) == {"int8", "fp16"}  # jetson defaults to int8, with fp16 as its reference
    assert plans["int8"]["source"] == "onnx/model.int8.qdq.onnx"
    assert plans["fp16"]["source"] == "onnx/model.fp32.onnx"
    assert plans["fp16"]["source_fp16"] == "onnx/model.fp16.onnx"
    assert plans["int8"]["input_shape"] == [3, 32, 32]
    assert manifest["tensorrt"]["batch"] == {"min": 1, "opt": 1, "max": 8}
    formats = {(a["format"], a["precision"]) for a in manifest["artifacts"]}
    assert formats == {("onnx", "fp32"), ("onnx", "fp16"), ("onnx", "int8")}
    script = root / BUILD_SCRIPT_NAME
    assert script.stat().st_mode & stat.S_IXUSR
    readme = (root / "README.md").read_text()
    assert "scp -r resnet-jetson " in readme  # the final folder name, not the writer's temporary one
    for command in ("bash build_engine.sh", "edgecnn build .", "edgecnn bench .", "edgecnn verify ."):
        assert command in readme
    assert "built on the device" in parts.messages[0]
    from edgecnn.bundle import load_bundle

    load_bundle(root).check_integrity()  # every listed file is there with its hash


def test_nano_bundle_plans_fp16_only_and_refuses_int8(bundle):
    from edgecnn.bundle import load_bundle

    nano = load_profile("jetson-nano")
    artifacts = load_bundle(bundle["root"]).artifacts
    plans = plan_engines(artifacts, nano)
    assert [p.precision for p in plans] == ["fp16"]
    with pytest.raises(BadInputError, match="Maxwell"):
        plan_engines(artifacts, nano, precisions=["int8"])


# --- build_engine.sh, per TensorRT version -------------------------------------------------------------


def _run_script(root: Path, version: str | None, *args: str, env: dict | None = None, dry: bool = True):
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(root), **(env or {})}
    if version:
        environment["EDGECNN_TRT_VERSION"] = version
    if dry:
        environment["DRY_RUN"] = "1"
    return subprocess.run([BASH, str(root / "build_engine.sh"), *args], capture_output=True, text=True,
                          env=environment, timeout=60)


def _commands(output: str) -> dict[str, list[str]]:
    """engine name -> the trtexec arguments the script printed for it."""
    commands = {}
    for line in output.splitlines():
        if "--saveEngine=" in line:
            words = line.split()
            engine = next(w for w in words if w.startswith("--saveEngine=")).split("=", 1)[1]
            commands[Path(engine).name.removesuffix(".tmp")] = words
    return commands


needs_bash = pytest.mark.skipif(BASH is None, reason="bash not found")

COMMON = ["--minShapes=input:1x3x32x32", "--optShapes=input:1x3x32x32", "--maxShapes=input:8x3x32x32",
          "--timingCacheFile=tensorrt/timing.cache"]


@needs_bash
@pytest.mark.parametrize(
    "version, workspace, build_only, precision_flags",
    [
        ("8.2.1", "--workspace=1024", "--buildOnly", {"int8": "--int8", "fp16": "--fp16"}),
        ("8.5.2", "--memPoolSize=workspace:1024", "--buildOnly", {"int8": "--int8", "fp16": "--fp16"}),
        ("8.6.1", "--memPoolSize=workspace:1024", "--skipInference", {"int8": "--int8", "fp16": "--fp16"}),
        ("10.3.0", "--memPoolSize=workspace:1024M", "--skipInference", {"int8": "--int8", "fp16": "--fp16"}),
        ("11.1.0", "--memPoolSize=workspace:1024M", "--skipInference",
         {"int8": "--stronglyTyped", "fp16": "--stronglyTyped"}),
    ],
)
def test_build_script_flags_per_tensorrt_version(bundle, version, workspace, build_only, precision_flags):
    result = _run_script(bundle["root"], version)
    assert result.returncode == 0, result.stderr
    assert f"TensorRT {version}" in result.stdout
    commands = _commands(result.stdout)
    assert set(commands) == {"model.int8.engine", "model.fp16.engine"}
    for engine, words in commands.items():
        precision = engine.split(".")[1]
        for flag in [*COMMON, workspace, build_only, precision_flags[precision]]:
            assert flag in words, (engine, flag, words)
        others = {"--fp16", "--int8", "--stronglyTyped"} - {precision_flags[precision]}
        assert not others & set(words), (engine, words)
        assert not any(w.startswith("--useDLACore") for w in words)
    source = {"int8": "onnx/model.int8.qdq.onnx",
              "fp16": "onnx/model.fp16.onnx" if version.startswith("11") else "onnx/model.fp32.onnx"}
    for engine, words in commands.items():
        assert f"--onnx={source[engine.split('.')[1]]}" in words


@needs_bash
def test_build_script_dla_and_precision_filter(bundle, tmp_path):
    root = tmp_path / "agx"
    shutil.copytree(bundle["root"], root)
    from edgecnn.bundle import load_bundle

    agx = load_profile("jetson-agx-orin")
    plans = plan_engines(load_bundle(root).artifacts, agx, precisions=["int8", "fp32"])
    write_build_script(root, plans, agx)
    result = _run_script(root, "10.3.0", "--dla-core", "1")
    assert result.returncode == 0, result.stderr
    commands = _commands(result.stdout)
    assert {"--useDLACore=1", "--allowGPUFallback", "--optShapes=input:8x3x32x32"} <= set(commands["model.int8.engine"])
    assert not any(w.startswith("--useDLACore") for w in commands["model.fp32.engine"])  # DLA has no fp32
    assert "DLA runs fp16/int8 only" in result.stderr
    only = _commands(_run_script(root, "10.3.0", "--precision", "fp32").stdout)
    assert set(only) == {"model.fp32.engine"}
    bad = _run_script(root, "10.3.0", "--dla-core", "2")
    assert bad.returncode == 2 and "DLA cores 0..1" in bad.stderr
    # the Orin Nano has no DLA at all
    no_dla = _run_script(bundle["root"], "10.3.0", "--dla-core", "0")
    assert no_dla.returncode == 2 and "has no DLA" in no_dla.stderr


@needs_bash
def test_build_script_refuses_fp16_on_tensorrt_11_without_fp16_graph(bundle, tmp_path):
    root = tmp_path / "old"
    shutil.copytree(bundle["root"], root)
    plan = EnginePlan("fp16", "onnx/model.fp32.onnx", "tensorrt/model.fp16.engine",
                      input_shape=(3, 32, 32))
    write_build_script(root, [plan], load_profile("jetson"))
    result = _run_script(root, "11.0.0")
    assert result.returncode == 2 and "no fp16 ONNX" in result.stderr
    assert _run_script(root, "10.3.0").returncode == 0  # 10.x still has the builder flag


def _built_with_trtexec(bundle, tmp_path) -> Path:
    """A copy of the bundle whose int8 engine a stand-in trtexec (banner + --saveEngine) built."""
    root = tmp_path / "device"
    shutil.copytree(bundle["root"], root)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    trtexec = fake_bin / "trtexec"
    trtexec.write_text(
        "#!/bin/bash\n"
        "echo '&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec' \"$@\"\n"
        "for a in \"$@\"; do case \"$a\" in --saveEngine=*) printf 'engine %s' \"$*\" > \"${a#*=}\" ;; esac; done\n"
    )
    trtexec.chmod(0o755)
    result = _run_script(root, None, "--precision", "int8", env={"TRTEXEC": str(trtexec)}, dry=False)
    assert result.returncode == 0, result.stderr
    assert "TensorRT 10.3.0" in result.stdout  # read from the trtexec banner
    return root


@needs_bash
def test_build_script_detects_version_and_builds_with_trtexec(bundle, tmp_path):
    """Detection from the trtexec banner, the real (not dry) build path, and the provenance sidecar."""
    root = _built_with_trtexec(bundle, tmp_path)
    trtexec = tmp_path / "bin" / "trtexec"
    engine = root / "tensorrt/model.int8.engine"
    assert "--int8" in engine.read_text() and not (root / "tensorrt/model.fp16.engine").exists()
    provenance = json.loads((root / "tensorrt/model.int8.engine.json").read_text())
    from edgecnn.bundle import file_sha256

    assert provenance["tensorrt"] == "10.3.0" and provenance["precision"] == "int8"
    assert provenance["source_sha256"] == file_sha256(root / "onnx/model.int8.qdq.onnx")
    # An engine built here from the same ONNX is adopted, one built by another TensorRT is not.
    sources = [root / "onnx/model.int8.qdq.onnx"]
    assert adoptable_engine(engine, sources, {"tensorrt": "10.3.0.30"}) is not None
    assert adoptable_engine(engine, sources, {"tensorrt": "8.6.1"}) is None
    again = _run_script(root, None, "--precision", "int8", env={"TRTEXEC": str(trtexec)}, dry=False)
    assert "exists: keeping it" in again.stdout


@needs_bash
def test_edgecnn_build_registers_a_trtexec_engine(bundle, tmp_path, cli, monkeypatch):
    """`edgecnn build` adopts the engine build_engine.sh made here and records it with its hashes.

    Only TensorRT's version string is needed to adopt (nothing is built or run), so a module that
    carries just `__version__` stands in for the Python package TensorRT installs.
    """
    import sys
    import types

    import edgecnn.cli.build  # noqa: F401
    from edgecnn.bundle import load_bundle

    root = _built_with_trtexec(bundle, tmp_path)
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0.30"))
    result = cli("build", str(root), "--precision", "int8", "--json", str(tmp_path / "build.json"))
    assert result.exit_code == 0, result.output
    loaded = load_bundle(root)
    (engine,) = [a for a in loaded.artifacts if a.format == "tensorrt"]
    assert engine.path == "tensorrt/model.int8.engine" and engine.runtime == "tensorrt"
    assert engine.precision == "int8" and engine.extra["provenance"]["tensorrt"] == "10.3.0"
    assert {f["path"] for f in engine.files} == {engine.path, engine.path + ".json"}
    loaded.check_integrity()
    report = json.loads((tmp_path / "build.json").read_text())
    assert report["engines"][0]["adopted"] is True
    (root / engine.path).write_bytes(b"tampered")
    with pytest.raises(BadInputError, match="does not match the manifest"):
        load_bundle(root).check_integrity(engine)


def test_trtexec_banner_and_package_versions_parse():
    assert parse_trt_version("v8502") == (8, 5, 2)
    assert parse_trt_version("v100300") == (10, 3, 0)
    assert parse_trt_version("10.3.0.30-1+cuda12.5") == (10, 3, 0)
    assert parse_trt_version("11.1") == (11, 1, 0)


# --- profiles ---------------------------------------------------------------------------------------


def test_tensorrt_profiles():
    from edgecnn.profiles import list_profiles

    jetson = load_profile("jetson")
    assert jetson.alias_of == "jetson-orin-nano" and jetson.runtime == "tensorrt"
    assert jetson.settings == load_profile("jetson-orin-nano").settings
    trt = [p for p in list_profiles() if p.runtime == "tensorrt"]
    assert {p.name for p in trt} >= {"jetson", "jetson-orin-nano", "jetson-orin-nx", "jetson-agx-orin",
                                     "jetson-nano", "cuda"}
    for profile in trt:
        batch = profile.settings["batch"]
        assert 1 <= batch["min"] <= batch["opt"] <= batch["max"] <= profile.max_batch, profile.name
        assert profile.settings["tensorrt"] and profile.settings["workspace_mb"] > 0
    assert load_profile("jetson-agx-orin").settings["dla"] is True
    assert load_profile("jetson-orin-nano").settings["dla"] is False
    nano = load_profile("jetson-nano")
    assert nano.default_precision == "fp16" and "int8" not in nano.precisions
    with pytest.raises(BadInputError, match="does not support int8.*Maxwell"):
        nano.check_precision("int8")


# --- provenance refusal (runner side, no TensorRT needed) ----------------------------------------------


def test_engine_from_another_tensorrt_or_gpu_is_refused(tmp_path):
    from edgecnn.backends.tensorrt.provenance import check_engine_provenance, provenance_mismatches, read_l4t

    (tmp_path / "manifest.json").write_text("{}")
    engine = tmp_path / "tensorrt" / "model.fp16.engine"
    engine.parent.mkdir()
    engine.write_bytes(b"plan")
    (engine.parent / "model.fp16.engine.json").write_text(json.dumps(
        {"tensorrt": "8.6.1", "gpu": "Orin", "compute_capability": "8.7"}))
    here = {"tensorrt": "8.6.1.6", "gpu": "Orin", "compute_capability": "8.7"}
    assert check_engine_provenance(engine, here)["gpu"] == "Orin"
    with pytest.raises(BadInputError, match=f"rebuild on this device: edgecnn build {tmp_path}"):
        check_engine_provenance(engine, {**here, "tensorrt": "10.3.0"})
    assert provenance_mismatches({"gpu": "Orin"}, {"gpu": "NVIDIA GeForce RTX 4090"})
    assert provenance_mismatches({"tensorrt": "10.3.0"}, {"gpu": "Orin"}) == []  # unknown fields: no verdict
    assert read_l4t("# R35 (release), REVISION: 5.0, GCID: 1, BOARD: t186ref") == {"l4t": "35.5.0", "jetpack": "5.1.3"}


# --- edgecnn build ------------------------------------------------------------------------------------


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def _cuda_devices() -> int:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            return 0
    err, count = cudart.cudaGetDeviceCount()
    return int(count or 0) if int(err) == 0 else 0


@pytest.mark.skipif(_has_tensorrt(), reason="TensorRT is installed: the missing-TensorRT message cannot show")
def test_build_without_tensorrt_exits_2_with_the_fix(bundle, cli):
    import edgecnn.cli.build  # noqa: F401  (registers the command)

    result = cli("build", str(bundle["root"]))
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "TensorRT is not installed" in lines[0]
    assert "JetPack" in lines[0] and "edgecnn[tensorrt]" in lines[0] and "build_engine.sh" in lines[0]


def test_build_refuses_int8_on_a_nano_bundle(bundle, cli, tmp_path):
    import edgecnn.cli.build  # noqa: F401

    root = tmp_path / "nano"
    shutil.copytree(bundle["root"], root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["target"], manifest["profile"] = "jetson-nano", load_profile("jetson-nano").to_dict()
    (root / "manifest.json").write_text(json.dumps(manifest))
    result = cli("build", str(root), "--precision", "int8")
    assert result.exit_code == 2 and "Maxwell" in result.output


# --- gated: a real engine where TensorRT and a GPU exist ------------------------------------------------

def gpu_tensorrt(test):
    """Marks a test `tensorrt` + `gpu` and skips it where either is missing."""
    for mark in (pytest.mark.tensorrt, pytest.mark.gpu,
                 pytest.mark.skipif(not _has_tensorrt(), reason="TensorRT is not installed"),
                 pytest.mark.skipif(_cuda_devices() == 0, reason="no CUDA device")):
        test = mark(test)
    return test


@pytest.mark.parametrize("precision", ["fp16", "int8"])
@gpu_tensorrt
def test_engine_builds_runs_and_matches_golden(bundle, tmp_path, precision):
    from edgecnn.bundle import load_bundle
    from edgecnn.backends.tensorrt.runner import TensorRTRunner

    root = tmp_path / "bundle"
    shutil.copytree(bundle["root"], root)
    plan = next(p for p in plan_engines(load_bundle(root).artifacts, load_profile("cuda"),
                                        precisions=[precision]))
    result = build_engine(root / plan.source, root / plan.engine, load_profile("cuda"), precision,
                          timing_cache=root / TIMING_CACHE,
                          onnx_fp16_path=root / "onnx/model.fp16.onnx")
    assert result.path.is_file() and result.sidecar.is_file() and (root / TIMING_CACHE).is_file()
    register_engines(root, [result])
    loaded = load_bundle(root)
    entry = next(a for a in loaded.artifacts if a.format == "tensorrt")
    loaded.check_integrity(entry)
    golden = loaded.load_golden()
    with TensorRTRunner().load(root / entry.path, batch=8, input_shape=[3, 32, 32]) as runner:
        logits = runner.run(golden["inputs"])
        import time

        started = time.perf_counter_ns()
        for _ in range(20):
            runner.invoke()
        per_batch_ms = (time.perf_counter_ns() - started) / 20 / 1e6
    print(f"TensorRT {precision}: {per_batch_ms:.3f} ms per batch of 8 ({runner.applied})")
    reference = accuracy(golden["logits"], golden["labels"])
    assert reference - accuracy(logits, golden["labels"]) <= 0.02
    assert np.mean(logits.argmax(1) == golden["logits"].argmax(1)) >= 0.95


@gpu_tensorrt
def test_edgecnn_build_registers_engines_then_adopts(bundle, cli, tmp_path):
    import edgecnn.cli.build  # noqa: F401
    from edgecnn.bundle import load_bundle

    root = tmp_path / "bundle"
    shutil.copytree(bundle["root"], root)
    first = cli("build", str(root), "--json", str(tmp_path / "build.json"))
    assert first.exit_code == 0, first.output
    engines = [a for a in load_bundle(root).artifacts if a.format == "tensorrt"]
    assert {a.precision for a in engines} == {"int8", "fp16"}
    assert all(a.extra["provenance"]["tensorrt"] for a in engines)
    second = cli("build", str(root))
    assert second.exit_code == 0 and "kept" in second.output


def test_an_int8_search_that_keeps_no_qdq_graph_leaves_the_other_engines(cli, lenet_checkpoint, tmp_path, monkeypatch):
    """Where the int8 choice misses the gate on the whole golden set (status `missed`), nothing int8 is kept:
    the bundle plans the fp16 engine beside it, not an int8 engine without a source (that failed the export)."""
    import json
    from types import SimpleNamespace

    from edgecnn.pipeline import int8 as pipeline_int8

    record = {"status": "missed", "note": "the choice misses the gate on the whole golden set"}
    monkeypatch.setattr(pipeline_int8, "_search", lambda ctx, method, job: (
        SimpleNamespace(artifact=None, recipe={}, entry={}), record))
    out = tmp_path / "jetson"
    result = cli("export", str(lenet_checkpoint), "--target", "jetson", "--precision", "int8", "--out", str(out))
    assert result.exit_code == 0, result.stderr + result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert not [a for a in manifest["artifacts"] if a["precision"] == "int8"]
    assert manifest["int8_search"]["tensorrt"]["status"] == "missed"
    assert [e["precision"] for e in manifest["tensorrt"]["engines"]] == ["fp16"]
    assert "no int8 engine planned" in result.stdout
