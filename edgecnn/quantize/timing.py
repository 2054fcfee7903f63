"""Close calls against fp32, timed again side by side.

The search times each candidate once (>= 1 s after warm-up), minutes apart from the fp32 timing; on a
shared machine that drifts by 10-15 % (EfficientNet-Lite1 on ONNX Runtime: the same mix 2.7 and 3.2 ms
in one search). Where a candidate lands within CLOSE of fp32, "slower than fp32" would be decided by
that drift, so both files are loaded together and timed in alternating rounds: whatever the machine
does then, it does to both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLOSE = 0.10  # a candidate within 10 % of fp32's p50 is timed again, interleaved with it
ROUNDS = 8  # alternating rounds; each times both files for ROUND_S after 2 warm-up runs
ROUND_S = 0.25


def is_close(p50_ms: float | None, fp32_p50_ms: float | None) -> bool:
    return p50_ms is not None and fp32_p50_ms is not None and abs(p50_ms - fp32_p50_ms) <= CLOSE * fp32_p50_ms


def interleaved_p50(runtime: str, candidate: Path, fp32: Path, sample: np.ndarray, options: dict) -> dict:
    """Median batch-1 latency (ms) of both files, timed in alternating rounds in this process."""
    from edgecnn.bench.measure import time_invokes
    from edgecnn.inference import load_runner

    runners = {}
    try:
        for key, path, precision in (("p50_ms", candidate, "int8"), ("fp32_p50_ms", fp32, "fp32")):
            runners[key] = load_runner(runtime, path, threads=None, batch=1,
                                       options={**options, "precision": precision})[0]
        batch = np.ascontiguousarray(sample[:1], dtype=np.float32)
        samples: dict[str, list[int]] = {key: [] for key in runners}
        for _ in range(ROUNDS):
            for key, runner in runners.items():
                for _ in range(2):
                    runner.run(batch)
                samples[key] += time_invokes(lambda r=runner: r.run(batch), iters=None,
                                             min_time_ns=int(ROUND_S * 1e9), min_iters=5)
    finally:
        for runner in runners.values():
            runner.close()
    result = {key: round(float(np.median(values)) / 1e6, 3) for key, values in samples.items()}
    return {**result, "method": f"interleaved with fp32: {ROUNDS} alternating rounds of >= {ROUND_S:g} s each "
                                "after 2 warm-up runs, median"}
