"""What one compare run is asked for: the candidates, the data, the budget, how to time, where to run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from edgecnn.errors import BadInputError

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_OUT = Path("runs/compare")


@dataclass
class CompareSettings:
    """Everything `edgecnn compare` takes; `edgecnn.compare_models.compare(**...)` builds one."""

    targets: Sequence[str]
    data: Any  # the labelled data SPEC every candidate is verified on ("digits", "imagefolder:DIR", ...)
    sources: Sequence[str] = ()
    zoo: Optional[str] = None  # lightweight | baseline | NAME,NAME: trained here with each recipe on `data`
    precisions: Sequence[str] = ("fp32", "int8")
    out: Path = DEFAULT_OUT
    calib_data: Any = None  # None: export's default (a trained checkpoint's own data), else `data`
    data_root: Optional[str] = None
    max_latency_ms: Optional[float] = None
    max_size_mb: Optional[float] = None
    epochs: Optional[int] = None  # zoo training; None: each model's recipe
    threads: Optional[int] = None  # None: each bundle's device profile
    warmup: int = 10
    min_time_s: float = 1.0
    iters: Optional[int] = None
    verify_limit: Optional[int] = None  # verify on at most this many samples of `data`
    search_budget_s: float = 600.0  # the int8 export's fallback search
    remote: Any = None  # edgecnn.remote.dispatch.RemoteOptions naming devices, or None: here
    source_options: dict[str, Any] = field(default_factory=dict)  # weights / preprocessing for SOURCEs
    force: bool = False  # export and measure again what --out already holds (checkpoints are kept)

    def __post_init__(self):
        self.out = Path(self.out)
        self.targets = [t.strip() for t in _split(self.targets) if t.strip()]
        self.precisions = [p.strip().lower() for p in _split(self.precisions) if p.strip()]
        if not self.targets:
            raise BadInputError("--target: give at least one target (onnx, x86, arm, rpi5, ...)")
        unknown = [p for p in self.precisions if p not in PRECISIONS]
        if unknown or not self.precisions:
            raise BadInputError(f"--precision takes {', '.join(PRECISIONS)} separated by commas, got "
                                f"{','.join(self.precisions) or 'nothing'}")
        self._check_numbers()
        if self.data is None:
            raise BadInputError("--data: the labelled data every candidate is verified on (e.g. digits, "
                                "imagefolder:DIR)")

    def _check_numbers(self) -> None:
        """Every number refused by name before any training or export (not after an hour, per candidate)."""
        from edgecnn import validate

        for value, option in ((self.max_latency_ms, "--max-latency"), (self.max_size_mb, "--max-size")):
            if value is not None:
                validate.number(value, option, above=0)
        validate.seconds(self.min_time_s, "--min-time")
        validate.seconds(self.search_budget_s, "--search-budget")
        validate.integer(self.warmup, "--warmup", minimum=0)
        for value, option in ((self.iters, "--iters"), (self.threads, "--threads"), (self.epochs, "--epochs"),
                              (self.verify_limit, "--limit")):
            if value is not None:
                validate.integer(value, option, minimum=1)

    @property
    def on_devices(self) -> bool:
        return self.remote is not None and self.remote.requested

    def bench_key(self) -> dict[str, Any]:
        """What changes a latency: the timing settings and where it runs."""
        remote = self.remote
        devices = {"on": list(remote.on or []), "fleet": str(remote.fleet) if remote.fleet else None} \
            if self.on_devices else "here"
        return {"threads": self.threads, "warmup": self.warmup, "min_time_s": self.min_time_s, "iters": self.iters,
                "devices": devices}

    def describe(self) -> dict[str, Any]:
        """The settings as --json records them."""
        return {"sources": list(self.sources), "zoo": self.zoo, "targets": list(self.targets),
                "precisions": list(self.precisions), "data": str(self.data), "out": str(self.out),
                "max_latency_ms": self.max_latency_ms, "max_size_mb": self.max_size_mb, "epochs": self.epochs,
                "verify_limit": self.verify_limit, "bench": self.bench_key()}


def _split(value: Any) -> list[str]:
    """'onnx,x86' or ['onnx', 'x86,arm'] -> ['onnx', 'x86', 'arm']."""
    items = [value] if isinstance(value, str) else list(value or [])
    return [part for item in items for part in str(item).split(",")]


__all__ = ["DEFAULT_OUT", "PRECISIONS", "CompareSettings"]
