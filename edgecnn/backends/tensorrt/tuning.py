"""TensorRT in `edgecnn tune`: an engine's tactics are chosen when it is built on the device, not when it runs.

The runner has no run-time knob (CPU threads do not apply), so the sweep has nothing to try here;
`NOTE` says so in tune's report. Builder options belong to `edgecnn build` on the device.
"""

from __future__ import annotations

from typing import Any

ARTIFACT_NOUN = "engine"
USES_THREADS = False
NOTE = "TensorRT chooses its tactics when the engine is built on the device (edgecnn build): no run-time knob to sweep"


def capabilities() -> dict[str, Any]:
    return {}


def axes(precision: str, *, cores: int) -> list[tuple[str, list[dict[str, Any]]]]:
    return []


def compute_precision(precision: str, applied: dict[str, Any]) -> str:
    return precision
