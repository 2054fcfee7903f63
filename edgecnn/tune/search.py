"""The search over one artifact's knobs: coordinate search from the defaults, under a deadline, then a re-timing.

Knobs come from the artifact's backend (`edgecnn/backends/<name>/tuning.py`): each axis is a list of
partial settings, the runner's default first. From the runner's defaults, every axis in turn tries its values with the other knobs
held at the leader, the best passing setting so far; a candidate that fails the gate is never chosen. A
candidate whose own timing beats the leader's does not take its place on that number (taken minutes apart,
under another load): the leader is timed again right after it, then the candidate again, and it leads only
when the median of those paired ratios says it is faster by more than 3 % (within 3 %, the one changing
fewer knobs: timing noise must not pick knobs).
At the end the default and the winner are timed again side by side -- CONFIRM_ROUNDS rounds, each timing
both in fresh child processes, the order alternating -- and the winner is kept only when the median of the
rounds' winner/default ratios says it is faster: on a busy machine one lucky measurement, or two taken
minutes apart under different load, must not choose a setting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from edgecnn.bench import BenchTarget
from edgecnn.bench.tuned import backend_tuning
from edgecnn.host import load_average
from edgecnn.tune.candidate import Candidate, Gate, evaluate, time_candidate
from edgecnn.tune.settings import TuneSettings

# (target name, candidates done, candidates planned, last candidate)
OnCandidate = Callable[[str, int, int, Candidate], None]


@dataclass
class ArtifactTuning:
    """Everything tried for one artifact and what was chosen."""

    target: BenchTarget
    candidates: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None
    default_p50: float | None = None  # from the back-to-back re-timing when there was one
    tuned_p50: float | None = None
    stopped_by_budget: bool = False
    note: str | None = None
    capabilities: dict[str, Any] = field(default_factory=dict)
    confirm: dict[str, Any] | None = None  # the side-by-side re-timing: ratios, their median, load average

    @property
    def default(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


def plan(target: BenchTarget, *, default_threads: int, cores: int) -> tuple[dict[str, Any], list[list[dict]]]:
    """(the default settings, the axes to sweep) for one artifact on this machine."""
    module = backend_tuning(target.runtime)
    default = {"threads": default_threads}
    if module is None:
        return default, []
    axes = [values for _, values in module.axes(target.precision or "fp32", cores=cores) if len(values) > 1]
    if getattr(module, "USES_THREADS", True) and cores > 1:
        counts = [default_threads] + sorted({cores, max(1, cores // 2), 1} - {default_threads}, reverse=True)
        axes.insert(0, [{"threads": n} for n in counts])
    return default, axes


CONFIRM_ROUNDS = 3  # side-by-side rounds of the final default-vs-winner re-timing
CHALLENGE_RUNS = 2  # re-timings when a sweep candidate challenges the leader: the leader, then the candidate


def planned_count(axes: list[list[dict]]) -> int:
    """Candidates a full sweep evaluates at most: the default, each axis's other values (and their challenge
    re-timings), the final re-timings."""
    return 1 + (1 + CHALLENGE_RUNS) * sum(len(values) - 1 for values in axes) + 2 * CONFIRM_ROUNDS


# Candidates within this fraction of the fastest p50 are a tie (timing noise on a shared machine): the
# one closest to the defaults (fewest knobs changed) wins it.
TIE_MARGIN = 0.03


def fastest_passing(candidates: list[Candidate]) -> Candidate | None:
    """The fastest candidate that passed the gate; of those within TIE_MARGIN of it, the one changing fewest knobs."""
    passing = [c for c in candidates if c.passed and c.p50 is not None and c.role in ("default", "sweep")]
    if not passing:
        return None
    fastest = min(c.p50 for c in passing)
    ties = [c for c in passing if c.p50 <= fastest * (1 + TIE_MARGIN)]
    return min(ties, key=lambda c: (len(c.settings), c.p50))


def search(target: BenchTarget, gate: Gate, settings: TuneSettings, *, deadline: float, default_threads: int,
           cores: int, on_candidate: OnCandidate | None = None) -> ArtifactTuning:
    """Tune one artifact until its axes are done or `deadline` (time.monotonic) would be passed."""
    default_settings, axes = plan(target, default_threads=default_threads, cores=cores)
    module = backend_tuning(target.runtime)
    result = ArtifactTuning(target=target, note=getattr(module, "NOTE", None))
    total = planned_count(axes)
    leader: list[Candidate | None] = [None]  # the best passing setting so far, as side-by-side timing says

    def run(settings_dict: dict[str, Any], role: str = "sweep", gated: Candidate | None = None) -> Candidate:
        timeout = max(30.0, deadline - time.monotonic() + 30.0)
        if gated is None:
            best = leader[0]
            limit = None if best is None else best.p50 * (1 + TIE_MARGIN)  # slower ones cannot win: not gated
            candidate = evaluate(Candidate(settings=settings_dict, role=role), target, gate, settings,
                                 timeout_s=timeout, gate_below_ms=limit)
        else:  # a re-timing: the gate's verdict does not change, the latency is measured again
            candidate = _retime(gated, role, target, settings, timeout)
        result.candidates.append(candidate)
        if on_candidate:
            on_candidate(target.name, len(result.candidates), total, candidate)
        return candidate

    def affordable(count: int) -> bool:
        spent = [c.seconds for c in result.candidates] or [0.0]
        return time.monotonic() + sum(spent) / len(spent) * count <= deadline

    first = run(default_settings, "default")
    leader[0] = first if first.passed and first.p50 is not None else None
    seen = {result.candidates[0].key()}
    for values in axes:
        base = (leader[0] or result.candidates[0]).settings
        for index, value in enumerate(values):
            if index == 0 and not set(value) & set(base):
                continue  # an axis lists the runner's default first: that is `base` itself, already timed
            settings_dict = {**base, **value}
            key = Candidate(settings=settings_dict).key()
            if key in seen:
                continue
            # this candidate, its challenge and the final re-timings (each re-timing about half a candidate)
            if not affordable(1 + CHALLENGE_RUNS + CONFIRM_ROUNDS):
                result.stopped_by_budget = True
                break
            seen.add(key)
            leader[0] = _challenge(run, leader[0], run(settings_dict))
        if result.stopped_by_budget:
            break
    _choose(result, run, affordable, best=leader[0])
    return result


def _challenge(run, leader: Candidate | None, challenger: Candidate) -> Candidate | None:
    """Who leads after `challenger` was timed: it, only when side by side with the leader it is faster.

    A challenger slower than the leader by its own timing is not re-timed (the leader stays: a burst can
    only cost a setting its chance, never choose one). One that looks faster is paired: the leader timed
    again right after it, then the challenger again (the order alternates), and the median of the two
    paired ratios decides, with the tie margin.
    """
    if not challenger.passed or challenger.p50 is None:
        return leader
    if leader is None:
        return challenger
    if challenger.p50 >= leader.p50 * (1 + TIE_MARGIN):
        return leader
    leader_again = run(leader.settings, "pair-leader", gated=leader)
    challenger_again = run(challenger.settings, "pair-challenger", gated=challenger)
    if leader_again.p50 is None or challenger_again.p50 is None:
        return leader
    ratios = [challenger.p50 / leader_again.p50, challenger_again.p50 / leader_again.p50]
    ratio = sum(ratios) / len(ratios)  # the median of two
    fewer_knobs = len(challenger.settings) < len(leader.settings)
    wins = ratio < 1 - TIE_MARGIN or (ratio <= 1 + TIE_MARGIN and fewer_knobs)
    challenger.paired = {"leader": leader.settings, "ratios": [round(r, 4) for r in ratios], "ratio": round(ratio, 4),
                         "leads": wins, "load_average": load_average()}
    return challenger if wins else leader


def _choose(result: ArtifactTuning, run, affordable, *, best: Candidate | None | str = "fastest") -> None:
    """The leader (default: the fastest passing candidate), confirmed against the default side by side when
    time allows."""
    default = result.candidates[0]
    if best == "fastest":
        best = fastest_passing(result.candidates)
    if best is None:
        result.chosen = None  # not even the default passes: nothing is stored for this artifact
        result.default_p50 = default.p50
        return
    if best is default or not default.passed:
        result.chosen, result.default_p50, result.tuned_p50 = best, default.p50, best.p50
        return
    if not affordable(CONFIRM_ROUNDS):
        result.stopped_by_budget = True
        result.chosen, result.default_p50, result.tuned_p50 = best, default.p50, best.p50
        return
    confirm = _side_by_side(run, default, best)
    result.confirm = confirm
    if confirm is None:  # a re-timing failed or the winner's gate did not hold: keep the defaults
        result.chosen, result.default_p50, result.tuned_p50 = default, default.p50, default.p50
        return
    result.default_p50 = confirm["default_p50"]
    if confirm["ratio"] < 1.0:
        result.chosen, result.tuned_p50 = best, confirm["tuned_p50"]
    else:  # the win did not hold up when timed side by side: keep the defaults
        result.chosen, result.tuned_p50 = default, confirm["default_p50"]


def _side_by_side(run, default: Candidate, best: Candidate) -> dict[str, Any] | None:
    """Default and winner timed in CONFIRM_ROUNDS alternating rounds; the median of the paired ratios decides."""
    import os
    import statistics

    load = [load_average()]
    pairs = []
    for index in range(CONFIRM_ROUNDS):
        order = [(default, "confirm-default"), (best, "confirm-tuned")]
        timed = {role: run(candidate.settings, role, gated=candidate) for candidate, role in
                 (order if index % 2 == 0 else order[::-1])}
        if any(c.p50 is None for c in timed.values()) or not timed["confirm-tuned"].passed:
            return None
        pairs.append((timed["confirm-default"].p50, timed["confirm-tuned"].p50))
    load.append(load_average())
    ratios = [tuned / default_p50 for default_p50, tuned in pairs]
    return {"rounds": CONFIRM_ROUNDS, "ratios": [round(r, 4) for r in ratios], "ratio": round(statistics.median(ratios), 4),
            "default_p50": statistics.median(p for p, _ in pairs), "tuned_p50": statistics.median(p for _, p in pairs),
            "load_average": load, "cpus": os.cpu_count(),
            "method": f"{CONFIRM_ROUNDS} rounds, each timing the default and the winner in fresh child processes "
                      "(order alternating); kept when the median of the rounds' winner/default p50 ratios is below 1"}



def _retime(gated: Candidate, role: str, target: BenchTarget, settings: TuneSettings, timeout: float) -> Candidate:
    """`gated` timed again (a fresh child process), keeping its gate verdict."""
    started = time.monotonic()
    candidate = Candidate(settings=dict(gated.settings), role=role, compute_precision=gated.compute_precision,
                          agreement=gated.agreement, max_abs_diff=gated.max_abs_diff, passed=gated.passed,
                          failed_checks=list(gated.failed_checks), gate_precision=gated.gate_precision,
                          applied=gated.applied, runtime_version=gated.runtime_version, gated=gated.gated)
    time_candidate(candidate, target, settings, timeout_s=timeout)
    candidate.seconds = time.monotonic() - started
    return candidate


__all__ = ["ArtifactTuning", "OnCandidate", "fastest_passing", "plan", "planned_count", "search"]
