"""What every INT8 backend shares: the gate, layer names users know, sensitivity, recipe search, fallback.

Backends declare what only they know as an `Int8Method` (how to write each recipe's candidate and one
with some layers in float, which layers int8 touched); `search_int8` measures through the `Measure` it
is handed and decides; the pipeline records the decision. Q/DQ ONNX graphs (ONNX Runtime, TensorRT)
share `qdq.keep_in_float`. Nothing here imports a runner, bench or verify.
"""

from edgecnn.quantize.fallback import (
    DEFAULT_SEARCH_BUDGET_S, RANKING_SAMPLES, Int8Decision, SearchRequest, search_int8,
)
from edgecnn.quantize.gate import Gate, Score, score
from edgecnn.quantize.method import Candidate, Int8Job, Int8Method, Measure, Recipe, RecipeUnavailable
from edgecnn.quantize.names import module_path
from edgecnn.quantize.search import AIM_AGREEMENT, Budget, Int8Status, Layer, Trial, rank_layers

__all__ = ["AIM_AGREEMENT", "DEFAULT_SEARCH_BUDGET_S", "RANKING_SAMPLES", "Budget", "Candidate", "Gate", "Int8Decision", "Int8Job",
           "Int8Method", "Int8Status", "Layer", "Measure", "Recipe", "RecipeUnavailable", "Score", "SearchRequest", "Trial", "module_path", "rank_layers",
           "score", "search_int8"]
