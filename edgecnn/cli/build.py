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
from edgecnn.cli._common import console, note, write_json
from edgecnn.cli.remote import RemoteOptions, remote_command


@remote_command("build")
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
    from edgecnn.api.host_runs import build as build_api

    check_output_path(json_path, option="--json")
    options = dict(precision=precision, dla_core=dla_core, force=force)
    if remote.requested:  # on the device that will run them; the provenance comes back into this manifest
        from edgecnn.cli.remote import events_to_stderr, print_remote

        return print_remote(build_api(bundle_path, **options, fetch_engine=fetch_engine, remote=remote,
                                      progress=events_to_stderr), json_path)
    result = build_api(bundle_path, **options, progress=lambda event: note(event.message))
    backend, report = result.backend, result.build
    root = report.bundle.root
    table = Table(title=f"{backend.label} engines for {report.bundle.model_name} ({report.profile.name})")
    for column in ("engine", "precision", backend.label, "GPU", "DLA", "build s", ""):
        table.add_column(column)
    for engine in report.results:
        p = engine.provenance
        table.add_row(str(engine.path.relative_to(root)), engine.precision, str(p.get(backend.name, "?")),
                      str(p.get("gpu") or p.get("device_model") or "?"), str(p.get("dla_core") or "-"),
                      f"{engine.build_s:.1f}", "kept" if engine.adopted else "built")
    console.print(table)
    note(f"next: edgecnn bench {root} && edgecnn verify {root}")
    if json_path:
        write_json(json_path, result.to_dict())
