"""Close calls against fp32: when a candidate's p50 is near fp32's, the two are timed again side by side.

The search times each candidate once, minutes apart from the fp32 timing; on a shared machine that
drifts by 10-15 % (EfficientNet-Lite1 on ONNX Runtime: the same mix 2.7 and 3.2 ms in one search).
Where a candidate lands within CLOSE of fp32, "slower than fp32" would be decided by that drift, so
both are timed again interleaved (the `Measure`'s `side_by_side`, edgecnn.bench.candidates).
"""

from __future__ import annotations

CLOSE = 0.10  # a candidate within 10 % of fp32's p50 is timed again, interleaved with it


def is_close(p50_ms: float | None, fp32_p50_ms: float | None) -> bool:
    return p50_ms is not None and fp32_p50_ms is not None and abs(p50_ms - fp32_p50_ms) <= CLOSE * fp32_p50_ms
