"""Latency statistics over any Runner, each artifact measured in its own process.

The method, stated in every report:

* one child process per artifact and batch size (`python -m edgecnn.bench.worker`), so load time
  and peak resident memory belong to that artifact alone, and the child imports only the runtime
  it runs (torch only for the PyTorch reference);
* the input is prepared and bound before timing; `time.perf_counter_ns` wraps the runtime call
  alone (`Runner.invoke`), with the garbage collector paused;
* `warmup` untimed runs, then `iters` timed runs, or as many as fit in `min_time_s` (at least
  `min_iters`);
* percentiles p50/p90/p99 by linear interpolation, plus mean, std, min, max; throughput is
  batch / mean latency.

Modules: settings (targets and the method), targets (what a path holds, the baseline), stats,
measure (one measurement, in the child), child + worker (the subprocess), environment, run (a whole
run); the latency plot is the report's (edgecnn.report.plots). The package imports only the
standard library and numpy at the top: `bench` runs on a device without torch.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.bench.child import BenchWorkerError, child_env, child_spec, measure_in_child
from edgecnn.bench.environment import cpu_model, environment, loadavg, run_environment
from edgecnn.bench.measure import measure, peak_rss_mb, time_invokes
from edgecnn.bench.run import result_row, run_benchmark
from edgecnn.bench.settings import (
    DEFAULT_MIN_ITERS,
    DEFAULT_MIN_TIME_S,
    DEFAULT_WARMUP,
    MAX_ITERS,
    SCHEMA,
    BenchSettings,
    BenchTarget,
    parse_batches,
)
from edgecnn.bench.stats import LATENCY_KEYS, add_speedups, latency_stats, throughput_ips
from edgecnn.bench.targets import (
    artifact_size_bytes,
    is_bundle_path,
    is_torch_baseline,
    reference_runtime,
    resolve_baseline,
    targets_from_path,
    torch_reference_target,
)
from edgecnn.bundle import checkpoint_of, default_threads_for


__all__ = [
    "SCHEMA", "DEFAULT_WARMUP", "DEFAULT_MIN_TIME_S", "DEFAULT_MIN_ITERS", "MAX_ITERS", "LATENCY_KEYS",
    "BenchTarget", "BenchSettings", "BenchWorkerError", "parse_batches",
    "artifact_size_bytes", "is_bundle_path", "targets_from_path", "torch_reference_target", "reference_runtime",
    "is_torch_baseline", "resolve_baseline",
    "latency_stats", "throughput_ips", "add_speedups",
    "peak_rss_mb", "time_invokes", "measure", "measure_in_child", "child_spec", "child_env",
    "cpu_model", "environment", "loadavg", "run_environment",
    "run_benchmark", "result_row",
    "checkpoint_of", "default_threads_for",
]
