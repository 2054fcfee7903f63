"""`edgecnn explain`: where an INT8 artifact of a bundle loses accuracy, layer by layer.

For each quantized layer: its name as the user knows it (the PyTorch module path), the node name, the op,
the SQNR of its int8 output against the fp32 artifact's on a few golden images, and how much of the
logit error goes away when only that layer runs in float (measured on golden images, where the backend
can write such a candidate; else what export recorded). A backend that can explain declares
`Backend.sensitivity`: `explainer(int8_path, fp32_path, inputs) -> (layers, make or None)`. It runs
on the bundle through the runners (edgecnn.bench.candidates), above both quantize and the backends.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import BadInputError
from edgecnn.quantize import RANKING_SAMPLES, Budget, Gate, Layer, rank_layers, score


@dataclass
class Explanation:
    """One int8 artifact's layers, most costly first."""

    artifact: str
    runtime: str
    layers: list[Layer]
    layers_in_float: list[dict]
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "runtime": self.runtime, "method": self.method,
                "layers_in_float": self.layers_in_float, "layers": [layer.to_dict() for layer in self.layers]}


def _explainer(runtime: str):
    from edgecnn.backends import get_backend

    return get_backend(runtime).explainer()


def _fp32_partner(bundle, entry):
    """The bundle's fp32 artifact of the same format (what the int8 one is compared with)."""
    for other in bundle.artifacts:
        if other.precision == "fp32" and other.format == entry.format and other.runtime == entry.runtime:
            return other
    raise BadInputError(f"{entry.path}: the bundle has no fp32 {entry.format} artifact to compare it with")


def explain_artifact(bundle, entry, *, budget_s: float = 120.0, stage=None) -> Explanation:
    """SQNR per layer and, within `budget_s`, each layer's gain when kept float, sorted most costly first."""
    golden = bundle.load_golden()
    inputs, reference = golden["inputs"], golden["logits"]
    labels = golden["labels"] if np.all(golden["labels"] >= 0) else None
    fp32 = _fp32_partner(bundle, entry)
    explainer = _explainer(entry.runtime)
    int8_path = bundle.artifact_path(entry)
    if stage:
        stage(f"measuring the SQNR of every quantized layer of {entry.path}")
    layers, make = explainer(int8_path, bundle.artifact_path(fp32), inputs)
    names = entry.extra.get("layer_names") or {}  # module paths export recorded where the file cannot say
    for layer in layers:
        layer.user_name = names.get(layer.node, layer.user_name)
    recorded = {x.get("node"): x for x in ((entry.extra.get("int8") or {}).get("sensitivity") or [])}
    method = ("SQNR measured now; gain when float as export recorded it" if recorded else
              "SQNR measured now; no gain when float: this runtime's candidates need the PyTorch model (export time)")
    if make is not None and layers:
        method = f"SQNR and gain when float measured now on {min(RANKING_SAMPLES, len(inputs))} golden samples"
        from edgecnn.bench.candidates import RunnerMeasure

        measure, gate = RunnerMeasure(tuple(inputs.shape[1:])), Gate.for_int8()
        subset = min(RANKING_SAMPLES, len(inputs))
        sample, expected = inputs[:subset], reference[:subset]
        sample_labels = None if labels is None else labels[:subset]

        def scored(path: Path):
            logits = measure.logits(entry.runtime, path, sample, precision="int8")
            return score(gate, expected, logits, sample_labels)

        with tempfile.TemporaryDirectory(prefix="edgecnn-explain-") as scratch:
            out = Path(scratch) / f"one{''.join(int8_path.suffixes)}"
            layers = rank_layers(layers, scored(int8_path), lambda nodes: scored(make(int8_path, nodes, out)),
                                 budget=Budget(budget_s), share=1.0, stage=stage)
    else:
        for layer in layers:
            old = recorded.get(layer.node) or recorded.get(layer.user_name) or {}
            layer.gain, layer.agreement_float = old.get("gain"), old.get("agreement_float")
    layers = sorted(layers, key=lambda x: (x.gain is None, -(x.gain or 0.0),
                                           x.sqnr_db if x.sqnr_db is not None else 1e9))
    floats = (entry.extra.get("int8") or {}).get("layers_in_float") or []
    return Explanation(artifact=entry.path, runtime=entry.runtime, layers=layers, layers_in_float=floats,
                       method=method)


def int8_entries(bundle, artifact: str | None = None) -> list:
    """The bundle's int8 artifacts (or the one at `artifact`)."""
    entries = [e for e in bundle.artifacts if e.precision == "int8"]
    if artifact is not None:
        wanted = Path(artifact)
        entries = [e for e in entries if Path(e.path) == wanted or (bundle.root / e.path).resolve() == wanted.resolve()]
        if not entries:
            raise BadInputError(f"{artifact} is not an int8 artifact of the bundle at {bundle.root} "
                                f"(int8 artifacts: {', '.join(e.path for e in bundle.artifacts if e.precision == 'int8') or 'none'})")
    if not entries:
        raise BadInputError(f"the bundle at {bundle.root} has no int8 artifact: export it with --precision int8")
    for entry in entries:
        _check_recorded_types(entry)
    return entries


def _check_recorded_types(entry) -> None:
    """A tampered manifest's int8 record or layer names: one line naming the field, not an AttributeError later."""
    int8, names = entry.extra.get("int8"), entry.extra.get("layer_names")
    lists = [(f"int8.{key}", int8.get(key)) for key in ("sensitivity", "layers_in_float")] if isinstance(int8, dict) else []
    wrong = [name for name, value, kind in [("int8", int8, dict), ("layer_names", names, dict)] if value is not None
             and not isinstance(value, kind)]
    wrong += [name for name, value in lists if value is not None and not (isinstance(value, list)
                                                                          and all(isinstance(x, dict) for x in value))]
    if isinstance(names, dict) and not all(isinstance(v, str) for v in names.values()):
        wrong.append("layer_names")
    if wrong:
        raise BadInputError(f"manifest: artifact {entry.path}: {wrong[0]} has the wrong type (int8 and layer_names "
                            "are objects, int8.sensitivity and int8.layers_in_float lists of objects): re-export the bundle")
