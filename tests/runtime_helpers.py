"""Shared, cached inputs for the runner and bench tests: one tiny CNN as ONNX, OpenVINO IR, .tflite.

Not a test module (pytest collects only test_*.py); everything is built once per session (the
.tflite conversion dominates: ~10 s) in a temporary folder removed at exit.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

SIZE = 32
INPUT_SHAPE = [3, SIZE, SIZE]
NUM_CLASSES = 10
REPO = Path(__file__).resolve().parent.parent


def _export_onnx(path: Path, batch: int, dynamic: bool) -> Path:
    import torch

    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but still the one we want
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            tiny_model(), (torch.zeros(batch, *INPUT_SHAPE),), str(path), dynamo=False, opset_version=17,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None,
        )
    return path


def _tiny_net():
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, NUM_CLASSES),
    )
    # Non-trivial BN statistics, so folding them is exercised.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@functools.lru_cache(maxsize=1)
def tiny_model():
    """The reference nn.Module (eval mode)."""
    return _tiny_net()


@functools.lru_cache(maxsize=1)
def workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="edgecnn-runtime-tests-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.lru_cache(maxsize=1)
def onnx_file() -> Path:
    """fp32 ONNX with a dynamic batch axis."""
    return _export_onnx(workdir() / "tiny.onnx", 1, dynamic=True)


@functools.lru_cache(maxsize=1)
def static_onnx_file() -> Path:
    """fp32 ONNX exported for batch 2 only (no dynamic axis)."""
    return _export_onnx(workdir() / "tiny_static_b2.onnx", 2, dynamic=False)


@functools.lru_cache(maxsize=1)
def openvino_file() -> Path:
    """fp32 OpenVINO IR (.xml + .bin) converted from the ONNX file."""
    import openvino as ov

    path = workdir() / "tiny.xml"
    ov.save_model(ov.convert_model(str(onnx_file())), str(path), compress_to_fp16=False)
    return path


@functools.lru_cache(maxsize=1)
def tflite_file() -> Path:
    """fp32 .tflite converted with litert-torch (NCHW input)."""
    import litert_torch
    import torch

    path = workdir() / "tiny.tflite"
    litert_torch.convert(tiny_model(), (torch.zeros(1, *INPUT_SHAPE),)).export(str(path))
    return path


def reference_logits(batch: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return tiny_model()(torch.from_numpy(batch)).numpy()


def sample_batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *INPUT_SHAPE), dtype=np.float32)


_FORMATS = {  # format -> (runtime, source builder, files of the artifact)
    "onnx": ("onnxruntime", onnx_file, lambda p: [p]),
    "openvino": ("openvino", openvino_file, lambda p: [p, p.with_suffix(".bin")]),
    "tflite": ("tflite", tflite_file, lambda p: [p]),
}


def make_bundle(dest: Path, formats=("onnx", "openvino", "tflite"), *, target: str = "onnx",
                threads: int | None = None, artifacts: list[tuple[str, str, list[Path]]] | None = None,
                input_shape=INPUT_SHAPE, model_name: str = "tiny", num_classes: int = NUM_CLASSES,
                checkpoint: Path | None = None) -> Path:
    """A deploy bundle written the way `edgecnn export` writes one (BundleWriter + artifact_entry).

    `formats` picks among the tiny model's artifacts; `artifacts` ([(format, precision, files)])
    puts other files in instead. `threads` overrides the device profile's; `checkpoint` is recorded
    as the manifest's model.checkpoint (what `--baseline torch` runs).
    """
    from edgecnn.bundle import BundleWriter, artifact_entry
    from edgecnn.backends import backends
    from edgecnn.profiles import load_profile

    runtime_of_format = {b.format: b.name for b in backends(deploy_only=True)}
    if artifacts is None:
        artifacts = [(fmt, "fp32", _FORMATS[fmt][2](_FORMATS[fmt][1]())) for fmt in formats]
    input_spec = {"shape": list(input_shape), "layout": "NCHW", "dtype": "float32", "batch": None}
    profile = load_profile(target).to_dict()
    if threads is not None:
        profile["threads"] = threads
    with BundleWriter(dest) as writer:
        entries = []
        for fmt, precision, files in artifacts:
            copied = []
            for file in files:
                copied.append(writer.path(f"{fmt}/{Path(file).name}"))
                shutil.copy2(file, copied[-1])
            entries.append(artifact_entry(writer.root, copied, format=fmt, runtime=runtime_of_format[fmt],
                                          precision=precision, input=input_spec).to_dict())
        channels = int(input_shape[0])
        return writer.commit({
            "model": {"name": model_name, "num_classes": num_classes,
                      "checkpoint": str(checkpoint) if checkpoint else None},
            "target": target,
            "profile": profile,
            "input": {**input_spec, "batch": 1},
            "preprocess": {"size": int(input_shape[1]), "channels": channels, "mean": [0.5] * channels,
                           "std": [0.5] * channels, "class_names": [str(i) for i in range(num_classes)]},
            "artifacts": entries,
            "golden": None,
        })


@functools.lru_cache(maxsize=1)
def lenet_checkpoint_and_onnx() -> tuple[Path, Path]:
    """An edgecnn checkpoint of LeNet-5 (1x32x32, 10 classes) and its ONNX export (dynamic batch)."""
    import torch

    from edgecnn.checkpoint import save_checkpoint
    from edgecnn.preprocess import PreprocessSpec
    from edgecnn.zoo import build_model

    torch.manual_seed(0)
    model = build_model("lenet5", num_classes=10).eval()
    preprocess = PreprocessSpec(size=32, channels=1, mean=(0.5,), std=(0.5,),
                                class_names=tuple(str(i) for i in range(10)))
    checkpoint = save_checkpoint(workdir() / "lenet5.pt", arch="lenet5", state_dict=model.state_dict(),
                                 preprocess=preprocess)
    onnx_path = workdir() / "lenet5.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.zeros(1, 1, 32, 32),), str(onnx_path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return Path(checkpoint), onnx_path


# A sitecustomize that makes the modules named in EDGECNN_TEST_BLOCK unimportable, in this
# process and in every child (bench runs each artifact in its own process).
_BLOCKER = '''
import os, sys

class _Blocker:
    blocked = {m for m in os.environ.get("EDGECNN_TEST_BLOCK", "").split(",") if m}

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.blocked:
            raise ImportError(f"{name} is blocked for this test")
        return None

sys.meta_path.insert(0, _Blocker())
'''


def blocking_env(tmp_path: Path, *modules: str) -> dict[str, str]:
    """Environment for a subprocess in which importing `modules` fails."""
    import os

    site = tmp_path / "blocker_site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_BLOCKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["EDGECNN_TEST_BLOCK"] = ",".join(modules)
    env.pop("EDGECNN_DEBUG", None)
    return env


# The CLI entry, with the bench command imported explicitly (harmless once edgecnn.cli does it).
_CLI = (
    "import sys; import edgecnn.cli.bench; from edgecnn.cli import main; "
    "sys.argv = ['edgecnn'] + sys.argv[1:]; main()"
)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _CLI, *args], capture_output=True, text=True, env=env, timeout=timeout,
        cwd=REPO,
    )


def verify_and_bench_without_torch(bundle: Path, tmp_path: Path, *bench_args: str) -> list[dict]:
    """`edgecnn verify BUNDLE` and `edgecnn bench BUNDLE` where `import torch` fails; both must pass.

    Returns bench's JSON rows, for callers that check them further.
    """
    import json

    env = blocking_env(tmp_path, "torch")
    verified = run_cli("verify", str(bundle), env=env)
    assert verified.returncode == 0, verified.stderr
    report = tmp_path / f"bench-{bundle.name}.json"
    benched = run_cli("bench", str(bundle), *bench_args, "--json", str(report), env=env)
    assert benched.returncode == 0, benched.stderr
    return json.loads(report.read_text())["artifacts"]
