"""What `edgecnn tune` may change in the ncnn runner: fp16 storage and arithmetic, Winograd, sgemm.

Import-light: ncnn is not imported here.
"""

from __future__ import annotations

from typing import Any

ARTIFACT_NOUN = "model"
USES_THREADS = True


def capabilities() -> dict[str, Any]:
    return {}


def axes(precision: str, *, cores: int) -> list[tuple[str, list[dict[str, Any]]]]:
    """Knobs in search order: fp16 first (it moves latency most on CPUs with fp16 arithmetic)."""
    return [
        ("fp16", [{"fp16": precision == "fp16"}, {"fp16": precision != "fp16"}]),
        ("winograd", [{"winograd": True}, {"winograd": False}]),
        ("sgemm", [{"sgemm": True}, {"sgemm": False}]),
    ]


def compute_precision(precision: str, applied: dict[str, Any]) -> str:
    return "fp16" if applied.get("use_fp16_arithmetic") or applied.get("use_fp16_storage") else "fp32"
