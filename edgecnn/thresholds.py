"""Pass/fail limits shared by verify and the INT8 search: the defaults per precision, and what
--max-drop/--min-agreement/--threshold override. Both read them here; neither imports the other."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable

from edgecnn.errors import BadInputError

THRESHOLD_NAMES = ("max_drop", "min_agreement", "min_cosine", "max_abs_diff")
# Checks that compare against the labels: meaningless when the weights were random.
ACCURACY_CHECKS = frozenset({"drop"})


@dataclass(frozen=True)
class Thresholds:
    """Pass/fail limits for one artifact; None switches a check off."""

    max_drop: float | None = None  # top-1 points the artifact may lose against the reference
    min_agreement: float | None = None  # fraction of samples whose top-1 must match the reference
    min_cosine: float | None = None  # mean cosine similarity of logits
    max_abs_diff: float | None = None  # largest absolute logit difference

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


DEFAULT_THRESHOLDS: dict[str, Thresholds] = {
    "fp32": Thresholds(min_agreement=0.995),
    "fp16": Thresholds(min_agreement=0.995),
    "bf16": Thresholds(min_agreement=0.995),  # an fp32 file run with a bf16 hint (edgecnn tune's gate)
    "int8": Thresholds(max_drop=1.0, min_agreement=0.97),
}


@dataclass
class ThresholdOverrides:
    """What the user set: `everywhere` applies to every precision, `per_precision` wins over it.

    A value of None inside a mapping means "switch this check off"; a missing key keeps the default.
    """

    everywhere: dict[str, float | None] = field(default_factory=dict)
    per_precision: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def for_precision(self, precision: str) -> Thresholds:
        """The thresholds an artifact of `precision` is held to."""
        base = DEFAULT_THRESHOLDS.get(precision.lower(), DEFAULT_THRESHOLDS["fp32"])
        merged = base.to_dict()
        merged.update(self.everywhere)
        merged.update(self.per_precision.get(precision.lower(), {}))
        return Thresholds(**merged)


def check_threshold(name: str, value: float | None) -> float | None:
    """Validate one threshold value (fractions in [0, 1], points and differences >= 0)."""
    if name not in THRESHOLD_NAMES:
        raise BadInputError(f"unknown threshold {name!r}: use one of {', '.join(THRESHOLD_NAMES)}")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadInputError(f"threshold {name} must be a number, got {value!r}")
    value = float(value)
    if name in ("min_agreement", "min_cosine") and not (-1.0 if name == "min_cosine" else 0.0) <= value <= 1.0:
        hint = " (a fraction: 0.97 means 97 %)" if name == "min_agreement" else ""
        raise BadInputError(f"{name.replace('_', '-')} must be within [0, 1]{hint}, got {value:g}")
    if name in ("max_drop", "max_abs_diff") and value < 0:
        raise BadInputError(f"{name.replace('_', '-')} must be >= 0, got {value:g}")
    return value


def parse_threshold_option(text: str) -> tuple[str | None, str, float | None]:
    """'int8.max_drop=2' -> ('int8', 'max_drop', 2.0); 'min_agreement=0.9' -> (None, ...); '=off' -> None."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or not raw.strip():
        raise BadInputError(
            f"--threshold takes [PRECISION.]NAME=VALUE (e.g. int8.max_drop=2, fp32.min_agreement=0.99), got {text!r}"
        )
    precision, dot, name = key.strip().lower().rpartition(".")
    if dot and precision not in DEFAULT_THRESHOLDS:
        raise BadInputError(
            f"--threshold {text!r}: unknown precision {precision!r} (use {', '.join(DEFAULT_THRESHOLDS)})"
        )
    name = name.replace("-", "_")
    raw = raw.strip().lower()
    if raw in ("off", "none"):
        value = None
    else:
        try:
            value = float(raw)
        except ValueError:
            raise BadInputError(f"--threshold {text!r}: {raw!r} is not a number (or 'off')") from None
    return (precision or None), name, check_threshold(name, value)


def build_overrides(*, max_drop: float | None = None, min_agreement: float | None = None,
                    min_cosine: float | None = None, max_abs_diff: float | None = None,
                    thresholds: Iterable[str] = ()) -> ThresholdOverrides:
    """ThresholdOverrides from the CLI's options (flags apply everywhere, --threshold per precision)."""
    overrides = ThresholdOverrides()
    for name, value in (("max_drop", max_drop), ("min_agreement", min_agreement),
                        ("min_cosine", min_cosine), ("max_abs_diff", max_abs_diff)):
        if value is not None:
            overrides.everywhere[name] = check_threshold(name, value)
    for text in thresholds:
        precision, name, value = parse_threshold_option(text)
        if precision is None:
            overrides.everywhere[name] = value
        else:
            overrides.per_precision.setdefault(precision, {})[name] = value
    return overrides


__all__ = ["ACCURACY_CHECKS", "DEFAULT_THRESHOLDS", "THRESHOLD_NAMES", "ThresholdOverrides", "Thresholds",
           "build_overrides", "check_threshold", "parse_threshold_option"]
