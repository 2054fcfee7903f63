"""`edgecnn build BUNDLE`: build a bundle's engines on the device that will run them (TensorRT today).

Runs where TensorRT is (a Jetson with JetPack, a CUDA machine); never imports torch. The work is
`edgecnn.backends.tensorrt.device_build`; this module parses, calls it and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from edgecnn.atomic import check_output_path
from edgecnn.cli import app
from edgecnn.cli._common import console, handle_errors, note, write_json
from edgecnn.cli.remote import RemoteOptions, remote_options


@app.command("build")
@handle_errors
@remote_options
def build(
    *,
    bundle_path: Path = typer.Argument(..., help="A TensorRT bundle folder (from edgecnn export --target jetson|cuda)."),
    precision: Optional[str] = typer.Option(
        None, "--precision", help="Build only this precision (fp32|fp16|int8) [default: the bundle's planned engines]."
    ),
    dla_core: Optional[int] = typer.Option(
        None, "--dla-core", help="Run on this DLA core with GPU fallback (Orin NX / AGX Orin; fp16 or int8)."
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild engines that already exist and are valid here."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write what was built as JSON."),
    remote: RemoteOptions = RemoteOptions(),
    fetch_engine: bool = typer.Option(
        False, "--fetch-engine", help="With --on/--fleet: bring the built engines back into the local bundle too."
    ),
) -> None:
    """Build (or adopt) the bundle's TensorRT engines here and add them to its manifest."""
    check_output_path(json_path, option="--json")
    if remote.requested:  # on the device that will run them; the provenance comes back into this manifest
        from edgecnn.cli.remote import dispatch

        return dispatch("build", bundle_path, remote=remote, fetch_engine=fetch_engine,
                        json_path=json_path,
                        forwarded={"--precision": precision, "--dla-core": dla_core, "--force": force})
    backend = _device_backend(bundle_path)
    report = backend.device_build_step()(bundle_path, precision=precision, dla_core=dla_core, force=force, note=note)
    root = report.bundle.root
    table = Table(title=f"{backend.label} engines for {report.bundle.model_name} ({report.profile.name})")
    for column in ("engine", "precision", backend.label, "GPU", "DLA", "build s", ""):
        table.add_column(column)
    for result in report.results:
        p = result.provenance
        table.add_row(str(result.path.relative_to(root)), result.precision, str(p.get(backend.name, "?")),
                      str(p.get("gpu") or p.get("device_model") or "?"), str(p.get("dla_core") or "-"),
                      f"{result.build_s:.1f}", "kept" if result.adopted else "built")
    console.print(table)
    note(f"next: edgecnn bench {root} && edgecnn verify {root}")
    if json_path:
        write_json(json_path, report.to_dict())


def _device_backend(bundle_path: Path):
    """The backend that builds this bundle's artifacts on the device (the first such when the bundle is not its)."""
    from edgecnn.backends import backends
    from edgecnn.bundle import load_bundle

    builders = [b for b in backends() if b.device_build]
    runtime = (load_bundle(bundle_path).profile or {}).get("runtime")
    # A bundle of another runtime goes to a builder anyway: its own check says what it builds and how.
    return next((b for b in builders if b.name == runtime), builders[0])
