"""What `edgecnn tune` may change in the ncnn runner: fp16 storage and arithmetic, Winograd, sgemm, OpenMP wait.

Import-light: ncnn is not imported here.
"""

from __future__ import annotations

from typing import Any

ARTIFACT_NOUN = "model"
USES_THREADS = True
# Spin-waiting wins on an idle machine and collapses when other processes want the cores (README, "ncnn
# under load"): the sweep can only judge the load it runs under.
NOTE = "openmp_wait is timed under the load tune runs with: tune while the device's other work runs"


def capabilities() -> dict[str, Any]:
    return {}


def axes(precision: str, *, cores: int) -> list[tuple[str, list[dict[str, Any]]]]:
    """Knobs in search order, fp16 first (it moves latency most on CPUs with fp16 arithmetic); defaults first."""
    from edgecnn.backends.ncnn.runner import DEFAULT_OPENMP_WAIT, OPENMP_WAITS

    waits = [DEFAULT_OPENMP_WAIT] + [wait for wait in OPENMP_WAITS if wait != DEFAULT_OPENMP_WAIT]
    return [
        ("fp16", [{"fp16": precision == "fp16"}, {"fp16": precision != "fp16"}]),
        ("winograd", [{"winograd": True}, {"winograd": False}]),
        ("sgemm", [{"sgemm": True}, {"sgemm": False}]),
        # Only with more than one thread is there a barrier to wait at.
        ("openmp_wait", [{"openmp_wait": wait} for wait in waits] if cores > 1 else [{"openmp_wait": waits[0]}]),
    ]


def compute_precision(precision: str, applied: dict[str, Any]) -> str:
    return "fp16" if applied.get("use_fp16_arithmetic") or applied.get("use_fp16_storage") else "fp32"
