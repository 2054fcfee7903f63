"""The Runner interface every runtime implements, and what runners share.

A runner loads one artifact with explicit settings, then runs float32 NCHW batches and returns
float32 logits. Running is split in three so that `bench` can time the runtime call alone:

    runner.bind(batch)   # convert and copy the input into the runtime's buffers (not timed)
    runner.invoke()      # the runtime call itself (what bench times)
    runner.fetch()       # float32 logits [N, classes] (not timed)

`run(batch)` does all three; it is what `verify` uses. `applied` records the settings the runtime
really reports after loading (threads, precision, optimisation level, delegate...), so a benchmark
says what it measured instead of what was asked for.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Iterable

import numpy as np

from edgecnn.errors import BadInputError
from edgecnn.host import package_version, physical_cores  # noqa: F401 (package_version: public here too)

# Options every runner understands; they come from the bundle manifest.
COMMON_OPTIONS = frozenset({"input_shape", "layout", "precision", "fixed_batch"})


class FixedBatchError(BadInputError):
    """The artifact was built for one batch size and cannot be reshaped to another."""


def default_threads() -> int:
    """Threads a runner uses when nobody says: one per physical core."""
    return physical_cores()


class Runner(ABC):
    """Load one artifact, run float32 NCHW batches, report what was configured."""

    #: canonical runtime name (a key of edgecnn.backends.RUNNERS)
    runtime: ClassVar[str] = ""
    #: the pip extra that installs this runtime on a device
    extra: ClassVar[str] = ""
    #: runner-specific options accepted by load(), besides COMMON_OPTIONS
    options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self) -> None:
        self.path: Path | None = None
        self.version: str | None = None
        #: settings the runtime really applied, as it reports them after loading
        self.applied: dict[str, Any] = {}
        #: [C, H, W] the artifact expects, in NCHW terms (None when it cannot tell)
        self.input_shape: tuple[int, int, int] | None = None
        #: the batch size the runner is configured for now
        self.batch: int | None = None
        #: an int when the artifact only runs that batch size
        self.fixed_batch: int | None = None
        self.threads: int | None = None

    # --- the interface ---------------------------------------------------------------------

    @abstractmethod
    def load(self, path: str | Path | None, *, threads: int | None = None, batch: int = 1,
             **options: Any) -> "Runner":
        """Load the artifact at `path` for `batch`-sized inputs with `threads` threads."""

    @abstractmethod
    def bind(self, batch: np.ndarray) -> None:
        """Put a float32 NCHW batch into the runtime's input buffers (reshaping if it must)."""

    @abstractmethod
    def invoke(self) -> None:
        """Run the bound input: the runtime call alone."""

    @abstractmethod
    def fetch(self) -> np.ndarray:
        """The last run's output as float32 logits [N, classes]."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a float32 NCHW batch of any size (split and padded for fixed-batch artifacts)."""
        batch = as_nchw_float32(batch)
        if self.fixed_batch is None or batch.shape[0] == self.fixed_batch:
            self.bind(batch)
            self.invoke()
            return self.fetch()
        step = self.fixed_batch
        outputs = []
        for start in range(0, batch.shape[0], step):
            chunk = batch[start:start + step]
            real = chunk.shape[0]
            if real < step:
                pad = np.zeros((step - real, *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            self.bind(chunk)
            self.invoke()
            outputs.append(self.fetch()[:real])
        return np.concatenate(outputs)

    def close(self) -> None:
        """Release the runtime's resources (the default drops references)."""

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- helpers for subclasses ------------------------------------------------------------

    def _start_load(self, path: str | Path | None, threads: int | None, batch: int,
                    options: dict[str, Any]) -> dict[str, Any]:
        """Check the common arguments; returns the options with unknown names refused."""
        unknown = set(options) - COMMON_OPTIONS - self.options
        if unknown:
            valid = ", ".join(sorted(COMMON_OPTIONS | self.options))
            raise BadInputError(
                f"unknown option(s) for the {self.runtime} runner: {', '.join(sorted(unknown))} "
                f"(valid: {valid})"
            )
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise BadInputError(f"artifact not found: {path}")
            self.path = path
        if threads is not None and threads < 1:
            raise BadInputError(f"threads must be at least 1, got {threads}")
        if batch < 1:
            raise BadInputError(f"batch must be at least 1, got {batch}")
        self.threads = threads if threads is not None else default_threads()
        self.batch = batch
        return options

    def _check_batch(self, batch: np.ndarray) -> np.ndarray:
        """Validate a batch against the artifact's input shape; returns it contiguous float32."""
        batch = as_nchw_float32(batch)
        if self.input_shape is not None and tuple(batch.shape[1:]) != tuple(self.input_shape):
            raise BadInputError(
                f"input of shape {list(batch.shape[1:])} does not match the artifact's "
                f"[C,H,W] {list(self.input_shape)}"
            )
        if self.fixed_batch is not None and batch.shape[0] != self.fixed_batch:
            raise FixedBatchError(
                f"{self.path.name if self.path else 'the artifact'} runs batch {self.fixed_batch} "
                f"only, not {batch.shape[0]}"
            )
        return batch


def as_nchw_float32(batch: np.ndarray) -> np.ndarray:
    """A C-contiguous float32 4-D array, or BadInputError."""
    array = np.asarray(batch)
    if array.ndim != 4:
        raise BadInputError(f"expected an NCHW batch (4 dimensions), got shape {list(array.shape)}")
    return np.ascontiguousarray(array, dtype=np.float32)


def chw_from_manifest(options: dict[str, Any]) -> tuple[int, int, int] | None:
    """The manifest's input [C, H, W] when the caller passed one."""
    shape = options.get("input_shape")
    if shape is None:
        return None
    shape = [int(v) for v in shape]
    if len(shape) == 4:  # tolerate [N, C, H, W]
        shape = shape[1:]
    if len(shape) != 3:
        raise BadInputError(f"input_shape must be [C, H, W], got {shape}")
    return (shape[0], shape[1], shape[2])


def static_dims(dims: Iterable[Any]) -> list[int | None]:
    """Dimensions as ints, None for the dynamic ones (strings, -1, '?')."""
    out: list[int | None] = []
    for dim in dims:
        try:
            value = int(dim)
        except (TypeError, ValueError):
            value = -1
        out.append(value if value > 0 else None)
    return out
