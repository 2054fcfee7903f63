"""INT8 for one artifact, decided by measurement: recipe choice, sensitivity, fallback of layers to float.

A backend hands `search_int8` what only it knows (`Int8Plan`: how to write a candidate with some layers
in float, the quantized layers and their SQNR, its runtime); this module scores every candidate on the
golden set through the backend's Runner (the code that runs it on the device), times it on the host,
and decides: full int8 passes; or the fewest most-sensitive layers in float pass and run faster than
fp32; or no int8 is kept (slower than fp32: with a note; nothing passes within the budget: exit 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgecnn.errors import CheckFailedError
from edgecnn.quantize.gate import Gate, Score, score
from edgecnn.quantize.search import AIM_AGREEMENT, Budget, Layer, SearchOutcome, Trial, rank_layers, search_fallback
from edgecnn.quantize.timing import interleaved_p50, is_close

DEFAULT_SEARCH_BUDGET_S = 600.0
RANKING_SAMPLES = 64  # golden samples each single-layer sensitivity measurement runs
TOP_LAYERS = 10  # layers the export report and the manifest's sensitivity table show
_TIMING_S = 1.0  # seconds of timed batch-1 runs per candidate (after 5 warm-up runs)
Stage = Callable[[str], None]


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
    stage: Stage = field(default=lambda message: None)
    # Whether this host's timing may decide (the device has this host's CPU architecture); when not, the
    # candidates are still timed and recorded, and `timing_note` says why the timing did not decide.
    timing_decides: bool = True
    timing_note: str = ""


@dataclass
class Int8Plan:
    """What a backend knows: its runtime, its candidates' files, its quantized layers."""

    runtime: str
    fp32_path: Path
    layers: Callable[[Path], list[Layer]]  # the quantized layers of a full-int8 file, SQNR filled where known
    make: Callable[[Path, tuple[str, ...], Path], Path]  # (full int8 file, nodes kept float, out) -> file
    scratch: Path
    timed: bool = True  # False where the host runtime says nothing about the device's speed (TensorRT)
    untimed_note: str = ""
    no_fallback_reason: str = ""  # set where this backend cannot keep layers in float (make is then unused)
    # (recipe settings, nodes kept float, out) -> file: the chosen mix quantized again by the library itself
    # (ORT nodes_to_exclude, NNCF ignored_scope), its calibration redone without those layers. None: the
    # search's edited candidate is the artifact.
    requantize: Callable[[dict, tuple[str, ...], Path], Path] | None = None


@dataclass
class Recipe:
    """One way to quantize: its label, what it sets, and how to write its full-int8 file."""

    label: str
    settings: dict[str, Any]
    build: Callable[[Path], Path]  # out path -> file written


@dataclass
class Int8Decision:
    """What export keeps: `artifact` (None: no int8 artifact), the recipe, the layers in float, the trace."""

    status: str  # int8 | fallback | slower | unchecked (fallback off and int8 misses the gate)
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

    def manifest_record(self, gate: Gate, budget_s: float) -> dict[str, Any]:
        return {"status": self.status, "recipe": self.recipe, "gate": gate.to_dict(), "timing": self.timing,
                "layers_in_float": self.float_layers, "search_budget_s": budget_s,
                "search_s": round(self.seconds, 2), "fp32_p50_ms": _ms(self.fp32_p50_ms),
                "full_int8_p50_ms": _ms(self.full_int8_p50_ms), "p50_ms": _ms(self.p50_ms), "trace": self.trace,
                "sensitivity": self.sensitivity, "note": self.note}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class _Measure:
    """Scores and times candidate files through the backend's Runner."""

    def __init__(self, request: SearchRequest, plan: Int8Plan):
        self.request, self.plan = request, plan
        self.options = {"input_shape": list(request.input_shape), "precision": "int8"}

    def logits(self, path: Path, inputs: np.ndarray) -> np.ndarray:
        from edgecnn.inference import run_logits

        logits, _ = run_logits(self.plan.runtime, path, inputs, threads=None, batch=32, options=self.options)
        return logits

    def score(self, path: Path, samples: int | None = None) -> Score:
        request = self.request
        n = samples or len(request.inputs)
        labels = None if request.labels is None else request.labels[:n]
        return score(request.gate, request.reference[:n], self.logits(path, request.inputs[:n]), labels)

    def p50_ms(self, path: Path, precision: str = "int8") -> float | None:
        """Median batch-1 latency on this host (perf_counter_ns, 5 warm-up runs, >= 1 s timed)."""
        if not self.plan.timed:
            return None
        from edgecnn.bench.measure import time_invokes
        from edgecnn.inference import load_runner

        runner, batch = load_runner(self.plan.runtime, path, threads=None, batch=1,
                                    options={**self.options, "precision": precision})
        try:
            sample = np.ascontiguousarray(np.repeat(self.request.inputs[:1], batch, axis=0), dtype=np.float32)
            for _ in range(5):
                runner.run(sample)
            samples = time_invokes(lambda: runner.run(sample), iters=None, min_time_ns=int(_TIMING_S * 1e9),
                                   min_iters=10)
        finally:
            runner.close()
        return float(np.median(samples)) / 1e6 / batch

    def settle(self, trial: Trial, fp32_p50: float | None) -> None:
        """A candidate within 10 % of fp32 is timed again side by side with it, so drift does not decide."""
        if trial.interleaved is None and trial.artifact is not None and is_close(trial.p50_ms, fp32_p50):
            self.request.stage(f"INT8: {trial.label} runs within 10 % of fp32; timing both side by side")
            trial.interleaved = interleaved_p50(self.plan.runtime, trial.artifact, self.plan.fp32_path,
                                                self.request.inputs, self.options)

    def trial(self, label: str, path: Path, floats: tuple[str, ...], recipe: dict) -> Trial:
        import time

        started = time.perf_counter()
        result = self.score(path)
        return Trial(label=label, float_layers=floats, score=result, p50_ms=self.p50_ms(path),
                     seconds=time.perf_counter() - started, recipe=recipe, artifact=path)


@dataclass
class _Run:
    """One search's shared state: the request, the full-int8 trial, layer names, fp32 latency, budget."""

    request: SearchRequest
    full: Trial
    names: dict[str, str]
    fp32_p50: float | None
    budget: Budget


def search_int8(request: SearchRequest, plan: Int8Plan, recipes: list[Recipe]) -> Int8Decision:
    """Choose the recipe, then (when int8 misses the gate) the fewest layers to keep in float."""
    budget = Budget(request.budget_s)
    measure = _Measure(request, plan)
    fp32_p50 = measure.p50_ms(plan.fp32_path, "fp32")
    # The fp32 latency the rule "never slower than fp32" compares with; None where this host cannot decide.
    rule = fp32_p50 if request.timing_decides else None
    recipe_trials = _try_recipes(request, measure, recipes, budget, rule_p50=rule)
    # Of the recipes tried, one that passes and beats fp32 first (a recipe is our choice as much as a mix is).
    full = max(recipe_trials, key=lambda t: (t.score.passed and not t.slower_than(rule), t.score.passed,
                                             t.score.agreement))
    layers = plan.layers(full.artifact)
    run = _Run(request, full, {layer.node: layer.user_name for layer in layers}, fp32_p50, budget)
    if full.score.passed:
        measure.settle(full, rule)
    if full.score.passed and full.slower_than(rule):
        # Plain int8 is what was asked for, so it is kept; the rule binds the mixes the search chooses.
        note = (f"int8 passes the gate but runs no faster than fp32 on this host ({_versus(full, fp32_p50)}): "
                "the fp32 artifact may be the better choice here")
        return _decision(run, "int8", recipe_trials, layers, full, note=note)
    if full.score.passed or not request.fallback or not layers or plan.no_fallback_reason:
        status = "int8" if full.score.passed else "unchecked"
        note = "" if full.score.passed or not plan.no_fallback_reason else (
            f"int8 misses the gate (agreement {full.score.agreement:.2%}) and {plan.no_fallback_reason}: "
            "kept as it is, verify will fail it")
        return _decision(run, status, recipe_trials, layers, full, note=note)
    request.stage(f"INT8 misses the gate ({request.gate.words()}): agreement {full.score.agreement:.2%}; "
                  f"ranking {len(layers)} layers by sensitivity")
    subset = min(RANKING_SAMPLES, len(request.inputs))
    base = measure.score(full.artifact, subset)

    def single(nodes: tuple[str, ...]) -> Score:
        path = plan.make(full.artifact, nodes, _candidate_path(plan, full.artifact, "one"))
        return measure.score(path, subset)

    ranking = rank_layers(layers, base, single, budget=budget, stage=request.stage)
    counter = iter(range(1, 10_000))

    def try_mix(nodes: tuple[str, ...]) -> Trial:
        path = plan.make(full.artifact, nodes, _candidate_path(plan, full.artifact, f"mix{next(counter)}"))
        return measure.trial(f"{len(nodes)} layer(s) in float", path, nodes, full.recipe)

    outcome = _settled(measure, search_fallback(ranking, full, try_mix, budget=budget, fp32_p50_ms=rule,
                                                stage=request.stage), rule)
    trace = recipe_trials + outcome.trace[1:]  # outcome.trace[0] is `full`, the best of recipe_trials
    if outcome.status == "passed" and plan.requantize is not None:
        outcome = _requantized(measure, plan, full, outcome, trace=trace, fp32_p50=rule)
    return _finish(run, outcome, trace, ranking)


def _requantized(measure: _Measure, plan: Int8Plan, full: Trial, outcome: SearchOutcome, *, trace: list[Trial],
                 fp32_p50: float | None) -> SearchOutcome:
    """The chosen layers excluded by the library's own quantizer; kept when it passes and is not slower.

    Runs even past the budget (one more calibration): the artifact shipped should be what the library
    writes, not our edit of it, whenever that holds the gate. It is scored and timed like every candidate.
    """
    chosen = outcome.chosen
    measure.request.stage(f"INT8: quantizing again with {len(chosen.float_layers)} layer(s) excluded")
    folder = plan.scratch / "int8-requantized"
    folder.mkdir(parents=True, exist_ok=True)
    path = plan.requantize(full.recipe, chosen.float_layers, folder / f"model{''.join(full.artifact.suffixes)}")
    recipe = {**full.recipe, "requantized": True}
    trial = measure.trial(f"{len(chosen.float_layers)} layer(s) excluded, quantized again", path,
                          chosen.float_layers, recipe)
    trace.append(trial)
    if trial.score.passed:
        measure.settle(trial, fp32_p50)
    if trial.score.passed and not trial.slower_than(fp32_p50):
        return SearchOutcome("passed", trial, outcome.trace, trial)
    return outcome


def _settled(measure: _Measure, outcome: SearchOutcome, fp32_p50: float | None) -> SearchOutcome:
    """The search's passing mix, decided again against fp32 by a side-by-side timing when it was close."""
    candidate = outcome.chosen if outcome.status == "passed" else outcome.best if outcome.status == "slower" else None
    if candidate is None:
        return outcome
    measure.settle(candidate, fp32_p50)
    if candidate.slower_than(fp32_p50):
        return SearchOutcome("slower", None, outcome.trace, candidate)
    return SearchOutcome("passed", candidate, outcome.trace, candidate)


def _versus(trial: Trial, fp32_p50: float) -> str:
    if trial.interleaved:
        side = trial.interleaved
        return f"p50 {side['p50_ms']:.2f} ms vs {side['fp32_p50_ms']:.2f} ms, timed side by side"
    return f"p50 {trial.p50_ms:.2f} ms vs {fp32_p50:.2f} ms"


def _candidate_path(plan: Int8Plan, full: Path, tag: str) -> Path:
    folder = plan.scratch / "int8-candidates"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{tag}{''.join(full.suffixes) or full.suffix}"


def _try_recipes(request: SearchRequest, measure: _Measure, recipes: list[Recipe], budget: Budget, *,
                 rule_p50: float | None) -> list[Trial]:
    """Each recipe in order until one passes at AIM_AGREEMENT and is not slower than fp32 (the first
    always runs; the rest while half the budget is left)."""
    trials: list[Trial] = []
    for index, recipe in enumerate(recipes):
        if index and budget.left() < budget.seconds / 2:
            break
        request.stage(f"INT8 recipe {index + 1}/{len(recipes)}: {recipe.label}")
        folder = measure.plan.scratch / "int8-recipes" / f"r{index}"
        folder.mkdir(parents=True, exist_ok=True)
        path = recipe.build(folder)
        trials.append(measure.trial(f"recipe: {recipe.label}", path, (), {"label": recipe.label, **recipe.settings}))
        last = trials[-1]
        if last.score.passed and last.score.agreement >= AIM_AGREEMENT and not last.slower_than(rule_p50):
            break
    return trials


def _finish(run: _Run, outcome: SearchOutcome, trace: list[Trial], ranking: list[Layer]) -> Int8Decision:
    request, names, fp32_p50 = run.request, run.names, run.fp32_p50
    if outcome.status == "failed":
        best = outcome.best
        tried = ", ".join(names.get(n, n) for n in best.float_layers[:8]) or "none"
        raise CheckFailedError(
            f"int8 misses the gate ({request.gate.words()}) and no mix of layers in float passed within the "
            f"{request.budget_s:g} s search budget: best agreement {best.score.agreement:.2%} with "
            f"{len(best.float_layers)} layer(s) in float ({tried}), {outcome.layers_tried} layers tried; nothing "
            "kept. Raise --search-budget, loosen --min-agreement/--max-drop, or export fp32")
    if outcome.status == "slower":
        chosen = outcome.best
        note = (f"int8 with {len(chosen.float_layers)} layer(s) in float passes the gate but runs slower than fp32 "
                f"on this host ({_versus(chosen, fp32_p50)}): no int8 artifact kept, use fp32")
        return _decision(run, "slower", trace, ranking, chosen, note=note, artifact=None)
    return _decision(run, "fallback", trace, ranking, outcome.chosen)


def _decision(run: _Run, status: str, trace: list[Trial], layers: list[Layer], chosen: Trial, *, note: str = "",
              artifact: Path | None | str = "chosen") -> Int8Decision:
    full, names = run.full, run.names
    ranked = sorted(layers, key=lambda x: (x.gain is None, -(x.gain or 0.0), x.sqnr_db if x.sqnr_db is not None else 1e9))
    floats = [{"user_name": names.get(n, n), "node": n} for n in chosen.float_layers]
    if status == "unchecked" and not note:
        note = (f"int8 misses the gate (agreement {full.score.agreement:.2%}); with the fallback off it is kept "
                "as it is and verify will fail it")
    return Int8Decision(status=status, artifact=chosen.artifact if artifact == "chosen" else artifact,
                        recipe=dict(chosen.recipe or full.recipe), float_layers=floats,
                        trace=[t.to_dict(names) for t in trace], sensitivity=[x.to_dict() for x in ranked[:TOP_LAYERS]],
                        fp32_p50_ms=run.fp32_p50, full_int8_p50_ms=full.p50_ms, seconds=run.budget.spent(),
                        note=note, timing=_timing(run), p50_ms=chosen.p50_ms)


def _timing(run: _Run) -> dict[str, Any]:
    request = run.request
    if run.fp32_p50 is None:
        return {"decides": False, "note": "not timed on this host"}
    faster = None if run.full.p50_ms is None else run.full.p50_ms < run.fp32_p50
    return {"decides": request.timing_decides, "full_int8_faster_than_fp32": faster,
            "note": "" if request.timing_decides else request.timing_note}
