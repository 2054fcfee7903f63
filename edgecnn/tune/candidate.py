"""One candidate setting of one artifact: its accuracy gate (verify's checks) and its latency (bench's child)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


from edgecnn.backends.runner import FixedBatchError
from edgecnn.bench import BenchSettings, BenchTarget, measure_in_child
from edgecnn.bench.tuned import compute_precision
from edgecnn.errors import MissingDependencyError
from edgecnn.inference import run_logits
from edgecnn.tune.settings import TuneSettings
from edgecnn.verify.evaluation import evaluate_artifact
from edgecnn.verify.samples import Samples


@dataclass
class Gate:
    """The golden samples and what they are checked against."""

    samples: Samples
    accuracy_meaningful: bool
    batch: int  # images per runtime call while gating (1 for static-batch artifacts)


@dataclass
class Candidate:
    """One setting tried: {threads, runner options}, its latency, its agreement and whether it passed."""

    settings: dict[str, Any]
    compute_precision: str | None = None
    latency_ms: dict[str, float] | None = None
    agreement: float | None = None
    max_abs_diff: float | None = None
    passed: bool = False
    failed_checks: list[str] = field(default_factory=list)
    gate_precision: str | None = None
    error: str | None = None
    applied: dict[str, Any] = field(default_factory=dict)
    runtime_version: str | None = None
    seconds: float = 0.0
    role: str = "sweep"  # sweep | pair-leader | pair-challenger | confirm-default | confirm-tuned
    gated: bool = False  # False: slower than the best passing setting, so its accuracy was not checked
    paired: dict[str, Any] | None = None  # a sweep candidate timed side by side with the leader: ratios, verdict

    @property
    def p50(self) -> float | None:
        return None if self.latency_ms is None else self.latency_ms["p50"]

    def key(self) -> str:
        return repr(sorted(self.settings.items()))

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "compute_precision": self.compute_precision,
                "gate_precision": self.gate_precision, "latency_ms": self.latency_ms, "p50": self.p50,
                "agreement": self.agreement, "max_abs_diff": self.max_abs_diff, "passed": self.passed,
                "failed_checks": self.failed_checks, "error": self.error, "seconds": round(self.seconds, 2),
                "role": self.role, "gated": self.gated, "applied": self.applied,
                **({"paired_with_leader": self.paired} if self.paired else {})}


def split_settings(settings: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(threads, runner options) of a candidate's settings."""
    options = dict(settings)
    return int(options.pop("threads")), options


def gate_candidate(candidate: Candidate, target: BenchTarget, gate: Gate, settings: TuneSettings) -> None:
    """Run the golden set through the candidate and apply verify's checks for the precision it computes in."""
    threads, options = split_settings(candidate.settings)
    try:
        logits, info = run_logits(target.runtime, target.path, gate.samples.inputs, threads=threads,
                                  batch=gate.batch, options={**target.options, **options}, label=target.name)
    except MissingDependencyError:
        raise
    except Exception as exc:  # noqa: BLE001 - a setting the runtime refuses is a failed candidate, not a crash
        candidate.error, candidate.failed_checks = _one_line(exc), ["runs"]
        return
    candidate.applied = dict(info.get("applied") or {})
    candidate.runtime_version = info.get("runtime_version")
    candidate.compute_precision = compute_precision(target.runtime, target.precision, candidate.applied)
    candidate.gate_precision = "int8" if target.precision == "int8" else (candidate.compute_precision or "fp32")
    thresholds = settings.overrides.for_precision(candidate.gate_precision)
    evaluation = evaluate_artifact(logits, gate.samples.golden_logits, gate.samples.labels, thresholds,
                                   accuracy_meaningful=gate.accuracy_meaningful)
    metrics = evaluation["metrics"]
    candidate.agreement, candidate.max_abs_diff = metrics["agreement"], metrics["max_abs_diff"]
    candidate.failed_checks = [c.name for c in evaluation["checks"] if c.passed is False]
    candidate.passed = not candidate.failed_checks


def time_candidate(candidate: Candidate, target: BenchTarget, settings: TuneSettings, *,
                   timeout_s: float | None) -> None:
    """p50/p90/p99 of the candidate at batch 1, measured by bench's child process."""
    threads, options = split_settings(candidate.settings)
    bench = BenchSettings(threads=threads, warmup=settings.warmup, min_time_s=settings.min_time_s,
                          min_iters=settings.min_iters, timeout_s=timeout_s)
    timed = BenchTarget(name=target.name, path=target.path, runtime=target.runtime, precision=target.precision,
                        size_bytes=target.size_bytes, options={**target.options, **options})
    try:
        result = measure_in_child(timed, 1, bench)
    except (FixedBatchError, Exception) as exc:  # noqa: BLE001 - recorded; a candidate that cannot be timed loses
        candidate.error, candidate.passed, candidate.failed_checks = _one_line(exc), False, ["runs"]
        return
    candidate.latency_ms = {k: float(v) for k, v in result["latency_ms"].items()}
    candidate.applied = dict(result.get("applied") or {})
    candidate.runtime_version = result.get("runtime_version")
    candidate.compute_precision = compute_precision(target.runtime, target.precision, candidate.applied)


def evaluate(candidate: Candidate, target: BenchTarget, gate: Gate, settings: TuneSettings, *,
             timeout_s: float | None, gate_below_ms: float | None = None) -> Candidate:
    """Time, then gate; a candidate slower than `gate_below_ms` cannot be chosen, so its gate is skipped."""
    started = time.monotonic()
    time_candidate(candidate, target, settings, timeout_s=timeout_s)
    slower = gate_below_ms is not None and candidate.p50 is not None and candidate.p50 > gate_below_ms
    if candidate.p50 is not None and not slower:
        gate_candidate(candidate, target, gate, settings)
        candidate.gated = True
    candidate.seconds = time.monotonic() - started
    return candidate


def _one_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"{type(exc).__name__}: {text[:300]}"


__all__ = ["Candidate", "Gate", "evaluate", "gate_candidate", "split_settings", "time_candidate"]
