"""Each artifact and batch size in a fresh Python process (`python -m edgecnn.bench.worker`).

A fresh process makes load time and peak resident memory that artifact's alone, and the child
imports only the runtime it runs (torch only for the PyTorch reference).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import edgecnn
from edgecnn.backends.runner import FixedBatchError
from edgecnn.bench.settings import BenchSettings, BenchTarget
from edgecnn.errors import EdgecnnError

WORKER_MODULE = "edgecnn.bench.worker"


class BenchWorkerError(EdgecnnError):
    """An error raised in a benchmark child process, re-raised here with its exit code."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def child_spec(target: BenchTarget, batch: int, settings: BenchSettings) -> dict[str, Any]:
    """What the child needs to measure `target` at `batch` (JSON-ready)."""
    return {
        "path": str(target.path),
        "runtime": target.runtime,
        "batch": batch,
        "threads": target.threads or settings.threads,
        "warmup": settings.warmup,
        "iters": settings.iters,
        "min_time_s": settings.min_time_s,
        "min_iters": settings.min_iters,
        "options": target.options,
    }


def measure_in_child(target: BenchTarget, batch: int, settings: BenchSettings) -> dict[str, Any]:
    """Run `measure` for one artifact and batch in a fresh Python process; returns its result."""
    what = f"{target.name} (batch {batch})"
    with tempfile.TemporaryDirectory(prefix="edgecnn-bench-") as tmp:
        spec_file = Path(tmp) / "spec.json"
        result_file = Path(tmp) / "result.json"
        spec_file.write_text(json.dumps(child_spec(target, batch, settings)))
        try:
            proc = subprocess.run(
                [sys.executable, "-m", WORKER_MODULE, str(spec_file), str(result_file)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                timeout=settings.timeout_s, env=child_env(),
            )
        except subprocess.TimeoutExpired:
            raise BenchWorkerError(f"benchmark of {what} took longer than {settings.timeout_s:g} s") from None
        if not result_file.is_file():
            tail = "\n".join((proc.stderr or "").strip().splitlines()[-5:])
            raise BenchWorkerError(f"benchmark of {what} crashed (exit {proc.returncode}): {tail}")
        payload = json.loads(result_file.read_text())
    if payload.get("ok"):
        return payload["result"]
    raise _child_error(payload.get("error", {}), what)


def _child_error(error: dict[str, Any], what: str) -> Exception:
    """The exception the child's error payload stands for: FixedBatchError stays itself (a skip)."""
    if error.get("type") == FixedBatchError.__name__:
        return FixedBatchError(error.get("message", "fixed batch"))
    message = error.get("message", "unknown error")
    if error.get("exit_code", 1) != 2 and error.get("type"):
        message = f"benchmark of {what} failed: {error['type']}: {message}"
    if os.environ.get("EDGECNN_DEBUG") and error.get("traceback"):
        message += "\n" + error["traceback"]
    return BenchWorkerError(message, int(error.get("exit_code", 1)))


def child_env() -> dict[str, str]:
    """The child's environment: ours, with edgecnn importable from wherever it was imported."""
    env = dict(os.environ)
    package_root = str(Path(edgecnn.__file__).resolve().parent.parent)
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_root not in parts:
        parts.append(package_root)
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env
