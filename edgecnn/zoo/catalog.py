"""The zoo as rows of data (what `edgecnn models` prints and writes)."""

from __future__ import annotations

from edgecnn.errors import BadInputError
from edgecnn.zoo.profile import profile_spec
from edgecnn.zoo.registry import aliases_of, list_specs


def zoo_rows(family: str | None = None) -> list[dict]:
    """One row per registered model, params and MACs measured at the default input, 1000 classes."""
    if family not in (None, "lightweight", "baseline"):
        raise BadInputError(f"--family must be 'lightweight' or 'baseline', got {family!r}")
    rows = []
    # Lightweight family first, each family in registration order.
    for spec in sorted(list_specs(), key=lambda s: s.family != "lightweight"):
        if family and spec.family != family:
            continue
        profile = profile_spec(spec, num_classes=1000)
        rows.append(
            {
                "name": spec.name,
                "family": spec.family,
                "params": profile.total_params,
                "macs": profile.total_macs,
                "input_size": list(spec.input_size),
                "min_size": spec.min_size,
                "source": spec.source,
                "weights": spec.weights,
                "reference": spec.reference,
                "aliases": aliases_of(spec.name),
            }
        )
    return rows
