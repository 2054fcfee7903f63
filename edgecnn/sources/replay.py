"""Re-running a foreign source later, as verify's live reference: what export records, and the replay.

A zoo model's reference is its checkpoint. A foreign source has none, so export records how to load it
again: the SOURCE with its file made absolute, --weights/--state-dict, the input size, and the sha256 of
the file(s) it read. verify replays it on photos other than the golden set; a changed or missing file
is no reference (its reason is returned, and verify falls back to the golden logits).

An ONNX source replays in ONNX Runtime (its original file, fp32): no torch. The others need torch and,
for a factory, the user's code -- a device without them verifies against the golden set.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgecnn.sources.parse import FILE_FACTORY, LIBRARY_KINDS, MODULE_FACTORY, ONNX, SourceRef, parse_source


class ReplayUnavailable(Exception):
    """Why a recorded source cannot be the live reference here (one line)."""


def replay_record(ref: SourceRef, *, weights: str | None, state_dict, input_shape) -> dict[str, Any]:
    """What a later process needs to load `ref` again and to know it is still the same model."""
    files: dict[str, str] = {}
    source = ref.text
    if ref.kind not in LIBRARY_KINDS and ref.kind != MODULE_FACTORY:
        file = Path(ref.target).expanduser().resolve()
        source = f"{file}:{ref.function}" if ref.kind == FILE_FACTORY else str(file)
        files[str(file)] = _sha256(file)
    state = None
    if state_dict is not None:
        state = str(Path(state_dict).expanduser().resolve())
        files[state] = _sha256(Path(state))
    if weights is not None and weights not in ("imagenet", "random") and Path(weights).expanduser().is_file():
        weights = str(Path(weights).expanduser().resolve())
        files[weights] = _sha256(Path(weights))
    return {"source": source, "kind": ref.kind, "weights": weights, "state_dict": state,
            "input_shape": [int(d) for d in input_shape], "sha256": files}


def replay_label(record: Mapping[str, Any]) -> str:
    """How verify names the reference: the source and the runtime it re-runs in."""
    if record.get("kind") == ONNX:
        from edgecnn.backends import label, runtime_for_path

        return f"{record.get('source')} re-run live ({label(runtime_for_path(record['source']))} fp32)"
    return f"{record.get('source')} re-run live (PyTorch fp32)"


def replay_logits(record: Mapping[str, Any], inputs: np.ndarray, *, batch: int = 32) -> np.ndarray:
    """fp32 logits of the recorded source on `inputs`; ReplayUnavailable when it cannot run here."""
    _check_record(record)
    if record.get("kind") == ONNX:
        return _onnx_logits(record, inputs, batch=batch)
    try:
        if importlib.util.find_spec("torch") is None:
            raise ImportError("no torch")
        import torch  # noqa: F401 - an installed but unimportable torch is no reference either
    except ImportError:
        raise ReplayUnavailable("torch cannot be imported here") from None
    from edgecnn.backends.torch.reference import torch_logits
    from edgecnn.errors import EdgecnnError
    from edgecnn.sources import load_source
    from edgecnn.sources.stated import StatedPreprocess

    channels, size = int(record["input_shape"][0]), int(record["input_shape"][1])
    try:
        loaded = load_source(record["source"], weights=record.get("weights"), state_dict=record.get("state_dict"),
                             stated=StatedPreprocess(input_size=size, channels=channels), need_normalization=False)
    except EdgecnnError as exc:
        raise ReplayUnavailable(f"{record['source']} does not load here: {exc}") from None
    return torch_logits(loaded.model, inputs, batch_size=batch)


def _onnx_logits(record: Mapping[str, Any], inputs: np.ndarray, *, batch: int) -> np.ndarray:
    """The original ONNX file in the registry's runtime for .onnx files, fp32: torch-free."""
    from edgecnn.backends import runtime_for_path
    from edgecnn.errors import MissingDependencyError
    from edgecnn.inference import run_logits

    try:
        logits, _ = run_logits(runtime_for_path(record["source"]), Path(record["source"]), inputs, threads=None,
                               batch=batch, options={"input_shape": list(record["input_shape"])})
    except MissingDependencyError as exc:
        raise ReplayUnavailable(str(exc)) from None
    return logits


def _check_record(record: Mapping[str, Any]) -> None:
    shape = record.get("input_shape") if isinstance(record, Mapping) else None
    if not isinstance(record, Mapping) or not isinstance(record.get("source"), str) or parse_source(
            record["source"]) is None or not isinstance(shape, list) or len(shape) != 3:
        raise ReplayUnavailable("the manifest's model.replay record is malformed")
    for name, digest in (record.get("sha256") or {}).items():
        file = Path(name)
        if not file.is_file():
            raise ReplayUnavailable(f"{file} is not here")
        if _sha256(file) != digest:
            raise ReplayUnavailable(f"{file} changed since export (sha256 differs)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = ["ReplayUnavailable", "replay_label", "replay_logits", "replay_record"]
