"""`edgecnn.Bundle`: a deploy bundle on disk, and what can be done with it — bench, verify, tune, explain, build.

Opening one reads its manifest only (no runtime, no torch), so `Bundle.open(path).bench()` and
`.verify()` run on a device with nothing but its runtime. Each method takes `on=`/`fleet=` (those
that run on devices) to run there over SSH instead, exactly as the CLI's `--on`/`--fleet`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

from edgecnn.api import device_runs, host_runs
from edgecnn.api.device_runs import Batches, Thresholds, remote_options
from edgecnn.api.progress import ProgressCallback
from edgecnn.api.results import BenchResult, BuildResult, ExplainResult, ExportResult, RemoteResult, TuneResult
from edgecnn.api.results import VerifyReport

Devices = Union[str, Sequence[str], None]
PathLike = Union[str, Path]


class Bundle:
    """A bundle folder (manifest.json, artifacts, golden set), from `edgecnn.export` or `Bundle.open(path)`."""

    def __init__(self, path: PathLike, *, export_result: Optional[ExportResult] = None):
        from edgecnn.bundle import load_bundle

        self._bundle = load_bundle(Path(path))  # checks the manifest now: a bad path fails here, not later
        self.export_result = export_result  # what the export did, when this bundle was just exported

    @classmethod
    def open(cls, path: PathLike) -> "Bundle":
        """The bundle at `path` (its folder or its manifest.json)."""
        return cls(path)

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r}, model={self.model_name!r}, target={self.target!r})"

    @property
    def path(self) -> Path:
        return Path(self._bundle.root)

    @property
    def manifest(self) -> dict[str, Any]:
        return self._bundle.manifest

    @property
    def model_name(self) -> str:
        return self._bundle.model_name

    @property
    def target(self) -> Optional[str]:
        return self._bundle.target

    @property
    def precision(self) -> Optional[str]:
        return self.manifest.get("precision")

    @property
    def artifacts(self) -> list[dict[str, Any]]:
        """The manifest's artifacts: path, format, runtime, precision, sha256, bytes."""
        return [entry.to_dict() for entry in self._bundle.artifacts]

    def bench(self, *, runtime: Optional[str] = None, threads: Optional[int] = None, batch: Batches = 1,
              warmup: int = 10, iters: Optional[int] = None, min_time: Optional[float] = None,
              baseline: Optional[str] = None, timeout: Optional[float] = None, untuned: bool = False,
              on: Devices = None, fleet: Optional[PathLike] = None, identity: Optional[PathLike] = None,
              accept_new_host_key: bool = False, keep: bool = False,
              progress: Optional[ProgressCallback] = None) -> Union[BenchResult, RemoteResult]:
        """Latency percentiles, throughput, load time and memory per artifact and batch (`edgecnn bench`);
        `batch=[1, 8]` sweeps; `baseline="torch"` adds PyTorch eager (host only)."""
        return device_runs.bench(self.path, runtime=runtime, threads=threads, batch=batch, warmup=warmup,
                                 iters=iters, min_time=min_time, baseline=baseline, timeout=timeout, untuned=untuned,
                                 remote=remote_options(on, fleet, identity=identity,
                                                       accept_new_host_key=accept_new_host_key, keep=keep),
                                 progress=progress)

    def verify(self, *, data: Any = None, data_root: Optional[PathLike] = None, runtime: Optional[str] = None,
               max_drop: Optional[float] = None, min_agreement: Optional[float] = None,
               min_cosine: Optional[float] = None, max_abs_diff: Optional[float] = None,
               thresholds: Thresholds = None, reference: Any = None, reference_source: str = "auto",
               threads: Optional[int] = None, batch: int = 32, limit: Optional[int] = None, seed: Optional[int] = None,
               untuned: bool = False, check: bool = False, on: Devices = None, fleet: Optional[PathLike] = None,
               identity: Optional[PathLike] = None, accept_new_host_key: bool = False, keep: bool = False,
               progress: Optional[ProgressCallback] = None) -> Union[VerifyReport, RemoteResult]:
        """Accuracy parity against PyTorch fp32 (`edgecnn verify`): on the golden set, or on `data` (a SPEC, an
        edgecnn.data spec, or images in memory). `reference`: a checkpoint, or the Model / nn.Module in memory
        to re-run (a bundle of an in-memory module has no other). `passed` False on a failed check; raises only
        with check=True."""
        return device_runs.verify(self.path, data=data, data_root=data_root, runtime=runtime, max_drop=max_drop,
                                  min_agreement=min_agreement, min_cosine=min_cosine, max_abs_diff=max_abs_diff,
                                  thresholds=thresholds, reference=reference, reference_source=reference_source,
                                  threads=threads, batch=batch, limit=limit, seed=seed, untuned=untuned, check=check,
                                  remote=remote_options(on, fleet, identity=identity,
                                                        accept_new_host_key=accept_new_host_key, keep=keep),
                                  progress=progress)

    def tune(self, *, runtime: Optional[str] = None, budget: float = 300.0, min_time: float = 1.0, warmup: int = 10,
             limit: Optional[int] = None, thresholds: Thresholds = None, force: bool = False, on: Devices = None,
             fleet: Optional[PathLike] = None, identity: Optional[PathLike] = None, accept_new_host_key: bool = False,
             keep: bool = False, progress: Optional[ProgressCallback] = None) -> Union[TuneResult, RemoteResult]:
        """The fastest runtime settings here that pass the accuracy gate, stored in the bundle (`edgecnn tune`)."""
        return device_runs.tune(self.path, runtime=runtime, budget=budget, min_time=min_time, warmup=warmup,
                                limit=limit, thresholds=thresholds, force=force,
                                remote=remote_options(on, fleet, identity=identity,
                                                      accept_new_host_key=accept_new_host_key, keep=keep),
                                progress=progress)

    def explain(self, *, artifact: Optional[str] = None, budget: float = 120.0,
                progress: Optional[ProgressCallback] = None) -> ExplainResult:
        """Which quantized layers of the int8 artifacts cost the most accuracy (`edgecnn explain`)."""
        return host_runs.explain(self.path, artifact=artifact, budget=budget, progress=progress)

    def build(self, *, precision: Optional[str] = None, dla_core: Optional[int] = None, force: bool = False,
              fetch_engine: bool = False, on: Devices = None, fleet: Optional[PathLike] = None,
              identity: Optional[PathLike] = None, accept_new_host_key: bool = False, keep: bool = False,
              progress: Optional[ProgressCallback] = None) -> Union[BuildResult, RemoteResult]:
        """Build the bundle's TensorRT engines here or on the device (`edgecnn build`), recorded in its manifest."""
        return host_runs.build(self.path, precision=precision, dla_core=dla_core, force=force,
                               fetch_engine=fetch_engine,
                               remote=remote_options(on, fleet, identity=identity,
                                                     accept_new_host_key=accept_new_host_key, keep=keep),
                               progress=progress)


__all__ = ["Bundle"]
