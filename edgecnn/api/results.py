"""What the Python API returns: typed results whose `to_dict()` is exactly what the CLI writes with `--json`.

Each result keeps the report the library built (the CLI's JSON) and reads its fields into typed
attributes; `to_dict()` hands back a copy of that report, so a script and `edgecnn ... --json` see the
same numbers under the same keys. Verify's local result is the library's own `VerifyReport`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Optional

from edgecnn.verify.results import ArtifactResult, VerifyReport  # noqa: F401  (verify's typed result)


@dataclass(frozen=True)
class BenchRow:
    """One artifact at one batch size: latency percentiles (ms), throughput, load time, memory, size."""

    name: str
    runtime: str
    precision: Optional[str]
    batch: int
    threads: Optional[int]
    latency_ms: dict[str, float]
    throughput_ips: float
    load_ms: float
    first_inference_ms: float
    peak_rss_mb: float
    size_mb: float
    speedup: Optional[float] = None
    device: Optional[dict[str, Any]] = None  # the device it ran on (on=/fleet=), else None

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> "BenchRow":
        return cls(name=row["name"], runtime=row["runtime"], precision=row.get("precision"), batch=int(row["batch"]),
                   threads=row.get("threads"), latency_ms=dict(row["latency_ms"]),
                   throughput_ips=row["throughput_ips"], load_ms=row["load_ms"],
                   first_inference_ms=row["first_inference_ms"], peak_rss_mb=row["peak_rss_mb"],
                   size_mb=row["size_mb"], speedup=row.get("speedup"), device=row.get("device"))

    @property
    def p50_ms(self) -> float:
        return self.latency_ms["p50"]


@dataclass(frozen=True)
class _Report:
    """A result that is the CLI's JSON report, read into typed fields."""

    report: dict[str, Any] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The CLI's `--json` content for the same run."""
        return copy.deepcopy(self.report)


@dataclass(frozen=True)
class BenchResult(_Report):
    """`bundle.bench()`: every artifact at every batch size, the method and the machine."""

    method: str = ""  # how it was timed, in words (what the CLI prints under its table)

    @property
    def rows(self) -> list[BenchRow]:
        return [BenchRow.from_dict(row) for row in self.report["artifacts"]]

    @property
    def baseline(self) -> Optional[str]:
        return self.report.get("baseline")

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.report.get("settings") or {})

    @property
    def environment(self) -> dict[str, Any]:
        return dict(self.report.get("environment") or {})

    @property
    def skipped(self) -> list[dict[str, Any]]:
        return list(self.report.get("skipped") or [])


@dataclass(frozen=True)
class TuneResult(_Report):
    """`bundle.tune()`: per artifact the default and tuned p50, the settings chosen, the tuning file written."""

    method: str = ""  # how candidates were timed and gated, in words

    @property
    def tuning_file(self) -> Optional[str]:
        return self.report.get("tuning_file")

    @property
    def artifacts(self) -> list[dict[str, Any]]:
        return list(self.report["artifacts"])


@dataclass(frozen=True)
class ExplainResult:
    """`bundle.explain()`: per int8 artifact its quantized layers, most costly first."""

    bundle: str
    artifacts: list[Any]  # edgecnn.explain.Explanation, one per int8 artifact

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "artifacts": [a.to_dict() for a in self.artifacts]}


@dataclass(frozen=True)
class BuildResult:
    """`bundle.build()`: the engines built (or kept) on this machine and recorded in the manifest."""

    build: Any  # the backend's build report (to_dict: bundle, target, engines)
    backend: Any = field(default=None, repr=False)  # the backend that built them (edgecnn.registry)

    @property
    def engines(self) -> list[dict[str, Any]]:
        return self.to_dict()["engines"]

    def to_dict(self) -> dict[str, Any]:
        return self.build.to_dict()


@dataclass(frozen=True)
class ExportResult(_Report):
    """What `edgecnn.export` did (the CLI's `export --json`): the artifacts, their parity, warnings, next steps."""

    export_report: Any = field(default=None, repr=False, compare=False)  # the pipeline's ExportReport

    @property
    def artifacts(self) -> list[dict[str, Any]]:
        return list(self.report["artifacts"])

    @property
    def warnings(self) -> list[str]:
        return list(self.report["warnings"])


@dataclass(frozen=True)
class RemoteResult(_Report):
    """A command run on devices (on=/fleet=): the merged JSON, every row with its `device`."""

    runs: list[Any] = field(default_factory=list, repr=False)  # edgecnn.remote.DeviceRun, one per device
    problems: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """Every device finished, and (verify) every artifact passed on each."""
        return not self.problems

    @property
    def failed_devices(self) -> list[str]:
        return list(self.report.get("failed") or [])

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self.report.get("artifacts") or [])

    @property
    def bench_rows(self) -> list[BenchRow]:
        """The rows as BenchRows (a bench run)."""
        return [BenchRow.from_dict(row) for row in self.rows]


__all__ = ["ArtifactResult", "BenchResult", "BenchRow", "BuildResult", "ExplainResult", "ExportResult",
           "RemoteResult", "TuneResult", "VerifyReport"]
