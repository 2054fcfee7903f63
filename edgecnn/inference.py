"""The one inference path: any artifact through its backend's Runner, over a whole sample set.

Export's parity check, verify and the tests all get logits here, so the check made at export and the
run on the device are the same code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edgecnn.backends import get_runner, runtime_for_path
from edgecnn.backends.runner import FixedBatchError, Runner

# (label, done, total)
Progress = Callable[[str, int, int], None]


def load_runner(runtime: str, path: Path | None, *, threads: int | None, batch: int,
                options: dict[str, Any] | None = None) -> tuple[Runner, int]:
    """(runner, batch): loaded for `batch`, or for the artifact's own fixed batch when it has one."""
    options = dict(options or {})
    runner = get_runner(runtime)
    try:
        runner.load(path, threads=threads, batch=batch, **options)
        return runner, batch
    except FixedBatchError:
        fixed = runner.fixed_batch or 1  # a static model that cannot be reshaped: run one by one
        if fixed == batch:
            raise
    runner = get_runner(runtime)
    runner.load(path, threads=threads, batch=fixed, **options)
    return runner, fixed


def padded_batches(inputs: np.ndarray, batch: int) -> Iterator[tuple[np.ndarray, int]]:
    """(chunk of exactly `batch` samples, real count): the last chunk is zero-padded."""
    for start in range(0, inputs.shape[0], batch):
        chunk = inputs[start:start + batch]
        real = chunk.shape[0]
        if real < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - real, *chunk.shape[1:]), dtype=chunk.dtype)])
        yield np.ascontiguousarray(chunk, dtype=np.float32), real


def run_logits(runtime: str, path: Path | None, inputs: np.ndarray, *, threads: int | None, batch: int,
               options: dict[str, Any] | None = None, label: str = "",
               progress: Progress | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Logits of `inputs` through one runtime, and what the runner reported (version, batch, ...)."""
    from edgecnn.backends.runner import as_nchw_float32

    inputs = as_nchw_float32(inputs)
    runner, batch = load_runner(runtime, path, threads=threads, batch=batch, options=options)
    try:
        outputs = []
        done = 0
        for chunk, real in padded_batches(inputs, batch):
            outputs.append(np.asarray(runner.run(chunk), dtype=np.float32)[:real])
            done += real
            if progress is not None:
                progress(label, done, inputs.shape[0])
        info = {"runtime_version": runner.version, "threads": runner.threads, "batch": batch,
                "applied": dict(runner.applied)}
    finally:
        runner.close()
    return np.concatenate(outputs), info


def artifact_logits(path: str | Path, samples: np.ndarray, *, runtime: str | None = None,
                    threads: int | None = None, batch_size: int = 32, **options: Any) -> np.ndarray:
    """Logits of an artifact file on preprocessed NCHW samples (runtime from the suffix unless given)."""
    path = Path(path)
    logits, _ = run_logits(runtime or runtime_for_path(path), path, samples, threads=threads,
                           batch=min(batch_size, max(1, len(samples))), options=options)
    return logits





def check_parity(model, path: str | Path, samples: np.ndarray, *, reference_logits: np.ndarray | None = None,
                 min_agreement: float | None = None, max_abs_diff: float | None = None, runtime: str | None = None,
                 threads: int | None = None, batch_size: int = 32, **options: Any):
    """Compare an artifact (through its Runner) with PyTorch on real samples; ParityError below the thresholds.

    `reference_logits` skips re-running PyTorch when the caller already has them; then `model` may be None.
    """
    from edgecnn.compare import check_samples, compare_logits, enforce

    samples = check_samples(samples)
    if reference_logits is None:
        from edgecnn.backends.torch.reference import torch_logits

        reference_logits = torch_logits(model, samples, batch_size=batch_size)
    path = Path(path)
    runtime = runtime or runtime_for_path(path)
    candidate = artifact_logits(path, samples, runtime=runtime, threads=threads, batch_size=batch_size, **options)
    from edgecnn.backends import label

    return enforce(compare_logits(reference_logits, candidate), what=f"{label(runtime)} on {path.name}",
                   min_agreement=min_agreement, max_abs_diff=max_abs_diff)

__all__ = ["load_runner", "padded_batches", "run_logits", "artifact_logits", "check_parity"]
