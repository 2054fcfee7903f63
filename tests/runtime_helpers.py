"""Shared, cached inputs for the runner and bench tests: one tiny CNN as ONNX, OpenVINO IR, .tflite.

Not a test module (pytest collects only test_*.py); everything is built once per session (the
.tflite conversion dominates: ~10 s) in a temporary folder removed at exit.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_FORMATS = {  # format -> (runtime, source builder, files of the artifact)
    "onnx": ("onnxruntime", onnx_file, lambda p: [p]),
    "openvino": ("openvino", openvino_file, lambda p: [p, p.with_suffix(".bin")]),
    "tflite": ("tflite", tflite_file, lambda p: [p]),
}


def make_bundle(dest: Path, formats=("onnx", "openvino", "tflite"), target: str = "onnx",
                threads: int | None = None) -> Path:
    """A deploy bundle holding the tiny artifacts, with a hand-written manifest.json."""
    dest.mkdir(parents=True, exist_ok=True)
    artifacts = []
    for fmt in formats:
        runtime, build, files_of = _FORMATS[fmt]
        source = build()
        sub = dest / fmt
        sub.mkdir(exist_ok=True)
        copied = []
        for file in files_of(source):
            shutil.copy2(file, sub / file.name)
            copied.append(sub / file.name)
        main_file = copied[0]
        artifacts.append({
            "path": main_file.relative_to(dest).as_posix(),
            "format": fmt,
            "runtime": runtime,
            "precision": "fp32",
            "sha256": _sha256(main_file),
            "bytes": main_file.stat().st_size,
            "files": [
                {"path": f.relative_to(dest).as_posix(), "sha256": _sha256(f), "bytes": f.stat().st_size}
                for f in copied
            ],
            "input": {"shape": INPUT_SHAPE, "layout": "NCHW", "dtype": "float32", "batch": None},
        })
    manifest = {
        "format": "edgecnn.bundle",
        "format_version": 1,
        "model": {"name": "tiny", "num_classes": NUM_CLASSES},
        "target": target,
        "input": {"shape": INPUT_SHAPE, "layout": "NCHW", "dtype": "float32"},
        "preprocess": {"size": SIZE, "channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3,
                       "class_names": [str(i) for i in range(NUM_CLASSES)]},
        "artifacts": artifacts,
        "golden": None,
    }
    if threads is not None:
        manifest["device"] = {"threads": threads}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return dest


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
