"""How to tune: the budget, how each candidate is timed and gated (everything but what)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgecnn.errors import BadInputError
from edgecnn.thresholds import ThresholdOverrides
from edgecnn.validate import seconds

DEFAULT_BUDGET_S = 300.0
DEFAULT_MIN_TIME_S = 1.0  # per candidate: enough for a stable p50 of a millisecond model, short enough to try many
DEFAULT_WARMUP = 10
DEFAULT_MIN_ITERS = 30


@dataclass
class TuneSettings:
    """The sweep's budget, the timing of each candidate (bench's method) and the accuracy gate (verify's)."""

    runtime: str | None = None
    budget_s: float = DEFAULT_BUDGET_S
    min_time_s: float = DEFAULT_MIN_TIME_S
    warmup: int = DEFAULT_WARMUP
    min_iters: int = DEFAULT_MIN_ITERS
    limit: int | None = None  # golden samples the gate runs (None: all)
    verify_batch: int = 32
    overrides: ThresholdOverrides = field(default_factory=ThresholdOverrides)
    force: bool = False

    def __post_init__(self) -> None:
        seconds(self.budget_s, "--budget")
        seconds(self.min_time_s, "--min-time")
        if self.warmup < 0:
            raise BadInputError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.limit is not None and self.limit < 1:
            raise BadInputError(f"--limit must be at least 1, got {self.limit}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "budget_s": self.budget_s, "min_time_s": self.min_time_s, "warmup": self.warmup,
            "min_iters": self.min_iters, "batch": 1, "gate_samples_limit": self.limit,
            "timing": "edgecnn bench's method: one child process per candidate, warm-up, perf_counter_ns around "
                      "the runtime call alone, p50/p90/p99 by linear interpolation",
            "gate": "each candidate faster than the best passing one so far (a slower one cannot be chosen): its "
                    "logits on the bundle's golden set against the golden (PyTorch fp32) logits, "
                    "with verify's thresholds for the precision the candidate computes in (bf16/fp16 compute is "
                    "held to the bf16/fp16 gate, int8 files to the int8 gate)",
            "search": "coordinate search from the runner's defaults: each knob in turn, the others held at the "
                      "fastest passing setting so far; then the default and the winner timed again side by side "
                      "(3 rounds, each timing both in fresh child processes, order alternating) and the winner "
                      "kept only when the median of the rounds' winner/default p50 ratios is below 1",
        }

    def describe(self) -> str:
        return (f"Method: each candidate in its own process as edgecnn bench times it ({self.warmup} warm-up runs, "
                f"then at least {self.min_time_s:g} s and {self.min_iters} runs, batch 1; p50 by linear "
                "interpolation); the faster ones gated on the golden set with verify's thresholds for the precision "
                "they compute in; default and tuned p50 re-timed side by side at the end (3 alternating rounds, "
                "the median of the paired ratios decides).")
