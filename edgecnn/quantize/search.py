"""Sensitivity ranking and the fallback search: the fewest layers in float that make INT8 pass its gate.

The loop is NNCF's accuracy-control idea, bounded: rank the quantized layers by how much the logits
improve when only that layer runs in float (measured, not guessed; SQNR orders the measuring so the
likely culprits come first), then keep the top 1, 2, 3, ... in float until a candidate passes verify's
gate, and bisect between the last failing and the first passing count. Every candidate is timed on the
host runtime; a passing mix slower than fp32 is never chosen. All of it within one time budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgecnn.quantize.gate import Score
from edgecnn.stages import Stage


class Budget:
    """Seconds the whole INT8 search may take, counted from creation."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.started = time.perf_counter()

    def spent(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float:
        return self.seconds - self.spent()

    def exhausted(self) -> bool:
        return self.left() <= 0


# A recipe that passes the gate but agrees with fp32 on fewer golden images than this is not the end:
# the next recipes are measured too (while half the budget is left) and the best kept; and the search
# drops a layer from a passing mix only while the mix keeps its agreement or this much. The gate (97 %)
# is what verify fails; on real models the recipes differ by 1-2 points above it (EfficientNet-Lite2:
# NNCF mixed 96.7 %, performance 97.3 %), and digits models, at 99-100 %, stop at the first as before.
AIM_AGREEMENT = 0.985

# A mix with layers in float is the accuracy bought back with speed, so it must still buy speed: it is kept
# only when it runs at least MIX_MIN_SPEEDUP faster than fp32 side by side (paired ratio <= 0.90), and the
# search keeps at most MAX_FLOAT_SHARE of the quantized layers in float. Both measured: a Lite1 `onnx` export
# beside a busy process chose a mix with all 81 of its layers in float, timed 0.85x fp32 busy, 1.01x quietly
# (benchmarks/int8_busy_export.json): an fp32 model with extra Q/DQ work, not an int8 one.
MIX_MIN_SPEEDUP = 0.10
MAX_FLOAT_SHARE = 0.5
MIN_FLOAT_CAP = 4  # tiny models: never fewer layers than this may be tried in float


def float_cap(layers: int) -> int:
    """How many of a model's `layers` quantized layers the fallback search may keep in float."""
    return max(MIN_FLOAT_CAP, int(layers * MAX_FLOAT_SHARE))


class Int8Status:
    """The one vocabulary of an INT8 result, from the fallback search's outcome to the manifest's `status`."""

    INT8 = "int8"  # full int8 is kept (it passes; or it passes but is no faster than fp32: kept as asked, noted)
    FALLBACK = "fallback"  # a mix with layers in float passes the gate, runs >= 10 % faster than fp32: kept
    SLOWER = "slower"  # a mix passes but runs less than MIX_MIN_SPEEDUP faster than fp32: no int8 artifact kept
    UNCHECKED = "unchecked"  # full int8 misses the gate and the fallback is off: kept, verify fails it
    MISSED = "missed"  # the choice passes where the search chose but misses the gate on the whole golden set
    # (what verify checks): no int8 artifact kept, as verify would fail the file export shipped
    FAILED = "failed"  # no mix passes within the budget: the export exits 1 and keeps nothing


@dataclass
class Layer:
    """One quantized layer and what it costs (sqnr_db of its int8 output vs fp32; gain when kept float)."""

    node: str
    op: str
    user_name: str
    sqnr_db: float | None = None
    gain: float | None = None  # fraction of the logit error (MSE) that goes away when only this layer is float
    agreement_float: float | None = None  # agreement with the reference when only this layer is float
    cost_ms: float | None = None  # what keeping only this layer in float adds to full int8's p50 (timed)

    def to_dict(self) -> dict[str, Any]:
        return {"user_name": self.user_name, "node": self.node, "op": self.op,
                "sqnr_db": None if self.sqnr_db is None else round(self.sqnr_db, 2),
                "gain": None if self.gain is None else round(self.gain, 4),
                "agreement_float": None if self.agreement_float is None else round(self.agreement_float, 6),
                "cost_ms": None if self.cost_ms is None else round(self.cost_ms, 3)}


@dataclass
class Trial:
    """One candidate artifact: its recipe, the layers it keeps in float, how it scored and how fast it ran."""

    label: str
    float_layers: tuple[str, ...]
    score: Score
    p50_ms: float | None
    seconds: float
    recipe: dict = field(default_factory=dict)
    artifact: Path | None = None  # where the candidate file is (scratch); not recorded
    entry: dict = field(default_factory=dict)  # what the manifest entry would record about that file
    # Timed side by side with fp32 (RunnerMeasure.side_by_side, edgecnn.bench.candidates): p50_ms,
    # fp32_p50_ms, ratio (median of the rounds' int8/fp32 ratios), load_average, method.
    interleaved: dict | None = None

    def to_dict(self, names: dict[str, str] | None = None) -> dict[str, Any]:
        names = names or {}
        record = {"candidate": self.label, "layers_in_float": len(self.float_layers),
                  "float_layers": [names.get(n, n) for n in self.float_layers], **self.score.to_dict(),
                  "p50_ms": None if self.p50_ms is None else round(self.p50_ms, 3),
                  "seconds": round(self.seconds, 2), "recipe": self.recipe}
        if self.interleaved:
            record["interleaved_with_fp32"] = self.interleaved
        return record

    def slower_than(self, fp32_p50_ms: float | None, *, margin: float = 0.0) -> bool:
        """No more than `margin` faster than fp32 (never when either was not timed); a side-by-side timing
        decides when made, on its paired ratio (each round's int8 and fp32 ran under the same load)."""
        if fp32_p50_ms is None or self.p50_ms is None:
            return False
        if self.interleaved:
            side = self.interleaved
            ratio = side.get("ratio", side["p50_ms"] / side["fp32_p50_ms"])
        else:
            ratio = self.p50_ms / fp32_p50_ms if fp32_p50_ms > 0 else float("inf")
        return ratio > 1.0 - margin if margin else ratio >= 1.0

    def mix_too_slow(self, fp32_p50_ms: float | None) -> bool:
        """A mix with layers in float that does not run MIX_MIN_SPEEDUP faster than fp32."""
        return self.slower_than(fp32_p50_ms, margin=MIX_MIN_SPEEDUP if self.float_layers else 0.0)


def rank_layers(layers: list[Layer], base: Score, measure: Callable[[tuple[str, ...]], Score], *,
                budget: Budget, share: float = 0.5, stage: Stage | None = None) -> list[Layer]:
    """Measure each layer's gain when only it is float (lowest SQNR first) within `share` of the budget.

    Returns the layers most sensitive first: measured ones by gain, then unmeasured ones by SQNR.
    """
    stop_at = budget.spent() + max(budget.left(), 0) * share
    order = sorted(layers, key=lambda layer: (layer.sqnr_db is None, layer.sqnr_db or 0.0))
    for done, layer in enumerate(order, 1):
        if budget.spent() >= stop_at:
            break
        result = measure((layer.node,))
        layer.gain = (base.logit_mse - result.logit_mse) / base.logit_mse if base.logit_mse > 0 else 0.0
        layer.agreement_float = result.agreement
        if stage is not None:
            stage(f"INT8 sensitivity: {done}/{len(order)} layers measured in float "
                  f"({budget.left():.0f} s of the search budget left)")
    measured = sorted((x for x in order if x.gain is not None), key=lambda x: -x.gain)
    rest = [x for x in order if x.gain is None]
    return measured + rest


def by_gain_per_ms(ranking: list[Layer], floor_ms: float) -> list[Layer]:
    """The layers whose cost in float was timed, most logit error removed per millisecond added first, ahead
    of the rest in their order.

    Why not gain alone: the layer that fixes most is often the costliest in float (EfficientNet-Lite's first
    depthwise convs run at full resolution: three of them in float made a mix 1.6x slower than full int8,
    slower than fp32, so no int8 was kept at all). A cost under `floor_ms` (timing noise, or a layer that
    costs nothing) counts as `floor_ms`, so a negligible fix is not ranked first for being free.
    """
    costed = [layer for layer in ranking if layer.cost_ms is not None]
    rest = [layer for layer in ranking if layer.cost_ms is None]
    costed.sort(key=lambda layer: -max(layer.gain or 0.0, 0.0) / max(layer.cost_ms, floor_ms))
    return costed + rest


def _counts(limit: int) -> list[int]:
    """How many top-ranked layers each step keeps in float: 1..6 one by one, then growing by ~1/3."""
    counts, k = [], 1
    while k <= limit:
        counts.append(k)
        k = k + 1 if k < 6 else max(k + 1, round(k * 4 / 3))
    if limit and counts[-1] != limit:
        counts.append(limit)
    return counts


# When the budget left pays for fewer than this many more candidates at the last one's cost, the count doubles
# instead: TFLite builds each mix by a fresh litert-torch conversion (~100 s for EfficientNet-Lite2 on 2 cores),
# and one layer at a time spent a 600 s budget on 1..5 layers in float and kept nothing (exit 1), where a
# passing count further up would have been found and then bisected down in what was left.
AFFORDABLE_TRIALS = 6


def _next_count(k: int, limit: int, *, trial_s: float, left_s: float) -> int:
    """The count after a failing `k`: the regular step, or twice `k` when the budget affords few more trials."""
    regular = next((count for count in _counts(limit) if count > k), limit + 1)
    if trial_s > 0 and left_s < trial_s * AFFORDABLE_TRIALS and k < limit:
        return max(regular, min(limit, 2 * k))
    return regular


@dataclass
class SearchOutcome:
    """Where the fallback search ended: Int8Status FALLBACK (a mix passes), SLOWER or FAILED."""

    status: str
    chosen: Trial | None
    trace: list[Trial]
    best: Trial

    @property
    def layers_tried(self) -> int:
        return max((len(t.float_layers) for t in self.trace), default=0)


def search_fallback(ranking: list[Layer], full: Trial, try_mix: Callable[[tuple[str, ...]], Trial], *,
                    budget: Budget, fp32_p50_ms: float | None, stage: Stage | None = None,
                    max_layers: int | None = None) -> SearchOutcome:
    """Keep the top-k ranked layers in float for growing k until a candidate passes (then bisect down, then
    drop the layers of that mix it passes without); k doubles when the budget affords few more candidates."""
    nodes = tuple(layer.node for layer in ranking)[: max_layers or len(ranking)]
    trace, failed_at, passing = [full], 0, None
    k = 1 if nodes else len(nodes) + 1
    while k <= len(nodes) and not budget.exhausted():
        trial = try_mix(nodes[:k])
        trace.append(trial)
        _report(stage, trace, budget, k, len(nodes))
        if trial.score.passed:
            passing = trial
            break
        failed_at = k
        k = _next_count(k, len(nodes), trial_s=trial.seconds, left_s=budget.left())
    while passing is not None and len(passing.float_layers) - failed_at > 1 and not budget.exhausted():
        k = (failed_at + len(passing.float_layers)) // 2
        trial = try_mix(nodes[:k])
        trace.append(trial)
        _report(stage, trace, budget, k, len(nodes))
        if trial.score.passed:
            passing = trial
        else:
            failed_at = k
    if passing is not None:
        passing = _prune(passing, try_mix, trace, budget, stage=stage, total=len(nodes))
    best = max(trace, key=lambda t: (t.score.passed, t.score.agreement))
    if passing is None:
        return SearchOutcome(Int8Status.FAILED, None, trace, best)
    if passing.mix_too_slow(fp32_p50_ms):
        return SearchOutcome(Int8Status.SLOWER, None, trace, passing)
    return SearchOutcome(Int8Status.FALLBACK, passing, trace, passing)


def _prune(passing: Trial, try_mix: Callable[[tuple[str, ...]], Trial], trace: list[Trial], budget: Budget, *,
           stage: Stage | None, total: int) -> Trial:
    """Drop the layers the passing mix does not need: the fewest in float, not just the shortest prefix.

    The ranking is a single-layer estimate; layers interact (EfficientNet-Lite1 on ONNX Runtime: the top 4
    pass, the top 3 do not, yet the 3rd, a high-resolution depthwise conv and the costliest in float, may
    not be needed once the 4th is float). Each layer but the last added (without it the prefix failed) is
    tried out, least sensitive first; a mix that still passes without it, agreeing no less (or at
    AIM_AGREEMENT), goes on without it: fewer layers, not fewer points.
    """
    kept = list(passing.float_layers)
    for node in reversed(passing.float_layers[:-1]):
        if budget.exhausted():
            break
        trial = try_mix(tuple(n for n in kept if n != node))
        trace.append(trial)
        _report(stage, trace, budget, len(kept) - 1, total)
        if trial.score.passed and trial.score.agreement >= min(passing.score.agreement, AIM_AGREEMENT):
            kept.remove(node)
            passing = trial
    return passing


def _report(stage: Stage | None, trace: list[Trial], budget: Budget, k: int, total: int) -> None:
    if stage is None:
        return
    best = max(t.score.agreement for t in trace)
    width = 20
    filled = round(width * min(budget.spent() / budget.seconds, 1.0)) if budget.seconds > 0 else width
    stage(f"INT8 fallback {'█' * filled}{'░' * (width - filled)} {k}/{total} layers in float, "
          f"{len(trace) - 1} mixes tried, best agreement {best:.2%}, {max(budget.left(), 0):.0f} s left")
