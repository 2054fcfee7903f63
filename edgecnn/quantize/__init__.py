"""What every INT8 backend shares: the gate, layer names users know, sensitivity, recipe search, fallback.

Backends bring what only they know (how to write a candidate with some layers in float, which layers
int8 touched); `search_int8` measures and decides. Q/DQ ONNX graphs (ONNX Runtime, TensorRT) share
`qdq.keep_in_float`.
"""

from edgecnn.quantize.fallback import (
    DEFAULT_SEARCH_BUDGET_S, Int8Decision, Int8Plan, Recipe, SearchRequest, search_int8,
)
from edgecnn.quantize.gate import Gate, Score, score
from edgecnn.quantize.names import module_path
from edgecnn.quantize.search import Budget, Layer, Trial

__all__ = ["DEFAULT_SEARCH_BUDGET_S", "Budget", "Gate", "Int8Decision", "Int8Plan", "Layer", "Recipe", "Score",
           "SearchRequest", "Trial", "module_path", "score", "search_int8"]
