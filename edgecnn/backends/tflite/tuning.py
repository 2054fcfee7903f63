"""What `edgecnn tune` may change in the LiteRT runner: the API, XNNPACK on or off, XNNPACK's fp16 mode.

Import-light: nothing of LiteRT is imported here; a candidate LiteRT refuses fails its check.
"""

from __future__ import annotations

import importlib.util
from typing import Any

ARTIFACT_NOUN = "model"
USES_THREADS = True


def capabilities() -> dict[str, Any]:
    return {"compiled_model_api": importlib.util.find_spec("ai_edge_litert") is not None}


def axes(precision: str, *, cores: int) -> list[tuple[str, list[dict[str, Any]]]]:
    """One axis of kernel paths (the valid combinations), in search order."""
    paths: list[dict[str, Any]] = [{"api": "interpreter"}, {"api": "interpreter", "xnnpack": False}]
    if capabilities()["compiled_model_api"]:
        paths.append({"api": "compiled_model"})
        if precision == "fp32":  # XNNPACK's FORCE_FP16: fails to load where the CPU has no fp16 arithmetic
            paths.append({"api": "compiled_model", "xnnpack_fp16": True})
    return [("kernels", paths)]


def compute_precision(precision: str, applied: dict[str, Any]) -> str:
    return "fp16" if applied.get("xnnpack_fp16") and precision == "fp32" else precision
