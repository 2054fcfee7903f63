"""One Runner per runtime: load an artifact, run a batch, report what was really configured.

This package is import-light on purpose: the table below names each runner by module and class, and
a runner's module (with its SDK) is imported only when that runtime is asked for. `bench` and
`verify` on a device therefore never import torch, nor any SDK they do not use.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from edgecnn.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from edgecnn.runtimes.base import Runner

# runtime name -> "module:Class". Adding a runtime is one line here plus one module.
RUNNERS: dict[str, str] = {
    "onnxruntime": "edgecnn.runtimes.onnxruntime:OnnxRuntimeRunner",
    "openvino": "edgecnn.runtimes.openvino:OpenVinoRunner",
    "tflite": "edgecnn.runtimes.tflite:TFLiteRunner",
    "tensorrt": "edgecnn.runtimes.tensorrt:TensorRTRunner",
    "torch": "edgecnn.runtimes.torch_eager:TorchEagerRunner",
}

# Names people type for the same runtime (also the artifact formats of the manifest).
ALIASES: dict[str, str] = {
    "ort": "onnxruntime",
    "onnx": "onnxruntime",
    "ov": "openvino",
    "litert": "tflite",
    "tflite-runtime": "tflite",
    "trt": "tensorrt",
    "pytorch": "torch",
    "eager": "torch",
}

# File suffix -> runtime, for `bench FILE` without a bundle.
SUFFIXES: dict[str, str] = {
    ".onnx": "onnxruntime",
    ".xml": "openvino",
    ".tflite": "tflite",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
    ".pt": "torch",
    ".pth": "torch",
}


def runtime_names() -> list[str]:
    """The runtimes edgecnn can run, in table order."""
    return list(RUNNERS)


def resolve_runtime(name: str) -> str:
    """Canonical runtime name for a name or alias; BadInputError listing the valid ones."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in RUNNERS:
        raise BadInputError(
            f"unknown runtime {name!r}: choose one of {', '.join(runtime_names())}"
        )
    return key


def get_runner(runtime: str) -> "Runner":
    """A fresh, unloaded Runner for `runtime` (imports that runner's module, not its SDK yet)."""
    key = resolve_runtime(runtime)
    module_name, class_name = RUNNERS[key].split(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)()


def runtime_for_path(path: str | Path) -> str:
    """The runtime that runs an artifact file, from its suffix."""
    suffix = Path(path).suffix.lower()
    try:
        return SUFFIXES[suffix]
    except KeyError:
        known = ", ".join(sorted(SUFFIXES))
        raise BadInputError(
            f"cannot tell the runtime of {Path(path).name!r} from its suffix ({known}): "
            "pass --runtime"
        ) from None


__all__ = ["RUNNERS", "ALIASES", "SUFFIXES", "get_runner", "resolve_runtime", "runtime_for_path", "runtime_names"]
