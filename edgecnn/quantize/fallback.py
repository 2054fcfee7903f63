"""INT8 for one artifact, decided by measurement: recipe choice, sensitivity, fallback of layers to float.

A backend declares what only it knows (`Int8Method`: how to write each recipe's full-int8 file and a
candidate with some layers in float, the quantized layers and their SQNR, its runtime); this module
scores every candidate on the golden set and times it through the `Measure` it is handed (the Runner
that runs it on the device, bench's timing), and decides: full int8 passes; or the fewest most-sensitive
layers in float pass and run faster than fp32; or no int8 is kept (slower than fp32: with a note;
nothing passes within the budget: exit 1). It imports no runner, bench or verify code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import CheckFailedError
from edgecnn.quantize.gate import Gate, Score, score
from edgecnn.quantize.method import Candidate, Int8Job, Int8Method, Measure, Recipe, RecipeUnavailable
from edgecnn.quantize.search import (
    AIM_AGREEMENT, MIX_MIN_SPEEDUP, Budget, Int8Status, Layer, SearchOutcome, Trial, by_gain_per_ms, float_cap,
    rank_layers, search_fallback,
)
from edgecnn.stages import Stage, quiet

DEFAULT_SEARCH_BUDGET_S = 600.0
RANKING_SAMPLES = 64  # golden samples each single-layer sensitivity measurement runs
TOP_LAYERS = 10  # layers the export report and the manifest's sensitivity table show
PARITY_BATCH = 32  # batch the candidates are scored at
COSTED_LAYERS = 6  # the most sensitive layers whose cost in float is timed (side by side with full int8)
COST_FLOOR = 0.02  # a layer's cost counts as at least this share of full int8's p50 (timing noise)


@dataclass
class SearchRequest:
    """What the search is held to and measured on."""

    gate: Gate
    inputs: np.ndarray  # the golden set
    reference: np.ndarray  # its reference logits
    labels: np.ndarray | None
    input_shape: tuple[int, ...]
    budget_s: float = DEFAULT_SEARCH_BUDGET_S
    fallback: bool = True
    stage: Stage = quiet
    # Whether this host's timing may decide (the device has this host's CPU architecture); when not, the
    # candidates are still timed and recorded, and `timing_note` says why the timing did not decide.
    timing_decides: bool = True
    timing_note: str = ""


@dataclass
class Int8Decision:
    """What export keeps: `artifact` (None: no int8 artifact), the recipe, the layers in float, the trace."""

    status: str  # an Int8Status: INT8, FALLBACK, SLOWER or UNCHECKED (FAILED raises instead)
    artifact: Path | None
    recipe: dict
    float_layers: list[dict]
    trace: list[dict]
    sensitivity: list[dict]
    fp32_p50_ms: float | None
    full_int8_p50_ms: float | None
    seconds: float
    note: str = ""

    timing: dict = field(default_factory=dict)  # {"decides": bool, "note": why not}
    p50_ms: float | None = None  # the kept artifact's (chosen trial's) p50 on this host
    entry: dict = field(default_factory=dict)  # what the chosen candidate's manifest entry records

    def manifest_record(self, gate: Gate, budget_s: float) -> dict[str, Any]:
        return {"status": self.status, "recipe": self.recipe, "gate": gate.to_dict(), "timing": self.timing,
                "layers_in_float": self.float_layers, "search_budget_s": budget_s,
                "search_s": round(self.seconds, 2), "fp32_p50_ms": _ms(self.fp32_p50_ms),
                "full_int8_p50_ms": _ms(self.full_int8_p50_ms), "p50_ms": _ms(self.p50_ms), "trace": self.trace,
                "sensitivity": self.sensitivity, "note": self.note}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class _Measure:
    """Scores and times candidate files of one method through the `Measure` the search was handed."""

    def __init__(self, request: SearchRequest, method: Int8Method, job: Int8Job, measure: Measure):
        self.request, self.method, self.job, self.measure = request, method, job, measure
        self.runtime, self.fp32_path, self.timed = method.runtime, job.fp32_path, method.timed

    def score(self, path: Path, recipe: dict, samples: int | None = None) -> Score:
        """Agreement and drop on the search part, in the arithmetic the method names for this recipe."""
        request = self.request
        n = samples or len(request.inputs)
        labels = None if request.labels is None else request.labels[:n]
        options = self.method.scoring(self.job, recipe)["options"]
        logits = self.measure.logits(self.runtime, path, request.inputs[:n], precision="int8", options=options)
        return score(request.gate, request.reference[:n], logits, labels)

    def p50_ms(self, path: Path, precision: str = "int8") -> float | None:
        """Median batch-1 latency on this host, or None where this host's timing says nothing."""
        if not self.timed:
            return None
        return self.measure.p50_ms(self.runtime, path, self.request.inputs[:1], precision=precision)

    def settle(self, trial: Trial, fp32_p50: float | None) -> None:
        """Time a passing candidate side by side with fp32 before "slower than fp32" decides anything.

        Two timings minutes apart say nothing on a busy machine (fp32 7.4 ms and int8 24.6 ms during an
        export, 9.2 and 7.4 ms quietly afterwards); interleaved rounds see the same load, and the decision
        is taken on their paired ratios.
        """
        if fp32_p50 is None or trial.interleaved is not None or trial.artifact is None or not trial.score.passed:
            return
        self.request.stage(f"INT8: timing {trial.label} side by side with fp32")
        trial.interleaved = self.measure.side_by_side(self.runtime, trial.artifact, self.fp32_path,
                                                      self.request.inputs[:1])

    def trial(self, label: str, candidate: Candidate, floats: tuple[str, ...], recipe: dict) -> Trial:
        started = time.perf_counter()
        result = self.score(candidate.path, recipe)
        return Trial(label=label, float_layers=floats, score=result, p50_ms=self.p50_ms(candidate.path),
                     seconds=time.perf_counter() - started, recipe=recipe, artifact=candidate.path,
                     entry=dict(candidate.entry))


@dataclass
class _Run:
    """One search's shared state: the request, the full-int8 trial, layer names, fp32 latency, budget."""

    request: SearchRequest
    full: Trial
    names: dict[str, str]
    fp32_p50: float | None
    budget: Budget

    @property
    def rule_p50(self) -> float | None:
        """The fp32 p50 the rule "never slower than fp32" compares with; None where this host cannot decide."""
        return self.fp32_p50 if self.request.timing_decides else None


def search_int8(request: SearchRequest, method: Int8Method, job: Int8Job, measure: Measure) -> Int8Decision:
    """Choose the recipe, then (when int8 misses the gate) the fewest layers to keep in float."""
    budget = Budget(request.budget_s)
    meter = _Measure(request, method, job, measure)
    fp32_p50 = meter.p50_ms(job.fp32_path, "fp32")
    # The fp32 latency the rule "never slower than fp32" compares with; None where this host cannot decide.
    rule = fp32_p50 if request.timing_decides else None
    recipe_trials = _try_recipes(request, meter, method, job, budget=budget, rule_p50=rule)
    full = best_recipe(recipe_trials, rule)
    if not full.score.passed and full.recipe.get("distilled"):
        # Distilled weights are tuned together, each layer's around its neighbours' int8 noise: keeping some of
        # them in float breaks that (a test net with an outlier channel fell from 77 % to 42 % agreement), so
        # layers are kept in float from the best plain recipe.
        full = best_recipe([t for t in recipe_trials if not t.recipe.get("distilled")], rule)
    layers = method.layers(job, full.artifact)
    run = _Run(request, full, {layer.node: layer.user_name for layer in layers}, fp32_p50, budget)
    if full.score.passed:
        meter.settle(full, rule)
    if full.score.passed and full.slower_than(rule):
        # Plain int8 is what was asked for, so it is kept; the rule binds the mixes the search chooses.
        note = (f"int8 passes the gate but runs no faster than fp32 on this host ({_versus(full, fp32_p50)}): "
                "the fp32 artifact may be the better choice here")
        return _decision(run, Int8Status.INT8, recipe_trials, layers, full, note=note)
    if full.score.passed or not request.fallback or not layers or method.no_fallback_reason:
        status = Int8Status.INT8 if full.score.passed else Int8Status.UNCHECKED
        note = "" if full.score.passed or not method.no_fallback_reason else (
            f"int8 misses the gate (agreement {full.score.agreement:.2%}) and {method.no_fallback_reason}: "
            "kept as it is, verify will fail it")
        return _decision(run, status, recipe_trials, layers, full, note=note)
    return _fall_back(run, meter, method, job, recipe_trials=recipe_trials, layers=layers)


def best_recipe(trials: list[Trial], rule_p50: float | None) -> Trial:
    """Of the recipes tried, one that passes and beats fp32 first (a recipe is our choice as much as a mix is),
    then the higher agreement, then the lower logit error: on 100 photos agreements often tie (Lite2 for x86:
    three recipes at 98 %), and the logit error is the finer measure of the same quantization."""
    def key(trial: Trial):
        mse = trial.score.logit_mse
        return (trial.score.passed and not trial.slower_than(rule_p50), trial.score.passed, trial.score.agreement,
                -mse if mse is not None else float("-inf"))

    return max(trials, key=key)


def _fall_back(run: _Run, meter: _Measure, method: Int8Method, job: Int8Job, *, recipe_trials: list[Trial],
               layers: list[Layer]) -> Int8Decision:
    """Rank the layers by sensitivity, then search the fewest to keep in float (then quantize again)."""
    request, full, budget, rule = run.request, run.full, run.budget, run.rule_p50
    request.stage(f"INT8 misses the gate ({request.gate.words()}): agreement {full.score.agreement:.2%}; "
                  f"ranking {len(layers)} layers by sensitivity")
    subset = min(RANKING_SAMPLES, len(request.inputs))
    base = meter.score(full.artifact, full.recipe, subset)
    source = Candidate(full.artifact, full.entry)

    def single(nodes: tuple[str, ...]) -> Score:
        candidate = method.keep_float(job, source, nodes, _candidate_path(job, full.artifact, "one"))
        return meter.score(candidate.path, full.recipe, subset)

    ranking = rank_layers(layers, base, single, budget=budget, stage=request.stage)
    if meter.timed and request.timing_decides:
        ranking = _by_cost(meter, method, job, full, ranking=ranking, budget=budget)
    counter = iter(range(1, 10_000))

    def try_mix(nodes: tuple[str, ...]) -> Trial:
        candidate = method.keep_float(job, source, nodes, _candidate_path(job, full.artifact, f"mix{next(counter)}"))
        return meter.trial(f"{len(nodes)} layer(s) in float", candidate, nodes, full.recipe)

    outcome = _settled(meter, search_fallback(ranking, full, try_mix, budget=budget, fp32_p50_ms=rule,
                                              stage=request.stage, max_layers=float_cap(len(layers))), rule)
    trace = recipe_trials + outcome.trace[1:]  # outcome.trace[0] is `full`, the best of recipe_trials
    if outcome.status == Int8Status.FALLBACK and method.requantizes:
        outcome = _requantized(meter, method, job, full, outcome, trace=trace, fp32_p50=rule)
    return _finish(run, outcome, trace, ranking)


def _by_cost(meter: _Measure, method: Int8Method, job: Int8Job, full: Trial, *, ranking: list[Layer],
             budget: Budget) -> list[Layer]:
    """The top of the ranking reordered by gain per millisecond: each of the COSTED_LAYERS most sensitive
    layers is kept alone in float and timed side by side with full int8 (alternating rounds, paired ratio, as
    every speed decision), while a quarter of the budget is left."""
    top = [layer for layer in ranking[:COSTED_LAYERS] if (layer.gain or 0.0) > 0.0]
    if len(top) < 2:
        return ranking
    source, base_ms = Candidate(full.artifact, full.entry), None
    for index, layer in enumerate(top):
        if budget.left() < budget.seconds / 4:
            break
        meter.request.stage(f"INT8: timing {layer.user_name} in float side by side with full int8 "
                            f"({index + 1}/{len(top)})")
        candidate = method.keep_float(job, source, (layer.node,), _candidate_path(job, full.artifact, f"cost{index}"))
        side = meter.measure.side_by_side(meter.runtime, candidate.path, full.artifact, meter.request.inputs[:1])
        base_ms = side["fp32_p50_ms"]  # the second file timed: full int8 here
        layer.cost_ms = (side["ratio"] - 1.0) * base_ms
    if base_ms is None:
        return ranking
    return by_gain_per_ms(ranking, COST_FLOOR * base_ms)


def _requantized(meter: _Measure, method: Int8Method, job: Int8Job, full: Trial, outcome: SearchOutcome, *,
                 trace: list[Trial], fp32_p50: float | None) -> SearchOutcome:
    """The chosen layers excluded by the library's own quantizer; kept when it passes and is not slower.

    Runs even past the budget (one more calibration): the artifact shipped should be what the library
    writes, not our edit of it, whenever that holds the gate. It is scored and timed like every candidate.
    """
    chosen = outcome.chosen
    meter.request.stage(f"INT8: quantizing again with {len(chosen.float_layers)} layer(s) excluded")
    folder = job.scratch / "int8-requantized"
    folder.mkdir(parents=True, exist_ok=True)
    candidate = method.requantize(job, full.recipe, chosen.float_layers,
                                  folder / f"model{''.join(full.artifact.suffixes)}")
    recipe = {**full.recipe, "requantized": True}
    trial = meter.trial(f"{len(chosen.float_layers)} layer(s) excluded, quantized again", candidate,
                        chosen.float_layers, recipe)
    trace.append(trial)
    if trial.score.passed:
        meter.settle(trial, fp32_p50)
    if trial.score.passed and not trial.mix_too_slow(fp32_p50):
        return SearchOutcome(Int8Status.FALLBACK, trial, outcome.trace, trial)
    return outcome


def _settled(measure: _Measure, outcome: SearchOutcome, fp32_p50: float | None) -> SearchOutcome:
    """The search's passing mix, decided again against fp32 by a side-by-side timing when it was close."""
    candidate = {Int8Status.FALLBACK: outcome.chosen, Int8Status.SLOWER: outcome.best}.get(outcome.status)
    if candidate is None:
        return outcome
    measure.settle(candidate, fp32_p50)
    if candidate.mix_too_slow(fp32_p50):
        return SearchOutcome(Int8Status.SLOWER, None, outcome.trace, candidate)
    return SearchOutcome(Int8Status.FALLBACK, candidate, outcome.trace, candidate)


def _versus(trial: Trial, fp32_p50: float) -> str:
    if trial.interleaved:
        side = trial.interleaved
        return f"p50 {side['p50_ms']:.2f} ms vs {side['fp32_p50_ms']:.2f} ms, timed side by side"
    return f"p50 {trial.p50_ms:.2f} ms vs {fp32_p50:.2f} ms"


def _candidate_path(job: Int8Job, full: Path, tag: str) -> Path:
    folder = job.scratch / "int8-candidates"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{tag}{''.join(full.suffixes) or full.suffix}"


def _try_recipes(request: SearchRequest, meter: _Measure, method: Int8Method, job: Int8Job, *, budget: Budget,
                 rule_p50: float | None) -> list[Trial]:
    """Each recipe in order until one passes at AIM_AGREEMENT and is not slower than fp32 (the first
    always runs; the rest while half the budget is left)."""
    trials: list[Trial] = []
    recipes: list[Recipe] = method.recipes(job)
    for index, recipe in enumerate(recipes):
        if index and budget.left() < budget.seconds / 2:
            break
        request.stage(f"INT8 recipe {index + 1}/{len(recipes)}: {recipe.label}")
        folder = job.scratch / "int8-recipes" / f"r{index}"
        folder.mkdir(parents=True, exist_ok=True)
        job.search_seconds_left = budget.left()
        try:
            candidate = method.write(job, recipe, folder)
        except RecipeUnavailable as why:  # e.g. a model torch.fx cannot trace: said, and the search goes on
            request.stage(f"INT8 recipe {recipe.label}: {why}")
            job.warnings.append(f"int8 recipe '{recipe.label}' not tried: {why}")
            continue
        trials.append(meter.trial(f"recipe: {recipe.label}", candidate, (), {"label": recipe.label, **recipe.settings}))
        last = trials[-1]
        meter.settle(last, rule_p50)
        if last.score.passed and last.score.agreement >= AIM_AGREEMENT and not last.slower_than(rule_p50):
            break
    return trials


def _finish(run: _Run, outcome: SearchOutcome, trace: list[Trial], ranking: list[Layer]) -> Int8Decision:
    request, names, fp32_p50 = run.request, run.names, run.fp32_p50
    if outcome.status == Int8Status.FAILED:
        best = outcome.best
        tried = ", ".join(names.get(n, n) for n in best.float_layers[:8]) or "none"
        raise CheckFailedError(
            f"int8 misses the gate ({request.gate.words()}) and no mix of layers in float passed within the "
            f"{request.budget_s:g} s search budget: best agreement {best.score.agreement:.2%} with "
            f"{len(best.float_layers)} layer(s) in float ({tried}), {outcome.layers_tried} layers tried"
            f"{_capped(outcome, len(ranking))}; nothing kept. Raise --search-budget, loosen "
            "--min-agreement/--max-drop, or export fp32")
    if outcome.status == Int8Status.SLOWER:
        chosen = outcome.best
        note = (f"int8 with {len(chosen.float_layers)} layer(s) in float passes the gate but runs slower than fp32 "
                f"or less than {MIX_MIN_SPEEDUP:.0%} faster on this host ({_versus(chosen, fp32_p50)}): no int8 "
                "artifact kept, use fp32")
        return _decision(run, Int8Status.SLOWER, trace, ranking, chosen, note=note, artifact=None)
    return _decision(run, Int8Status.FALLBACK, trace, ranking, outcome.chosen)


def _capped(outcome: SearchOutcome, layers: int) -> str:
    cap = float_cap(layers)
    if outcome.layers_tried < min(cap, layers):
        return ""
    return f" (at most {cap} of the {layers} quantized layers may stay float: more is an fp32 model, not int8)"


def _decision(run: _Run, status: str, trace: list[Trial], layers: list[Layer], chosen: Trial, *, note: str = "",
              artifact: Path | None | str = "chosen") -> Int8Decision:
    full, names = run.full, run.names
    ranked = sorted(layers, key=lambda x: (x.gain is None, -(x.gain or 0.0), x.sqnr_db if x.sqnr_db is not None else 1e9))
    floats = [{"user_name": names.get(n, n), "node": n} for n in chosen.float_layers]
    if status == Int8Status.UNCHECKED and not note:
        note = (f"int8 misses the gate (agreement {full.score.agreement:.2%}); with the fallback off it is kept "
                "as it is and verify will fail it")
    return Int8Decision(status=status, artifact=chosen.artifact if artifact == "chosen" else artifact,
                        recipe=dict(chosen.recipe or full.recipe), float_layers=floats,
                        trace=[t.to_dict(names) for t in trace], sensitivity=[x.to_dict() for x in ranked[:TOP_LAYERS]],
                        fp32_p50_ms=run.fp32_p50, full_int8_p50_ms=full.p50_ms, seconds=run.budget.spent(),
                        note=note, timing=_timing(run), p50_ms=chosen.p50_ms, entry=dict(chosen.entry))


def _timing(run: _Run) -> dict[str, Any]:
    request = run.request
    if run.fp32_p50 is None:
        return {"decides": False, "note": "not timed on this host"}
    faster = None if run.full.p50_ms is None else run.full.p50_ms < run.fp32_p50
    return {"decides": request.timing_decides, "full_int8_faster_than_fp32": faster,
            "note": "" if request.timing_decides else request.timing_note}
