"""The Pareto front of accuracy against latency, and the best candidate inside a budget. Pure: rows in, rows out.

Only rankable rows count (measured, with top-1 and p50, on a CPU that is the device's own): a failed
candidate has no place on a front, and an emulated device's latency says nothing about the device.

Ties: A dominates B when A is at least as accurate and at least as fast, and strictly better in one of
the two. Two candidates with the same top-1 and the same p50 do not dominate each other: both stay on
the front. The budget choice breaks ties in order: higher top-1, then lower p50, then smaller file, then
the name (so the answer never depends on the order candidates were measured in). Numbers are compared as
stored (top-1 to 3 decimals, latency to 4), so an answer read back from --json is the same answer.
"""

from __future__ import annotations

from typing import Iterable, Optional

from edgecnn.compare_models.results import CandidateResult, DeviceAnswer
from edgecnn.formatting import format_mb, format_ms


def dominates(a: CandidateResult, b: CandidateResult) -> bool:
    """a is at least as accurate and as fast as b, and better in one of them."""
    at_least = a.top1 >= b.top1 and a.p50_ms <= b.p50_ms
    return at_least and (a.top1 > b.top1 or a.p50_ms < b.p50_ms)


def pareto_front(rows: Iterable[CandidateResult]) -> list[CandidateResult]:
    """The rankable rows no other rankable row dominates, fastest first (ties: the more accurate, then name)."""
    ranked = [row for row in rows if row.rankable]
    front = [row for row in ranked if not any(dominates(other, row) for other in ranked if other is not row)]
    return sorted(front, key=lambda row: (row.p50_ms, -row.top1, row.name))


def fits(row: CandidateResult, max_latency_ms: Optional[float], max_size_mb: Optional[float]) -> bool:
    """Inside the budget: p50 at most --max-latency, file at most --max-size (an unset limit always fits)."""
    if max_latency_ms is not None and (row.p50_ms is None or row.p50_ms > max_latency_ms):
        return False
    return max_size_mb is None or (row.size_mb is not None and row.size_mb <= max_size_mb)


def _choice_key(row: CandidateResult):
    return (-row.top1, row.p50_ms, row.size_mb if row.size_mb is not None else float("inf"), row.name)


def best_under_budget(rows: Iterable[CandidateResult], *, max_latency_ms: Optional[float] = None,
                      max_size_mb: Optional[float] = None) -> Optional[CandidateResult]:
    """The most accurate rankable row inside the budget (ties as the module says), or None."""
    inside = [row for row in rows if row.rankable and fits(row, max_latency_ms, max_size_mb)]
    return min(inside, key=_choice_key) if inside else None


def budget_text(max_latency_ms: Optional[float], max_size_mb: Optional[float]) -> str:
    parts = ([f"p50 <= {max_latency_ms:g} ms"] if max_latency_ms is not None else []) + (
        [f"size <= {max_size_mb:g} MB"] if max_size_mb is not None else [])
    return " and ".join(parts)


def answer_for_device(device: str, rows: list[CandidateResult], *, max_latency_ms: Optional[float] = None,
                      max_size_mb: Optional[float] = None) -> DeviceAnswer:
    """The front and the choice on one device, and the one line that says what to ship there."""
    rows = [row for row in rows if row.device == device]
    emulated = next((row.emulated for row in rows if row.emulated), None)
    budget = budget_text(max_latency_ms, max_size_mb)
    if emulated:
        # Its latency is another CPU's: never ranked on speed. Accuracy and size still hold.
        accurate = [row for row in rows if row.measured and row.top1 is not None
                    and fits(row, None, max_size_mb)]
        best = min(accurate, key=lambda r: (-r.top1, r.size_mb or 0.0, r.name)) if accurate else None
        line = (f"{device}: emulated CPU, latency not ranked ({emulated}); most accurate"
                + (f" within size <= {max_size_mb:g} MB" if max_size_mb is not None else "")
                + (f": {best.name}, top-1 {best.top1:.2f} %" if best else ": none measured"))
        return DeviceAnswer(device=device, front=[], choice=None, line=line, emulated=emulated)
    front = pareto_front(rows)
    choice = best_under_budget(rows, max_latency_ms=max_latency_ms, max_size_mb=max_size_mb)
    if choice is not None:
        line = ship_line(choice) + (f" (best inside {budget})" if budget else " (most accurate; no budget given)")
    elif not any(row.rankable for row in rows):
        line = f"nothing to ship on {device}: no candidate was measured there"
    else:
        fastest = front[0]
        line = (f"nothing fits {budget} on {device}: the fastest is {fastest.name} at p50 "
                f"{format_ms(fastest.p50_ms)} ms, {format_mb(fastest.size_mb)} MB")
    return DeviceAnswer(device=device, front=[row.name for row in front],
                        choice=choice.name if choice else None, line=line)


def ship_line(row: CandidateResult) -> str:
    """'ship mobilenet_v2 x86 int8: top-1 98.52 % (-0.37 pts), p50 1.29 ms, 2.74 MB on DEVICE'."""
    # drop is points lost (positive); shown as the change, and never as "-0.00"
    drop = f" ({(-row.drop or 0.0) + 0.0:+.2f} pts vs fp32)" if row.drop is not None and row.precision != "fp32" else ""
    return (f"ship {row.name}: top-1 {row.top1:.2f} %{drop}, p50 {format_ms(row.p50_ms)} ms, "
            f"{format_mb(row.size_mb)} MB on {row.device}")


def answers(rows: list[CandidateResult], *, max_latency_ms: Optional[float] = None,
            max_size_mb: Optional[float] = None) -> list[DeviceAnswer]:
    """One answer per device, in the order the devices first appear."""
    devices = list(dict.fromkeys(row.device for row in rows))
    return [answer_for_device(device, rows, max_latency_ms=max_latency_ms, max_size_mb=max_size_mb)
            for device in devices]


__all__ = ["answer_for_device", "answers", "best_under_budget", "budget_text", "dominates", "fits",
           "pareto_front", "ship_line"]
