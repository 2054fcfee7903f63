"""Where the numbers were taken: CPU model, cores, load average, Python/numpy and runtime versions."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

import edgecnn
from edgecnn.host import physical_cores


def cpu_model() -> str:
    """The CPU's marketing name (x86), or the board's model (ARM), or what platform knows."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    try:
        model = Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00\n ")
        if model:
            return model
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, or None where the system does not say."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def environment() -> dict[str, Any]:
    """The machine and interpreter (what does not depend on the artifacts measured)."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    return {
        "cpu_model": cpu_model(),
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "machine": platform.machine(),
        "system": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "edgecnn": edgecnn.__version__,
    }


def run_environment(rows: list[dict[str, Any]], loadavg_before: list[float] | None) -> dict[str, Any]:
    """`environment()` plus the load around the run and, per runtime and artifact, what was measured.

    The versions and applied settings are the ones each child's Runner read back from the runtime it
    loaded, so they name exactly the runtimes that ran, in the order they ran.
    """
    env = environment()
    env["loadavg_before"] = loadavg_before
    env["loadavg_after"] = loadavg()
    env["runtime_versions"] = {r["runtime"]: r["runtime_version"] for r in rows}
    env["runtime_options"] = {}
    for row in rows:
        env["runtime_options"].setdefault(row["name"], row["applied"])
    return env
