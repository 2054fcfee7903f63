"""What `compare` returns: one row per candidate and device, the answer per device, and the whole result.

A row is either measured (every number it could get) or failed (its reason, and whatever was measured
before the failure, e.g. the top-1 of an int8 file that missed the verify gate). `to_dict()` is what
`edgecnn compare --json` writes; `from_dict` reads it back (resume reads each finished candidate so).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional

MEASURED = "measured"
FAILED = "failed"
HERE = "this machine"  # the device name of a run without --on/--fleet

SCHEMA = "edgecnn.compare/1"


@dataclass
class CandidateResult:
    """One candidate (source × target × precision) on one device: its numbers, or why it has none."""

    source: str  # the SOURCE as given (a zoo name, a checkpoint, timm:NAME, ...)
    target: str
    precision: str
    device: str = HERE
    status: str = MEASURED
    reason: str = ""  # why it failed: export refused, INT8 not kept, verify failed, device unreachable, ...
    emulated: Optional[str] = None  # the device's note when its CPU is emulated (latency not the device's)
    top1: Optional[float] = None  # % on --data
    reference_top1: Optional[float] = None  # the same model's PyTorch fp32 top-1 on the same samples
    drop: Optional[float] = None  # points: reference_top1 - top1
    agreement: Optional[float] = None  # share of samples whose top-1 matches PyTorch fp32, 0..1
    verify_passed: Optional[bool] = None
    samples: Optional[int] = None
    p50_ms: Optional[float] = None
    p90_ms: Optional[float] = None
    p99_ms: Optional[float] = None
    peak_rss_mb: Optional[float] = None
    size_mb: Optional[float] = None
    params: Optional[int] = None
    macs: Optional[int] = None  # multiply-adds per image (conv + linear), edgecnn.zoo.profile's count
    runtime: Optional[str] = None
    threads: Optional[int] = None
    artifact: Optional[str] = None
    bundle: Optional[str] = None
    device_info: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """How people see it: 'mobilenet_v2 onnx int8'."""
        return f"{self.source} {self.target} {self.precision}"

    @property
    def measured(self) -> bool:
        return self.status == MEASURED

    @property
    def rankable(self) -> bool:
        """Ranked on speed and accuracy: measured, with both numbers, on a device whose CPU is its own."""
        return self.measured and self.top1 is not None and self.p50_ms is not None and not self.emulated

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> "CandidateResult":
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in row.items() if key in known})


@dataclass
class DeviceAnswer:
    """The answer for one device: the Pareto front, the choice under the budget, and the line that says it."""

    device: str
    front: list[str]  # candidate names on the front, fastest first
    choice: Optional[str]  # the most accurate candidate inside the budget (None: none fits, or not ranked)
    line: str  # "ship X: top-1 ..., p50 ... on DEVICE" or why there is no choice
    emulated: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CompareResult:
    """`edgecnn.compare_models.compare(...)`: every candidate row, the answer per device, the method."""

    candidates: list[CandidateResult]
    answers: list[DeviceAnswer]
    method: str  # how latency was timed and accuracy measured, in words
    settings: dict[str, Any] = field(default_factory=dict)
    report_html: Optional[str] = None
    measured_now: int = 0  # candidates measured in this run (the rest were reused from --out)
    reused: int = 0
    seconds: float = 0.0

    @property
    def measured(self) -> list[CandidateResult]:
        return [row for row in self.candidates if row.measured]

    @property
    def failed(self) -> list[CandidateResult]:
        return [row for row in self.candidates if not row.measured]

    @property
    def anything_measured(self) -> bool:
        return any(row.top1 is not None or row.p50_ms is not None for row in self.candidates)

    def environment(self) -> list[str]:
        """One line per device: its CPU and (here) the load average while it was timed, from the rows measured."""
        lines = []
        for device in dict.fromkeys(row.device for row in self.candidates):
            infos = [row.device_info for row in self.candidates if row.device == device and row.device_info]
            if not infos:
                continue
            info = infos[0]
            cores = f", {info['physical_cores']} physical cores" if info.get("physical_cores") else ""
            loads = [load[0] for i in infos for load in (i.get("load_average") or []) if load]
            load = f", load average {min(loads):.2f}-{max(loads):.2f} while timing" if loads else ""
            machine = f" ({info['machine']})" if info.get("machine") else ""
            lines.append(f"{device}: {info.get('cpu') or 'CPU unknown'}{machine}{cores}{load}"
                         + (f"; emulated: {info['emulated']}" if info.get("emulated") else ""))
        return lines

    def to_dict(self) -> dict[str, Any]:
        """What `edgecnn compare --json` writes: every number and every reason."""
        return {"schema": SCHEMA, "settings": self.settings, "method": self.method,
                "answers": [answer.to_dict() for answer in self.answers], "environment": self.environment(),
                "candidates": [row.to_dict() for row in self.candidates],
                "counts": {"candidates": len(self.candidates), "measured": len(self.measured),
                           "failed": len(self.failed), "measured_now": self.measured_now, "reused": self.reused},
                "report_html": self.report_html, "seconds": round(self.seconds, 1)}


__all__ = ["FAILED", "HERE", "MEASURED", "SCHEMA", "CandidateResult", "CompareResult", "DeviceAnswer"]
