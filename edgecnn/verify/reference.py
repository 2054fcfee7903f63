"""The reference verify compares against: the model re-run live, else the bundle's golden logits.

The live model is the checkpoint (zoo models; PyTorch through the baseline backend's Runner) or, for a
foreign source, the source itself replayed from the manifest's model.replay record (an ONNX file in
ONNX Runtime, the rest in PyTorch: edgecnn.sources.replay). torch is imported only inside the live
run, so a device without it verifies against the golden set.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np

from edgecnn.inference import run_logits
from edgecnn.compare import compare_logits
from edgecnn.errors import BadInputError, MissingDependencyError
from edgecnn.sources.replay import ReplayUnavailable
from edgecnn.verify.results import REFERENCE_GOLDEN, REFERENCE_LIVE
from edgecnn.verify.samples import Samples
from edgecnn.verify.settings import DEFAULT_BATCH, Progress, is_bundle_path

# A live PyTorch run of the recorded checkpoint must reproduce the golden logits this closely,
# or the checkpoint changed after export and cannot be the reference.
_LIVE_MIN_AGREEMENT = 0.99
_LIVE_MIN_COSINE = 0.9999


def torch_available() -> bool:
    """Whether torch can be imported here, without importing it."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a blocked or broken installation
        return False


def reference_runtime() -> str:
    """The runtime that runs a checkpoint: the registry's one baseline (non-deploy) backend."""
    from edgecnn.backends import baseline_backend

    return baseline_backend().name


def is_reference_runtime(runtime: str) -> bool:
    """Whether `runtime` runs checkpoints, i.e. is the reference itself rather than an artifact's."""
    from edgecnn.backends import get_backend

    return not get_backend(runtime).deploy


# What can be re-run live: a checkpoint file, a foreign source's replay record (a dict), or a model in
# memory (the Python API's verify(reference=model): an object with `name`, `label` and `live_logits`).
LiveSource = Union[Path, Mapping, Any]


def _in_memory(live: LiveSource) -> bool:
    return hasattr(live, "live_logits")


def live_label(live: LiveSource) -> str:
    """The reference as verify prints it."""
    if _in_memory(live):
        return live.label
    if isinstance(live, Mapping):
        from edgecnn.sources.replay import replay_label

        return replay_label(live)
    return "PyTorch fp32 re-run live"


def live_unavailable(live: LiveSource | None) -> str | None:
    """Why `live` cannot run here (None when it can, as far as can be told without running it)."""
    if live is None:
        return "the bundle records no checkpoint that exists here"
    if isinstance(live, Mapping) or _in_memory(live):
        return None  # the replay itself says why (missing runtime, changed file), when it runs
    return None if torch_available() else "torch is not installed here"


def _live_logits(live: LiveSource, inputs: np.ndarray, *, threads: int, batch: int, input_shape,
                 progress: Progress | None = None) -> np.ndarray:
    if _in_memory(live):
        return live.live_logits(inputs, batch=batch)
    if isinstance(live, Mapping):
        from edgecnn.sources.replay import replay_logits

        return replay_logits(live, inputs, batch=batch)
    checkpoint = live
    options = {"precision": "fp32", **({"input_shape": list(input_shape)} if input_shape else {})}
    logits, _ = run_logits(reference_runtime(), checkpoint, inputs, threads=threads, batch=batch, options=options,
                           label="pytorch reference", progress=progress)
    return logits


def resolve_reference(samples: Samples, live_source: LiveSource | None, *, threads: int,
                      batch: int = DEFAULT_BATCH, input_shape: tuple[int, int, int] | None = None, live: bool = True,
                      progress: Progress | None = None, required: bool = False) -> None:
    """Fill `samples.reference_logits`: the model re-run live when possible, else the golden logits.

    `required` (--reference-source pytorch): no falling back; a live run that cannot happen is an error.

    A live run that does not reproduce the golden logits means the checkpoint (or the source file)
    changed after export; the golden logits (what the artifacts were exported from) are then the reference.
    """
    reason = "--reference-source golden" if not live else live_unavailable(live_source)
    if reason is None:
        try:
            live_logits = _live_logits(live_source, samples.inputs, threads=threads, batch=batch,
                                       input_shape=input_shape, progress=progress)
        except MissingDependencyError:
            reason = "torch cannot be imported here"
        except ReplayUnavailable as exc:
            reason = str(exc)
        else:
            if samples.golden_logits is not None and not matches_golden(live_logits, samples.golden_logits):
                reason = f"{_name(live_source)} no longer reproduces the golden logits recorded at export"
                samples.notes.append(
                    f"{_name(live_source)} no longer reproduces the golden logits recorded at export "
                    "(changed since?): the golden logits are the reference"
                )
            else:
                samples.reference_logits, samples.reference_source = live_logits, REFERENCE_LIVE
                samples.reference_label = live_label(live_source)
                return
    if required and reason is not None:
        raise BadInputError(f"--reference-source pytorch: the model cannot be re-run as the reference here ({reason}); "
                            "omit it to fall back to the golden logits")
    if samples.golden_logits is None:
        raise BadInputError(
            f"no live reference for {samples.source} ({reason}): verify on the bundle's golden set "
            "(omit --data), or run where the model can be re-run (torch and the checkpoint: --reference CHECKPOINT)"
        )
    if reason is not None and reason != "--reference-source golden" and live_source is not None:
        samples.notes.append(f"reference: the golden logits ({reason})")
    samples.reference_logits, samples.reference_source = samples.golden_logits, REFERENCE_GOLDEN
    samples.reference_label = f"golden logits ({samples.golden_reference} at export)"


def _name(live: LiveSource) -> str:
    if _in_memory(live):
        return f"the in-memory model {live.name}"
    return f"the source {live.get('source')}" if isinstance(live, Mapping) else f"the checkpoint {live}"


def matches_golden(live: np.ndarray, golden: np.ndarray) -> bool:
    """Whether a live run reproduces the golden logits (the checkpoint is still the exported model)."""
    if live.shape != golden.shape:
        return False
    parity = compare_logits(golden, live)
    return parity.top1_agreement >= _LIVE_MIN_AGREEMENT and parity.cosine >= _LIVE_MIN_COSINE


def cross_check_live(live: LiveSource, golden: Mapping[str, np.ndarray], *, threads: int, input_shape) -> None:
    """With --data, the live reference must still be the exported model: compare it on the golden set."""
    try:
        logits = _live_logits(live, golden["inputs"], threads=threads, batch=DEFAULT_BATCH, input_shape=input_shape)
    except ReplayUnavailable:
        return  # resolve_reference says why and falls back to the golden logits
    if not matches_golden(logits, golden["logits"]):
        raise BadInputError(
            f"{_name(live)} does not reproduce this bundle's golden logits: it changed after "
            "export, so it is no reference for these artifacts (re-export, or verify on the golden set "
            "with --reference-source golden)"
        )


def reference_checkpoint(reference) -> Path | None:
    """--reference as a checkpoint file (or a folder with model.pt), None for anything else."""
    if reference is None:
        return None
    path = Path(reference).expanduser()
    if is_bundle_path(path) and (path.name == "manifest.json" or (path / "manifest.json").is_file()):
        return None
    if path.is_dir():
        path = path / "model.pt"
    if path.suffix == ".npz":
        return None
    if not path.is_file():
        raise BadInputError(f"--reference {reference}: no such checkpoint")
    return path


def checkpoint_metadata(reference: Path) -> tuple[Path, dict]:
    """(checkpoint file, its metadata); needs torch (a checkpoint is a torch file)."""
    path = reference_checkpoint(reference)
    if not torch_available():
        raise MissingDependencyError("torch", "torch", "reading the --reference checkpoint")
    from edgecnn.checkpoint import read_checkpoint

    return path, read_checkpoint(path)


__all__ = ["LiveSource", "checkpoint_metadata", "cross_check_live", "is_reference_runtime", "live_label",
           "live_unavailable", "matches_golden",
           "reference_checkpoint", "reference_runtime", "resolve_reference", "torch_available"]
