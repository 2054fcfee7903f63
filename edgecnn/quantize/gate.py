"""The gate an INT8 candidate must pass (verify's int8 thresholds) and how a candidate scores against it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecnn.compare import top1
from edgecnn.thresholds import DEFAULT_THRESHOLDS


@dataclass(frozen=True)
class Gate:
    """verify's int8 pass/fail limits: top-1 drop in points and top-1 agreement with the reference."""

    max_drop: float | None
    min_agreement: float | None

    @classmethod
    def for_int8(cls, *, max_drop: float | None = None, min_agreement: float | None = None) -> "Gate":
        """verify's int8 defaults, with what the user passed to --max-drop / --min-agreement."""
        default = DEFAULT_THRESHOLDS["int8"]
        return cls(max_drop=default.max_drop if max_drop is None else max_drop,
                   min_agreement=default.min_agreement if min_agreement is None else min_agreement)

    def to_dict(self) -> dict:
        return {"max_drop": self.max_drop, "min_agreement": self.min_agreement}

    def words(self) -> str:
        parts = []
        if self.min_agreement is not None:
            parts.append(f"agreement >= {self.min_agreement:.1%}")
        if self.max_drop is not None:
            parts.append(f"top-1 drop <= {self.max_drop:g} pts")
        return " and ".join(parts) or "no limits"


@dataclass(frozen=True)
class Score:
    """One candidate's logits against the reference on the golden set."""

    agreement: float  # fraction of samples whose top-1 matches the reference's
    drop: float | None  # top-1 points lost against the reference (None: labels mean nothing)
    top1: float | None
    logit_mse: float  # mean squared logit difference (the continuous measure sensitivity ranks by)
    passed: bool

    def to_dict(self) -> dict:
        return {"agreement": round(self.agreement, 6), "drop": None if self.drop is None else round(self.drop, 4),
                "top1": None if self.top1 is None else round(self.top1, 4), "logit_mse": float(self.logit_mse),
                "passed": self.passed}


def score(gate: Gate, reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None) -> Score:
    """How `candidate` logits do against `reference` (labels: None or -1 where they mean nothing)."""
    agreement = float(np.mean(reference.argmax(1) == candidate.argmax(1)))
    mse = float(np.mean((reference.astype(np.float64) - candidate) ** 2))
    meaningful = labels is not None and bool(np.all(np.asarray(labels) >= 0))
    accuracy = top1(candidate, labels) if meaningful else None
    drop = top1(reference, labels) - accuracy if meaningful else None
    passed = ((gate.min_agreement is None or agreement >= gate.min_agreement)
              and (gate.max_drop is None or drop is None or drop <= gate.max_drop))
    return Score(agreement=agreement, drop=drop, top1=accuracy, logit_mse=mse, passed=passed)
