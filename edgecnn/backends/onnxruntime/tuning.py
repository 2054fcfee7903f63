"""What `edgecnn tune` may change in the ONNX Runtime runner: graph optimisation, execution mode, spin-wait, providers.

Import-light: onnxruntime is imported only inside `axes`.
"""

from __future__ import annotations

from typing import Any

ARTIFACT_NOUN = "model"
USES_THREADS = True
# CPU execution providers worth trying when this onnxruntime build has them (the CPU one is always there).
_CPU_PROVIDERS = ("XnnpackExecutionProvider", "DnnlExecutionProvider", "OpenVINOExecutionProvider")


def capabilities() -> dict[str, Any]:
    import onnxruntime as ort

    return {"providers_available": list(ort.get_available_providers())}


def axes(precision: str, *, cores: int) -> list[tuple[str, list[dict[str, Any]]]]:
    """Knobs in search order; providers only where the build has another CPU provider."""
    knobs: list[tuple[str, list[dict[str, Any]]]] = [
        ("graph_optimization", [{"graph_optimization": level} for level in ("all", "extended", "basic")]),
        ("execution_mode", [{"execution_mode": "sequential"}, {"execution_mode": "parallel", "inter_op_threads": 2}]),
        ("allow_spinning", [{"allow_spinning": True}, {"allow_spinning": False}]),
    ]
    present = [p for p in _CPU_PROVIDERS if p in capabilities()["providers_available"]]
    if present:
        knobs.append(("providers", [{"providers": ["CPUExecutionProvider"]}]
                      + [{"providers": [p, "CPUExecutionProvider"]} for p in present]))
    return knobs


def compute_precision(precision: str, applied: dict[str, Any]) -> str:
    """ONNX Runtime's CPU providers compute in the file's precision."""
    return precision
