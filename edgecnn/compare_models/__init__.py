"""`edgecnn compare`: which model to ship — accuracy × latency × size across models, targets and precisions.

Built on the Python API (edgecnn.api): each candidate (source × target × precision) is exported
(`edgecnn.export`, cached in --out), verified on the user's labelled data (`Bundle.verify`) and benched
here or on devices (`Bundle.bench`, `on=`/`fleet=`). The answer is the Pareto front of accuracy against
p50 latency per device and the most accurate candidate inside the budget.

Modules: results (the typed rows and result; `to_dict()` is `--json`), pareto (the front and the budget
choice, pure), sources (SOURCE and --zoo: load, or train with the recipe, and fingerprint), cache (what
is reused in --out), measure (export, verify, bench of one source on one target), run (`compare`),
page (report.html).
"""

from __future__ import annotations

from edgecnn.compare_models.pareto import best_under_budget, dominates, pareto_front
from edgecnn.compare_models.results import CandidateResult, CompareResult, DeviceAnswer
from edgecnn.compare_models.run import CompareSettings, compare

__all__ = ["CandidateResult", "CompareResult", "CompareSettings", "DeviceAnswer", "best_under_budget", "compare",
           "dominates", "pareto_front"]
