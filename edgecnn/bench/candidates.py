"""The INT8 search's scorer and timer: candidate files run through their Runner, as on the device.

`RunnerMeasure` is the `edgecnn.quantize.Measure` the pipeline (and explain) hand the search: logits
through `edgecnn.inference` (the path verify and export's parity check take), batch-1 latency timed with
`perf_counter_ns` around `Runner.run`, and every speed decision timed side by side with fp32 in alternating
rounds (the decision on their paired ratios).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.bench.measure import time_invokes
from edgecnn.host import load_average

SCORE_BATCH = 32  # batch the candidates are scored at (a static-batch file runs its own)
WARMUP_RUNS = 5
TIMING_S = 1.0  # seconds of timed batch-1 runs per candidate (after the warm-up runs)
# Side by side: alternating rounds, each timing both files for ROUND_S after 2 warm-up runs. Short rounds, many of
# them: load on a shared machine changes over seconds, and a burst that lands on one file's half of a long round
# skews that round's ratio. While the rounds disagree (fewer than 3 in 4 on the median's side of 1) more rounds
# are timed, up to MAX_ROUNDS, so a noisy comparison is measured longer instead of decided early.
ROUNDS = 16
MAX_ROUNDS = 40
ROUND_S = 0.12
AGREEING_SHARE = 0.75


class RunnerMeasure:
    """Scores and times candidate files of one input shape through their runtime's Runner."""

    def __init__(self, input_shape: tuple[int, ...]):
        self.input_shape = list(input_shape)

    def _options(self, precision: str) -> dict:
        # the precision as bench and verify pass it, so candidates run as they will be run
        return {"input_shape": self.input_shape, "precision": precision}

    def logits(self, runtime: str, path: Path, inputs: np.ndarray, *, precision: str,
               batch: int = SCORE_BATCH, options: dict | None = None) -> np.ndarray:
        """Logits of `inputs` through the runtime's Runner (`options`: runner options, e.g. how to score int8)."""
        from edgecnn.inference import run_logits

        logits, _ = run_logits(runtime, path, inputs, threads=None, batch=batch,
                               options={**self._options(precision), **(options or {})})
        return logits

    def p50_ms(self, runtime: str, path: Path, sample: np.ndarray, *, precision: str) -> float:
        """Median batch-1 latency on this host (perf_counter_ns, 5 warm-up runs, >= 1 s timed)."""
        from edgecnn.inference import load_runner

        runner, batch = load_runner(runtime, path, threads=None, batch=1, options=self._options(precision))
        try:
            data = np.ascontiguousarray(np.repeat(sample[:1], batch, axis=0), dtype=np.float32)
            for _ in range(WARMUP_RUNS):
                runner.run(data)
            samples = time_invokes(lambda: runner.run(data), iters=None, min_time_ns=int(TIMING_S * 1e9),
                                   min_iters=10)
        finally:
            runner.close()
        return float(np.median(samples)) / 1e6 / batch

    def side_by_side(self, runtime: str, candidate: Path, fp32: Path, sample: np.ndarray) -> dict:
        """Batch-1 latency of both files timed in alternating rounds in this process, and their paired ratio.

        Each round times the candidate, then fp32, for ROUND_S each (the order alternates between rounds), so
        both see the same load; the decision reads the median of the rounds' candidate/fp32 ratios, which a
        busy neighbour slows alike, not two medians that a burst can land on one side of. The load average
        during the timing is recorded with it.
        """
        from edgecnn.inference import load_runner

        runners = {}
        load_before = load_average()
        try:
            for key, path, precision in (("p50_ms", candidate, "int8"), ("fp32_p50_ms", fp32, "fp32")):
                runners[key] = load_runner(runtime, path, threads=None, batch=1, options=self._options(precision))[0]
            batch = np.ascontiguousarray(sample[:1], dtype=np.float32)
            rounds: list[dict[str, list[int]]] = []
            while len(rounds) < ROUNDS or (len(rounds) < MAX_ROUNDS and not _rounds_agree(rounds)):
                order = list(runners.items()) if len(rounds) % 2 == 0 else list(reversed(runners.items()))
                rounds.append({})
                for key, runner in order:
                    for _ in range(2):
                        runner.run(batch)
                    rounds[-1][key] = time_invokes(lambda r=runner: r.run(batch), iters=None,
                                                   min_time_ns=int(ROUND_S * 1e9), min_iters=5)
        finally:
            for runner in runners.values():
                runner.close()
        result = {key: round(float(np.median([t for r in rounds for t in r[key]])) / 1e6, 3) for key in runners}
        ratios = _round_ratios(rounds)
        return {**result, "ratio": round(float(np.median(ratios)), 4), "rounds": len(rounds),
                "rounds_agreeing": round(_agreeing_share(ratios), 3), "load_average": [load_before, load_average()],
                "method": f"interleaved with fp32: {len(rounds)} rounds (order alternating; {ROUNDS} or more until "
                          f"{AGREEING_SHARE:.0%} of them agree on the side of 1, at most {MAX_ROUNDS}) of "
                          f">= {ROUND_S:g} s per file after 2 warm-up runs; p50 over all rounds, decided on the median "
                          "of the rounds' ratios"}


def _round_ratios(rounds: list[dict[str, list[int]]]) -> list[float]:
    """Each round's candidate p50 over its fp32 p50: the paired measurements a decision reads."""
    return [float(np.median(r["p50_ms"]) / np.median(r["fp32_p50_ms"])) for r in rounds]


def _agreeing_share(ratios: list[float]) -> float:
    """The share of rounds on the same side of 1 as the median ratio (a tie counts with neither side)."""
    median = float(np.median(ratios))
    side = [r for r in ratios if (r > 1.0) == (median > 1.0) and r != 1.0]
    return len(side) / len(ratios)


def _rounds_agree(rounds: list[dict[str, list[int]]]) -> bool:
    return _agreeing_share(_round_ratios(rounds)) >= AGREEING_SHARE

