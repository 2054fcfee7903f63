"""A whole benchmark run: every target at every batch size, each in its own process, one report."""

from __future__ import annotations

from typing import Any, Callable

import edgecnn
from edgecnn.backends.runner import FixedBatchError
from edgecnn.bench.child import measure_in_child
from edgecnn.bench.environment import loadavg, run_environment
from edgecnn.bench.settings import SCHEMA, BenchSettings, BenchTarget
from edgecnn.bench.stats import add_speedups
from edgecnn.bench.targets import resolve_baseline
from edgecnn.bench.tuned import compute_precision, precision_label

OnResult = Callable[[BenchTarget, int, "dict[str, Any] | None"], None]


def run_benchmark(
    targets: list[BenchTarget],
    settings: BenchSettings,
    *,
    baseline: str | None = None,
    on_result: OnResult | None = None,
) -> dict[str, Any]:
    """Benchmark every target at every batch size, each in its own process; the full report."""
    baseline = resolve_baseline(targets, baseline)
    load_before = loadavg()
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for target in targets:
        for batch in settings.batches:
            try:
                row = result_row(target, settings, measure_in_child(target, batch, settings))
            except FixedBatchError as exc:
                skipped.append({"name": target.name, "batch": batch, "reason": str(exc)})
                row = None
            else:
                rows.append(row)
            if on_result:
                on_result(target, batch, row)
    add_speedups(rows, baseline)
    return {
        "schema": SCHEMA,
        "edgecnn_version": edgecnn.__version__,
        "settings": settings.as_dict(),
        "baseline": baseline,
        "environment": run_environment(rows, load_before),
        "artifacts": rows,
        "skipped": skipped,
    }


def result_row(target: BenchTarget, settings: BenchSettings, result: dict[str, Any]) -> dict[str, Any]:
    """The report's row for one target at one batch size, from the child's result."""
    return {
        "name": target.name,
        "path": str(target.path),
        "runtime": target.runtime,
        "runtime_version": result["runtime_version"],
        "precision": target.precision or target.options.get("precision"),  # None: a bare file
        "batch": result["batch"],
        "threads": result["threads"],
        "latency_ms": result["latency_ms"],
        "throughput_ips": result["throughput_ips"],
        "load_ms": result["load_ms"],
        "first_inference_ms": result["first_inference_ms"],
        "peak_rss_mb": result["peak_rss_mb"],
        "python_baseline_rss_mb": result["python_baseline_rss_mb"],
        "size_mb": target.size_bytes / 1e6,
        "iterations": result["iterations"],
        "warmup": settings.warmup,
        "input_shape": result["input_shape"],
        "applied": result["applied"],
        "compute_precision": compute_precision(target.runtime, target.precision, result["applied"]),
        "precision_label": precision_label(target.runtime, target.precision,
                                           compute_precision(target.runtime, target.precision, result["applied"])),
        "tuned_from": target.tuned_from,
        "torch_imported": result["torch_imported"],
    }
