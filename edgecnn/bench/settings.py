"""What to measure and how: `BenchTarget` (one artifact), `BenchSettings` (the method), batch parsing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from edgecnn.errors import BadInputError
from edgecnn.validate import optional_seconds

SCHEMA = "edgecnn.bench/1"
DEFAULT_WARMUP = 10
DEFAULT_MIN_TIME_S = 3.0  # when neither --iters nor --min-time is given
DEFAULT_MIN_ITERS = 30  # a floor under --min-time, so p90/p99 rest on some samples
MAX_ITERS = 1_000_000


@dataclass
class BenchTarget:
    """One artifact to benchmark."""

    name: str
    path: Path
    runtime: str
    precision: str | None = None
    size_bytes: int = 0
    #: passed to Runner.load: input_shape, layout, precision (from the manifest), runner options
    options: dict[str, Any] = field(default_factory=dict)
    #: threads tuned for this artifact on this machine (None: the run's threads)
    threads: int | None = None
    #: the bundle's tuning file its threads and options come from (None: the runner's defaults)
    tuned_from: str | None = None


@dataclass
class BenchSettings:
    """How to measure: the same for every artifact of a run."""

    threads: int
    batches: tuple[int, ...] = (1,)
    warmup: int = DEFAULT_WARMUP
    iters: int | None = None
    min_time_s: float | None = None
    min_iters: int = DEFAULT_MIN_ITERS
    timeout_s: float | None = None  # per child process

    def __post_init__(self) -> None:
        if self.iters is not None and self.min_time_s is not None:
            raise BadInputError("give --iters or --min-time, not both")
        if self.iters is None and self.min_time_s is None:
            self.min_time_s = DEFAULT_MIN_TIME_S
        if self.iters is not None and self.iters < 1:
            raise BadInputError(f"--iters must be at least 1, got {self.iters}")
        optional_seconds(self.min_time_s, "--min-time")
        optional_seconds(self.timeout_s, "--timeout")
        if self.warmup < 0:
            raise BadInputError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.threads < 1:
            raise BadInputError(f"--threads must be at least 1, got {self.threads}")
        if not self.batches or any(b < 1 for b in self.batches):
            raise BadInputError(f"batch sizes must be positive, got {list(self.batches)}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "batches": list(self.batches),
            "warmup": self.warmup,
            "iters": self.iters,
            "min_time_s": self.min_time_s,
            "min_iters": self.min_iters if self.iters is None else None,
            "timer": "time.perf_counter_ns around the runtime call alone (input bound beforehand, gc paused)",
            "percentiles": "linear interpolation (numpy.percentile)",
            "isolation": "one child process per artifact and batch size",
            "load_ms": "Runner.load in a fresh process, importing the runtime's SDK included (a cold start)",
            "first_inference_ms": "the first runtime call after load, before warm-up",
            "peak_rss_mb": "the child's peak resident memory (VmHWM of its own address space; ru_maxrss where "
                           "there is no /proc), interpreter and numpy included; "
                           "python_baseline_rss_mb is the part before loading",
        }

    def describe(self) -> str:
        """One sentence for people, printed under the table."""
        runs = (
            f"{self.iters} timed runs" if self.iters is not None
            else f"timed runs for at least {self.min_time_s:g} s (and {self.min_iters} runs)"
        )
        return (
            f"Method: {self.warmup} warm-up runs, then {runs} per artifact and batch, "
            f"{self.threads} threads, each artifact in its own process; perf_counter_ns around the "
            "runtime call alone; p50/p90/p99 by linear interpolation; throughput = batch / mean."
        )


def parse_batches(text: str | Iterable[int]) -> tuple[int, ...]:
    """'1,8' -> (1, 8); BadInputError for anything else."""
    if not isinstance(text, str):
        values = list(text)
    else:
        try:
            values = [int(part) for part in text.replace(" ", "").split(",") if part]
        except ValueError:
            raise BadInputError(f"--batch takes positive integers separated by commas, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise BadInputError(f"--batch takes positive integers separated by commas, got {text!r}")
    return tuple(dict.fromkeys(values))  # keep order, drop repeats
