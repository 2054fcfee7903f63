"""Number formatting for tables and pages: milliseconds, megabytes, percentages, speed-ups, counts.

Every function takes None (a number that was not measured) and returns DASH for it, so a table
cell never has to test for it. Digits follow the size of the number: three significant figures
or so, enough to compare rows, never more than the measurement carries.
"""

from __future__ import annotations

DASH = "–"


def format_ms(value: float | None) -> str:
    """A latency in milliseconds: 1,234 / 56.7 / 1.25 / 0.062."""
    if value is None:
        return DASH
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def format_speedup(value: float | None) -> str:
    """A ratio of latencies: 12.5× / 1.25×."""
    if value is None:
        return DASH
    return f"{value:.1f}×" if value >= 10 else f"{value:.2f}×"


def format_mb(value: float | None) -> str:
    """A size in megabytes (no unit): 12.3 / 2.40."""
    if value is None:
        return DASH
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def format_percent(value: float | None) -> str:
    """A value already in percent (top-1): '98.89 %'."""
    return DASH if value is None else f"{value:.2f} %"


def format_points(value: float | None) -> str:
    """A signed difference in percentage points (top-1 drop): '+0.37'."""
    return DASH if value is None else f"{value:+.2f}"


def format_share(value: float | None) -> str:
    """A fraction 0..1 as a percentage (agreement): 0.993 -> '99.3 %'."""
    return DASH if value is None else f"{value * 100:.1f} %"


def human_count(value: float | None) -> str:
    """4_231_976 -> '4.23 M' (for tables; JSON keeps exact integers)."""
    if value is None:
        return DASH
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f}"


__all__ = ["DASH", "format_ms", "format_speedup", "format_mb", "format_percent", "format_points", "format_share",
           "human_count"]
