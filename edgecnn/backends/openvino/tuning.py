"""What `edgecnn tune` may change in the OpenVINO runner on this machine, and what precision that computes in.

Import-light: the SDK is imported only inside `axes`, which runs where the artifact is tuned.
"""

from __future__ import annotations

from typing import Any

ARTIFACT_NOUN = "IR"
USES_THREADS = True
# OPTIMIZATION_CAPABILITIES entry -> INFERENCE_PRECISION_HINT value.
_HINTS = (("FP32", "f32"), ("BF16", "bf16"), ("FP16", "f16"))
_COMPUTE = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def capabilities() -> dict[str, Any]:
    """The CPU plugin's optimisation capabilities (FP32, BF16, FP16, INT8, ...)."""
    import openvino as ov

    return {"optimization_capabilities": list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))}


def axes(precision: str, *, cores: int) -> list[tuple[str, list[dict[str, Any]]]]:
    """Knobs in search order: precision hint (those the CPU has), streams, pinning (threads are the tuner's)."""
    found = set(capabilities()["optimization_capabilities"])
    hints = [{"inference_precision": hint} for capability, hint in _HINTS if capability in found]
    knobs: list[tuple[str, list[dict[str, Any]]]] = [("inference_precision", hints)]
    if cores > 1:
        knobs.append(("num_streams", [{"num_streams": 1}, {"num_streams": 2}]))
    knobs.append(("cpu_pinning", [{"cpu_pinning": True}, {"cpu_pinning": False}]))
    return knobs


def compute_precision(precision: str, applied: dict[str, Any]) -> str:
    """What the plugin computed in, from the hint it reports: an int8 IR stays int8 (its float parts follow the hint)."""
    if precision == "int8":
        return "int8"
    hint = str(applied.get("INFERENCE_PRECISION_HINT") or "").lower()
    return _COMPUTE.get(hint, precision)
