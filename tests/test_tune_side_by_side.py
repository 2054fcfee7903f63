"""tune keeps a winner only when it holds side by side with the default: alternating rounds, each timing
both, decided on the median of the paired ratios (a busy machine slows both files of a round alike)."""

from __future__ import annotations

import pytest

from edgecnn.tune.candidate import Candidate
from edgecnn.tune.search import CONFIRM_ROUNDS, ArtifactTuning, _choose


def _candidate(settings: dict, p50: float, role: str = "sweep") -> Candidate:
    return Candidate(settings=settings, latency_ms={"p50": p50, "p90": p50, "p99": p50}, passed=True, role=role,
                     gated=True)


@pytest.mark.parametrize("round_p50s,kept", [
    # (default, winner) per round. The load rises through the rounds (3x): each round still sees the winner
    # faster, so it is kept, though its last p50 is slower than the default's first.
    ([(2.0, 1.6), (4.0, 3.2), (6.0, 4.8)], "winner"),
    # The sweep's win was drift: side by side the winner is slower in two rounds of three.
    ([(2.0, 2.2), (2.0, 1.9), (2.0, 2.3)], "default"),
])
def test_the_paired_ratio_decides(round_p50s, kept):
    default, winner = _candidate({"threads": 2}, 3.0, "default"), _candidate({"threads": 1}, 1.0)
    result = ArtifactTuning(target=None, candidates=[default, winner])
    timings = iter(p for pair in round_p50s for p in (pair if round_p50s.index(pair) % 2 == 0 else pair[::-1]))
    calls = []

    def run(settings, role="sweep", gated=None):
        calls.append(role)
        candidate = _candidate(dict(settings), next(timings), role)
        result.candidates.append(candidate)
        return candidate

    _choose(result, run, lambda count: True)
    assert len(calls) == 2 * CONFIRM_ROUNDS
    assert calls[:2] == ["confirm-default", "confirm-tuned"] and calls[2:4] == ["confirm-tuned", "confirm-default"]
    assert (result.chosen is winner) is (kept == "winner") and (result.chosen is default) is (kept == "default")
    confirm = result.confirm
    assert confirm["rounds"] == CONFIRM_ROUNDS and len(confirm["ratios"]) == CONFIRM_ROUNDS
    assert (confirm["ratio"] < 1) is (kept == "winner") and len(confirm["load_average"]) == 2


@pytest.mark.parametrize("retimes,leads", [
    # (leader again, challenger again). The challenger's sweep timing (1.0 ms) beat the leader's (2.0 ms,
    # minutes earlier): side by side it holds (0.5 and 0.55 of the leader): it leads.
    ((2.0, 1.1), True),
    # The load fell between the leader's timing and the challenger's: side by side they are even (1.0 ms
    # each, ratio 1.0 within the 3 % tie margin), so the leader, changing fewer knobs, stays.
    ((1.0, 1.0), False),
])
def test_a_sweep_candidate_leads_only_when_faster_side_by_side(retimes, leads):
    from edgecnn.tune.search import _challenge

    leader = _candidate({"threads": 2}, 2.0, "default")
    challenger = _candidate({"threads": 2, "execution_mode": "parallel"}, 1.0)
    timings, calls = iter(retimes), []

    def run(settings, role="sweep", gated=None):
        calls.append((role, gated))
        return _candidate(dict(settings), next(timings), role)

    assert (_challenge(run, leader, challenger) is challenger) is leads
    assert calls == [("pair-leader", leader), ("pair-challenger", challenger)]  # re-timed, gate verdicts kept
    assert challenger.paired["leads"] is leads and len(challenger.paired["ratios"]) == 2
    assert challenger.to_dict()["paired_with_leader"]["ratio"] == challenger.paired["ratio"]


def test_a_sweep_candidate_slower_by_its_own_timing_is_not_re_timed():
    from edgecnn.tune.search import _challenge

    leader = _candidate({"threads": 2}, 1.0, "default")
    slower = _candidate({"threads": 1}, 1.5)
    failed = Candidate(settings={"threads": 1, "x": 1}, latency_ms={"p50": 0.1, "p90": 0.1, "p99": 0.1}, passed=False)

    def run(*args, **kwargs):
        raise AssertionError("no re-timing")

    assert _challenge(run, leader, slower) is leader and _challenge(run, leader, failed) is leader
    assert _challenge(run, None, slower) is slower  # no leader yet (the default failed its gate)
