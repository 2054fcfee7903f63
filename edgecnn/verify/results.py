"""What verify reports: one Check per threshold, an ArtifactResult per artifact, the VerifyReport."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import edgecnn
from edgecnn.errors import CheckFailedError
from edgecnn.thresholds import DEFAULT_THRESHOLDS, Thresholds

SCHEMA = "edgecnn.verify/1"

REFERENCE_LIVE = "pytorch-live"
REFERENCE_GOLDEN = "golden"


class VerifyFailedError(CheckFailedError):
    """At least one artifact failed a parity check (exit 1); `report` holds every result."""

    def __init__(self, message: str, report: "VerifyReport"):
        self.report = report
        super().__init__(message)


@dataclass
class Check:
    """One threshold applied to one metric."""

    name: str  # drop | agreement | cosine | max_abs_diff | finite | output_shape | runs
    value: float | None
    threshold: float | None
    op: str  # "<=", ">=" or "=="
    passed: bool | None  # None when skipped
    reason: str | None = None  # why it was skipped

    def describe(self) -> str:
        if self.passed is None:
            return f"{self.name} skipped ({self.reason})"
        if self.value is None or self.threshold is None:
            return f"{self.name} {'ok' if self.passed else 'failed'}" + (f" ({self.reason})" if self.reason else "")
        return (f"{self.name} {format_metric(self.name, self.value)} {self.op} "
                f"{format_metric(self.name, self.threshold, threshold=True)}")


@dataclass
class ArtifactResult:
    """Every number verify reports for one artifact."""

    name: str
    path: str
    format: str
    runtime: str
    precision: str
    samples: int
    top1: float | None
    reference_top1: float | None
    drop: float | None
    agreement: float | None
    max_abs_diff: float | None
    mean_abs_diff: float | None
    cosine: float | None
    min_cosine: float | None
    reference_source: str
    thresholds: Thresholds
    checks: list[Check]
    accuracy_meaningful: bool
    runtime_version: str | None = None
    threads: int | None = None
    batch: int | None = None
    seconds: float = 0.0
    compute_precision: str | None = None  # what the runtime computed in (an fp32 IR may run in bf16)
    tuned_from: str | None = None  # the bundle's tuning file its settings came from
    layers_in_float: int = 0  # int8 layers export kept in float (edgecnn.quantize fallback)

    @property
    def precision_words(self) -> str:
        """'int8 (3 layers in float)' where export kept layers in float, else the precision."""
        n = self.layers_in_float
        return f"{self.precision} ({n} layer{'s' if n != 1 else ''} in float)" if n else self.precision

    @property
    def failed_checks(self) -> list[str]:
        return [c.name for c in self.checks if c.passed is False]

    @property
    def passed(self) -> bool:
        return not self.failed_checks

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "format": self.format,
            "runtime": self.runtime,
            "precision": self.precision,
            "samples": self.samples,
            "top1": round_or_none(self.top1, 3),
            "reference_top1": round_or_none(self.reference_top1, 3),
            "drop": round_or_none(self.drop, 3),
            "agreement": round_or_none(self.agreement, 6),
            "max_abs_diff": round_or_none(self.max_abs_diff, 6),
            "mean_abs_diff": round_or_none(self.mean_abs_diff, 6),
            "cosine": round_or_none(self.cosine, 6),
            "min_cosine": round_or_none(self.min_cosine, 6),
            "reference_source": self.reference_source,
            "accuracy_meaningful": self.accuracy_meaningful,
            "thresholds": self.thresholds.to_dict(),
            "checks": [
                {**asdict(c), "value": round_or_none(c.value, 6)} for c in self.checks
            ],
            "failed_checks": self.failed_checks,
            "passed": self.passed,
            "runtime_version": self.runtime_version,
            "threads": self.threads,
            "batch": self.batch,
            "seconds": round(self.seconds, 3),
            "compute_precision": self.compute_precision,
            "tuned_from": self.tuned_from,
            "layers_in_float": self.layers_in_float,
        }


@dataclass
class VerifyReport:
    """What `verify` found, for the table, the JSON, the JUnit file and the Markdown summary."""

    model: str
    target: str | None
    bundle: str | None
    samples: int
    samples_source: str
    reference_source: str
    reference_top1: float | None
    accuracy_meaningful: bool
    checkpoint: str | None
    artifacts: list[ArtifactResult]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    reference_label: str | None = None  # what the reference is, for people

    @property
    def passed(self) -> bool:
        return all(a.passed for a in self.artifacts)

    @property
    def failed(self) -> list[ArtifactResult]:
        return [a for a in self.artifacts if not a.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "model": self.model,
            "target": self.target,
            "bundle": self.bundle,
            "samples": self.samples,
            "samples_source": self.samples_source,
            "reference_source": self.reference_source,
            "reference_label": self.reference_label,
            "reference_top1": round_or_none(self.reference_top1, 3),
            "checkpoint": self.checkpoint,
            "accuracy_meaningful": self.accuracy_meaningful,
            "passed": self.passed,
            "failed": [a.name for a in self.failed],
            "artifacts": [a.to_dict() for a in self.artifacts],
            "defaults": {k: v.to_dict() for k, v in DEFAULT_THRESHOLDS.items()},
            "notes": list(self.notes),
            "edgecnn_version": edgecnn.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(self.seconds, 3),
        }

    def failure_message(self) -> str:
        """One line naming every failed artifact and its failed checks."""
        parts = [f"{a.name}: {', '.join(a.failed_checks)}" for a in self.failed]
        return f"{len(self.failed)} of {len(self.artifacts)} artifact(s) failed verification ({'; '.join(parts)})"


def format_metric(name: str, value: float | None, *, threshold: bool = False) -> str:
    """A metric (or, with `threshold`, its limit) as people read it: 97.00 %, +0.37 pts, 0.99871."""
    if value is None:
        return "-"
    if name in ("agreement", "min_agreement"):
        return f"{value * 100:.2f} %"
    if name in ("drop", "max_drop"):
        # A drop carries its sign (negative: the artifact did better); a limit does not.
        return f"{value:.2f} pts" if threshold or name == "max_drop" else f"{value:+.2f} pts"
    if name in ("cosine", "min_cosine"):
        return f"{value:.5f}"
    return f"{value:.4g}"


def round_or_none(value: float | None, digits: int) -> float | None:
    """`value` rounded for the JSON; None for a missing or non-finite one."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


__all__ = ["REFERENCE_GOLDEN", "REFERENCE_LIVE", "SCHEMA", "ArtifactResult", "Check", "VerifyFailedError",
           "VerifyReport", "format_metric", "round_or_none"]
