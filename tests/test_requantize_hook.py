"""The shared INT8 loop's last step: the chosen mix quantized again by the library (layers excluded).

The re-quantized file replaces the search's edited candidate only when it passes the gate and is not
slower than fp32; otherwise the edited candidate stays, and either way the trace records the attempt.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from edgecnn.quantize import Candidate, Int8Method, Recipe
from edgecnn.quantize.fallback import AIM_AGREEMENT, Budget, _requantized, _try_recipes
from edgecnn.quantize.gate import Score
from edgecnn.quantize.search import SearchOutcome, Trial


def _trial(label: str, nodes: tuple[str, ...], agreement: float, p50: float, path: Path, recipe=None) -> Trial:
    score = Score(agreement=agreement, drop=0.0, top1=None, logit_mse=0.1, passed=agreement >= 0.97)
    return Trial(label=label, float_layers=nodes, score=score, p50_ms=p50, seconds=0.0,
                 recipe=recipe or {"label": "minmax"}, artifact=path)


class _FakeMeasure:
    """Scores a re-quantized file as the test says (the real one runs it in its Runner)."""

    def __init__(self, agreement: float, p50: float):
        self.agreement, self.p50 = agreement, p50
        self.request = SimpleNamespace(stage=lambda message: None)

    def trial(self, label, candidate, floats, recipe):
        return _trial(label, floats, self.agreement, self.p50, candidate.path, recipe)

    def settle(self, trial, fp32_p50):  # the real one times a close call again; here the timing is as given
        pass


@pytest.mark.parametrize("agreement,p50,kept", [(0.99, 2.0, "requantized"), (0.95, 2.0, "edited"),
                                                (0.99, 11.0, "edited")])
def test_requantized_mix_is_kept_only_when_it_passes_and_is_faster_than_fp32(tmp_path, agreement, p50, kept):
    calls = []

    class Requantizing(Int8Method):
        requantizes = True

        def requantize(self, job, recipe: dict, nodes: tuple[str, ...], out: Path) -> Candidate:
            calls.append((recipe["label"], nodes, out.name))
            out.write_text("requantized")
            return Candidate(out)

    job = SimpleNamespace(scratch=tmp_path)
    full = _trial("full", (), 0.9, 1.0, tmp_path / "model.int8.onnx")
    edited = _trial("2 layer(s) in float", ("a", "b"), 0.98, 3.0, tmp_path / "mix2.onnx")
    outcome = SearchOutcome("fallback", edited, [full, edited], edited)
    trace = list(outcome.trace)
    result = _requantized(_FakeMeasure(agreement, p50), Requantizing(), job, full, outcome, trace=trace, fp32_p50=10.0)
    assert calls == [("minmax", ("a", "b"), "model.int8.onnx")]
    assert len(trace) == 3 and trace[-1].recipe["requantized"] is True  # the attempt is in the trace either way
    if kept == "requantized":
        assert result.chosen is trace[-1] and result.chosen.artifact.read_text() == "requantized"
    else:
        assert result.chosen is edited


class _RecipeMeasure:
    """Scores each recipe's file by the agreement its name carries (the real one runs it)."""

    def __init__(self, p50: float = 1.0):
        self.p50 = p50
        self.request = SimpleNamespace(stage=lambda message: None)

    def trial(self, label, candidate, floats, recipe):
        return _trial(label, floats, float(candidate.path.read_text()), self.p50, candidate.path, recipe)

    def settle(self, trial, fp32_p50):
        """The side-by-side timing agrees with the first one here (the close-call tests cover the other case)."""


@pytest.mark.parametrize("agreements,p50,built", [
    ((0.99, 0.999), 1.0, 1),      # passes at the aim: the next recipe is not even built
    ((0.973, 0.99), 1.0, 2),      # passes below the aim: the next is measured, the better one kept
    ((0.973, 0.95), 1.0, 2),      # the next is worse (search_int8 then keeps the first)
    ((0.99, 0.98), 20.0, 2),      # at the aim but slower than fp32: the next is measured too
])
def test_recipes_are_measured_until_one_passes_at_the_aim(tmp_path, agreements, p50, built):
    assert AIM_AGREEMENT > 0.97  # above the default gate, so "passes" alone does not stop the measuring

    class Recipes(Int8Method):  # each recipe's file carries the agreement it will score
        def recipes(self, job):
            return [Recipe(label=f"r{index}", settings={"agreement": a}) for index, a in enumerate(agreements)]

        def write(self, job, recipe, folder: Path) -> Candidate:
            (folder / "model.int8.onnx").write_text(str(recipe.settings["agreement"]))
            return Candidate(folder / "model.int8.onnx")

    request = SimpleNamespace(stage=lambda message: None)
    trials = _try_recipes(request, _RecipeMeasure(p50), Recipes(), SimpleNamespace(scratch=tmp_path),
                          budget=Budget(600.0), rule_p50=10.0)
    assert [t.score.agreement for t in trials] == list(agreements[:built])


def test_recipes_that_tie_on_agreement_are_told_apart_by_their_logit_error(tmp_path):
    """100 photos tie often (three x86 recipes of Lite2 at 98 %): the lower logit error wins the tie; passing
    and beating fp32 still come first."""
    from edgecnn.quantize.fallback import best_recipe

    def trial(agreement, mse, p50=1.0):
        score = Score(agreement=agreement, drop=0.0, top1=None, logit_mse=mse, passed=agreement >= 0.97)
        return Trial(label=f"{agreement}/{mse}", float_layers=(), score=score, p50_ms=p50, seconds=0.0,
                     artifact=tmp_path / "x.onnx")

    first, finer, lower = trial(0.98, 0.020), trial(0.98, 0.012), trial(0.97, 0.001)
    assert best_recipe([first, finer, lower], 10.0) is finer
    assert best_recipe([trial(0.96, 0.001), trial(0.96, None)], 10.0).score.logit_mse == 0.001
    slow = trial(0.99, 0.001, p50=20.0)
    assert best_recipe([slow, first], 10.0) is first  # passing and faster than fp32 before anything else
