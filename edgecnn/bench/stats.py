"""Latency statistics (percentiles by linear interpolation) and speed-ups against a reference."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

LATENCY_KEYS = ("p50", "p90", "p99", "mean", "std", "min", "max")


def latency_stats(samples_ns: Iterable[int]) -> dict[str, float]:
    """p50/p90/p99/mean/std/min/max in milliseconds."""
    ms = np.asarray(list(samples_ns), dtype=np.float64) / 1e6
    if ms.size == 0:
        raise ValueError("no samples")
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(ms.mean()),
        "std": float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        "min": float(ms.min()),
        "max": float(ms.max()),
    }


def throughput_ips(batch: int, latency: dict[str, float]) -> float | None:
    """Images per second: batch / mean latency."""
    return batch * 1000.0 / latency["mean"] if latency["mean"] > 0 else None


def add_speedups(rows: list[dict[str, Any]], baseline: str | None) -> None:
    """speedup = reference p50 / p50, per batch size; the reference is the baseline or the slowest."""
    for batch in sorted({r["batch"] for r in rows}):
        group = [r for r in rows if r["batch"] == batch]
        reference = next((r for r in group if r["name"] == baseline), None) if baseline else None
        if reference is None:
            reference = max(group, key=lambda r: r["latency_ms"]["p50"])
        for row in group:
            row["speedup"] = reference["latency_ms"]["p50"] / row["latency_ms"]["p50"]
            row["speedup_vs"] = reference["name"]
