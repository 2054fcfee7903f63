"""Logit parity between a reference (PyTorch fp32) and a deployed artifact, and top-1 accuracy.

Runtime-neutral: export, verify and the tests hand both logit arrays to `compare_logits`. Only numpy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from edgecnn.errors import BadInputError, CheckFailedError

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ParityResult:
    """How closely a candidate's logits follow the reference's on the same samples."""

    samples: int
    top1_agreement: float  # fraction of samples whose argmax matches, 0..1
    max_abs_diff: float
    mean_abs_diff: float
    cosine: float  # mean per-sample cosine similarity of the logit vectors
    min_cosine: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ParityError(CheckFailedError):
    """An artifact's outputs disagree with PyTorch beyond what the caller allows (exit 1)."""

    def __init__(self, message: str, result: ParityResult):
        self.result = result
        super().__init__(message)


def compare_logits(reference: np.ndarray, candidate: np.ndarray) -> ParityResult:
    """Compare two (N, classes) logit arrays computed on the same N samples."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape or reference.ndim != 2 or reference.shape[0] == 0:
        raise BadInputError(
            f"logits to compare must both be (N, classes) with N > 0; got {reference.shape} "
            f"and {candidate.shape}"
        )
    diff = np.abs(reference - candidate)
    agreement = float(np.mean(reference.argmax(1) == candidate.argmax(1)))
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    # Two all-zero vectors are identical; one zero vector against a non-zero one is not.
    both_zero = norms == 0
    cos = np.where(
        both_zero,
        np.where(np.all(diff == 0, axis=1), 1.0, 0.0),
        np.sum(reference * candidate, axis=1) / np.where(both_zero, 1.0, norms),
    )
    return ParityResult(
        samples=int(reference.shape[0]),
        top1_agreement=agreement,
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        cosine=float(cos.mean()),
        min_cosine=float(cos.min()),
    )


def enforce(
    result: ParityResult,
    *,
    what: str,
    min_agreement: float | None = None,
    max_abs_diff: float | None = None,
) -> ParityResult:
    """Raise ParityError when `result` misses a threshold the caller set; else return it."""
    if min_agreement is not None and result.top1_agreement < min_agreement:
        raise ParityError(
            f"{what}: top-1 agreement with PyTorch is {result.top1_agreement:.2%} on "
            f"{result.samples} samples, below the required {min_agreement:.2%} "
            f"(max abs diff {result.max_abs_diff:.3g}); the export is not faithful",
            result,
        )
    if max_abs_diff is not None and result.max_abs_diff > max_abs_diff:
        raise ParityError(
            f"{what}: max abs logit difference from PyTorch is {result.max_abs_diff:.3g}, "
            f"above the allowed {max_abs_diff:.3g} (top-1 agreement {result.top1_agreement:.2%})",
            result,
        )
    return result


def check_samples(samples: np.ndarray, input_shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """Validate a preprocessed NCHW float32 batch; return it as a contiguous float32 array."""
    array = np.asarray(samples)
    if array.ndim != 4 or array.shape[0] == 0:
        raise BadInputError(
            f"samples must be a non-empty NCHW array (N, C, H, W); got shape {array.shape}"
        )
    if input_shape is not None and tuple(array.shape[1:]) != tuple(input_shape):
        raise BadInputError(
            f"samples have shape (C, H, W) = {tuple(array.shape[1:])} but the model takes "
            f"{tuple(input_shape)}: bring them to the model's input size and preprocessing"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise BadInputError(
            f"samples must be preprocessed float images (got dtype {array.dtype})"
        )
    return np.ascontiguousarray(array, dtype=np.float32)


def batched(
    run: Callable[[np.ndarray], np.ndarray],
    samples: np.ndarray,
    batch_size: int,
    progress: Progress | None = None,
) -> np.ndarray:
    """Run `run` over `samples` in batches and stack the outputs."""
    outputs = []
    total = samples.shape[0]
    for start in range(0, total, batch_size):
        outputs.append(np.asarray(run(samples[start : start + batch_size])))
        if progress is not None:
            progress(min(start + batch_size, total), total)
    return np.concatenate(outputs, axis=0)


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent of (N, classes) logits against N integer labels."""
    return float(np.mean(np.asarray(logits).argmax(1) == np.asarray(labels)) * 100.0)
