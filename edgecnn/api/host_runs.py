"""explain and build on a bundle: what `Bundle.explain/.build` and `edgecnn explain/build` call.

explain runs on the host that exported the bundle (it re-quantizes layers); build runs where the
engines will run (a Jetson), here or, with `remote`, on the devices over SSH.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

from edgecnn.api.device_runs import run_on_devices
from edgecnn.api.progress import ProgressCallback, Reporter
from edgecnn.api.results import BuildResult, ExplainResult, RemoteResult
from edgecnn.remote.dispatch import RemoteOptions


def explain(path: Union[str, Path], *, artifact: Optional[str] = None, budget: float = 120.0,
            progress: Optional[ProgressCallback] = None) -> ExplainResult:
    """Per quantized layer of each int8 artifact: its PyTorch module, node, op, SQNR and the gain when kept float."""
    from edgecnn.bundle import load_bundle
    from edgecnn.explain import explain_artifact, int8_entries
    from edgecnn.validate import seconds

    seconds(budget, "--budget")
    bundle = load_bundle(Path(path))
    stage = Reporter(progress).stage
    results = []
    for entry in int8_entries(bundle, artifact):
        bundle.check_integrity(entry)
        results.append(explain_artifact(bundle, entry, budget_s=budget, stage=stage))
    return ExplainResult(bundle=str(bundle.root), artifacts=results)


def build(path: Union[str, Path], *, precision: Optional[str] = None, dla_core: Optional[int] = None,
          force: bool = False, fetch_engine: bool = False, remote: Optional[RemoteOptions] = None,
          progress: Optional[ProgressCallback] = None) -> Union[BuildResult, RemoteResult]:
    """Build (or adopt) the bundle's device-built engines (TensorRT) here, or on the devices `remote` names,
    and record them in its manifest."""
    if remote is not None and remote.requested:
        return run_on_devices("build", path, remote, progress, fetch_engine=fetch_engine, forwarded={
            "--precision": precision, "--dla-core": dla_core, "--force": force})
    backend = device_backend(Path(path))
    report = backend.device_build_step()(Path(path), precision=precision, dla_core=dla_core, force=force,
                                         note=Reporter(progress).note)
    return BuildResult(build=report, backend=backend)


def device_backend(bundle_path: Path) -> Any:
    """The backend that builds this bundle's artifacts on the device (the first such when the bundle is not its)."""
    from edgecnn.backends import backends
    from edgecnn.bundle import load_bundle

    builders = [b for b in backends() if b.device_build]
    runtime = (load_bundle(bundle_path).profile or {}).get("runtime")
    # A bundle of another runtime goes to a builder anyway: its own check says what it builds and how.
    return next((b for b in builders if b.name == runtime), builders[0])


__all__ = ["build", "device_backend", "explain"]
