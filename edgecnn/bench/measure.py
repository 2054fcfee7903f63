"""One measurement, in this process: load an artifact with its Runner, bind, time `invoke` alone.

The input is prepared and bound before timing; `time.perf_counter_ns` wraps `Runner.invoke` alone,
with the garbage collector paused. This is the child's side of `edgecnn.bench.child`.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any, Callable

import numpy as np

from edgecnn.bench.settings import MAX_ITERS
from edgecnn.bench.stats import latency_stats, throughput_ips
from edgecnn.errors import BadInputError


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    On Linux, /proc/self/status VmHWM: the high-water mark of this process's own address space. Not
    getrusage's ru_maxrss, which Linux carries over from the parent through fork and exec: a bench child
    started by a parent holding 1 GB (torch, a compare run) reported that 1 GB as its own peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def time_invokes(invoke: Callable[[], None], *, iters: int | None, min_time_ns: int = 0,
                 min_iters: int = 1) -> list[int]:
    """Nanoseconds of each timed call: `iters` of them, or enough for `min_time_ns` and `min_iters`."""
    samples: list[int] = []
    clock = time.perf_counter_ns
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if iters is not None:
            for _ in range(int(iters)):
                t0 = clock()
                invoke()
                samples.append(clock() - t0)
        else:
            total = 0
            while (total < min_time_ns or len(samples) < min_iters) and len(samples) < MAX_ITERS:
                t0 = clock()
                invoke()
                elapsed = clock() - t0
                samples.append(elapsed)
                total += elapsed
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Load one artifact and time it, in this process; `spec` is what `measure_in_child` sends."""
    from edgecnn.backends import get_runner

    baseline_rss = peak_rss_mb()
    batch = int(spec["batch"])
    runner = get_runner(spec["runtime"])
    start = time.perf_counter_ns()
    runner.load(spec["path"], threads=spec["threads"], batch=batch, **spec.get("options", {}))
    load_ns = time.perf_counter_ns() - start
    try:
        shape = _input_shape(runner, spec["path"])
        runner.bind(np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32))
        start = time.perf_counter_ns()
        runner.invoke()
        first_ns = time.perf_counter_ns() - start
        output = runner.fetch()
        _check_output(output, batch, spec["path"])
        for _ in range(int(spec["warmup"])):
            runner.invoke()
        samples = time_invokes(runner.invoke, iters=spec.get("iters"),
                               min_time_ns=int(float(spec.get("min_time_s") or 0) * 1e9),
                               min_iters=int(spec.get("min_iters") or 1))
        latency = latency_stats(samples)
        return {
            "runtime": runner.runtime,
            "runtime_version": runner.version,
            "batch": batch,
            "threads": spec["threads"],
            "latency_ms": latency,
            "throughput_ips": throughput_ips(batch, latency),
            "load_ms": load_ns / 1e6,
            "first_inference_ms": first_ns / 1e6,
            "peak_rss_mb": peak_rss_mb(),
            "python_baseline_rss_mb": baseline_rss,
            "iterations": len(samples),
            "input_shape": [batch, *shape],
            "output_shape": list(output.shape),
            "applied": runner.applied,
            # The contract's proof that a device run never imports torch (only the eager reference does).
            "torch_imported": "torch" in sys.modules,
        }
    finally:
        runner.close()


def _input_shape(runner, path: str) -> tuple[int, ...]:
    if runner.input_shape is None:
        raise BadInputError(
            f"cannot tell the input shape of {path}: bench it from its bundle (the manifest records the input shape)"
        )
    return tuple(runner.input_shape)


def _check_output(output: np.ndarray, batch: int, path: str) -> None:
    if output.shape[0] != batch or not np.all(np.isfinite(output)):
        what = "non-finite values" if output.shape[0] == batch else f"shape {list(output.shape)}"
        raise BadInputError(f"{path} returned {what} for a batch of {batch}")
