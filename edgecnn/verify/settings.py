"""How to verify (everything but what): the settings the CLI passes, checked once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgecnn.errors import BadInputError
from edgecnn.thresholds import DEFAULT_THRESHOLDS, ThresholdOverrides

# (samples, batch) sizes a runner is fed: large enough to amortise the call, small enough for a Pi.
DEFAULT_BATCH = 32

Progress = Callable[[str, int, int], None]


@dataclass
class VerifySettings:
    """How to verify (everything but what)."""

    data: str | None = None
    data_root: str | Path | None = None
    runtime: str | None = None
    threads: int | None = None
    overrides: ThresholdOverrides = field(default_factory=ThresholdOverrides)
    reference: str | Path | None = None  # a checkpoint, a bundle or a golden .npz
    reference_source: str = "auto"  # auto | pytorch | golden
    precision: str | None = None  # for a single artifact file
    limit: int | None = None
    batch: int = DEFAULT_BATCH
    seed: int | None = None
    untuned: bool = False  # ignore the bundle's tuning file for this machine (edgecnn tune)
    # A model in memory to re-run as the live reference (the Python API's verify(reference=model)).
    reference_model: Any = None

    def __post_init__(self) -> None:
        if self.reference_source not in ("auto", "pytorch", "golden"):
            raise BadInputError(f"--reference-source must be auto, pytorch or golden, got {self.reference_source!r}")
        if self.threads is not None and self.threads < 1:
            raise BadInputError(f"--threads must be at least 1, got {self.threads}")
        if self.limit is not None and self.limit < 1:
            raise BadInputError(f"--limit must be at least 1, got {self.limit}")
        if self.batch < 1:
            raise BadInputError(f"--batch must be at least 1, got {self.batch}")
        if self.precision is not None and self.precision.lower() not in DEFAULT_THRESHOLDS:
            raise BadInputError(f"--precision must be one of {', '.join(DEFAULT_THRESHOLDS)}, got {self.precision!r}")


def is_bundle_path(path: Path) -> bool:
    """A bundle folder or its manifest.json (anything else is one artifact file)."""
    return path.is_dir() or path.name == "manifest.json"


__all__ = ["DEFAULT_BATCH", "Progress", "VerifySettings", "is_bundle_path"]
