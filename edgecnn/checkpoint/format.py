"""The checkpoint file format: an edgecnn `model.pt` is plain data, written atomically, read weights_only.

A checkpoint holds the architecture name, class count and names, the preprocessing spec, the
state dict, training metrics and versions, so it loads with `torch.load(..., weights_only=True)`:
a checkpoint is data, never code. `torch_load` is the one guarded reader of every torch file
(checkpoints, weights, state dicts): one BadInputError for any problem.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import torch

import edgecnn
from edgecnn.atomic import write_atomic
from edgecnn.errors import BadInputError
from edgecnn.preprocess import PreprocessSpec

CHECKPOINT_FORMAT = "edgecnn.checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")


def save_checkpoint(
    path: str | Path,
    *,
    arch: str,
    state_dict: Mapping[str, torch.Tensor],
    preprocess: PreprocessSpec,
    metrics: Mapping[str, Any] | None = None,
    data: str | None = None,
    data_root: str | None = None,
    seed: int | None = None,
    init: str = "random",
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write an edgecnn checkpoint atomically (temp file, then rename)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "arch": arch,
        "num_classes": len(preprocess.class_names),
        "class_names": list(preprocess.class_names),
        "preprocess": preprocess.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        "metrics": _plain(dict(metrics or {})),
        "data": data if data is not None else preprocess.data,
        "data_root": str(data_root) if data_root else None,
        "seed": seed,
        "init": init,
        "edgecnn_version": str(edgecnn.__version__),
        "torch_version": str(torch.__version__),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "extra": _plain(dict(extra or {})),
    }
    return atomic_torch_save(payload, path)


def atomic_torch_save(payload: Any, path: str | Path) -> Path:
    """torch.save through a temp file in the same folder, then an atomic rename."""
    return write_atomic(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: str | Path) -> dict:
    """Load and validate an edgecnn checkpoint (weights_only); one BadInputError for any problem."""
    path = Path(path)
    payload = torch_load(path, what="checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        if isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            raise BadInputError(
                f"{path} is a bare state dict, not an edgecnn checkpoint: pass the architecture and the file,"
                f" e.g. `NAME --state-dict {path}`"
            )
        raise BadInputError(f"{path} is not an edgecnn checkpoint (no '{CHECKPOINT_FORMAT}' header)")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise BadInputError(
            f"{path} has checkpoint format {version!r}; this edgecnn ({edgecnn.__version__}) reads up to"
            f" {CHECKPOINT_VERSION}: upgrade edgecnn"
        )
    for key, kind in (("arch", str), ("num_classes", int), ("state_dict", dict), ("preprocess", dict),
                      ("class_names", list)):
        if not isinstance(payload.get(key), kind):
            raise BadInputError(f"{path}: checkpoint field {key!r} is missing or malformed")
    try:
        payload["preprocess_spec"] = PreprocessSpec.from_dict(payload["preprocess"])
    except BadInputError as exc:
        raise BadInputError(f"{path}: {exc}") from None
    if len(payload["class_names"]) != payload["num_classes"]:
        raise BadInputError(
            f"{path}: {len(payload['class_names'])} class names for num_classes={payload['num_classes']}"
        )
    return payload


def torch_load(path: Path, *, what: str) -> Any:
    if not path.is_file():
        raise BadInputError(f"no such {what} file: {path}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise BadInputError(f"reading {path} needs safetensors: pip install safetensors") from None
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001
            raise BadInputError(f"cannot read {what} {path}: corrupt safetensors file ({first_line(exc)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        message = first_line(exc)
        # Only a named global means real Python objects; torch words garbage bytes
        # ("Unsupported operand") as a weights-only failure too, and that is a corrupt file.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            culprit = f" ({found.group(1)})"
            raise BadInputError(
                f"{path} holds Python objects{culprit}, not plain data: edgecnn loads {what}s with"
                " weights_only=True (save a state dict instead)"
            ) from None
        if message.startswith("Weights only load failed"):
            detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(exc))
            message = detail.group(1).strip()[:120] if detail else "unreadable pickle data"
        raise BadInputError(f"cannot read {what} {path}: not a torch file or corrupt ({message})") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    # torch's messages run on with advice about its own internals: the first sentence is the fact.
    return line.split(". ")[0][:200]


def _plain(value: Any) -> Any:
    """Metrics as plain Python data (weights_only loads refuse numpy scalars)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalar
        return value.item()
    if isinstance(value, (str, Path)):
        return str(value)  # also str subclasses such as torch.__version__ (TorchVersion)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value
