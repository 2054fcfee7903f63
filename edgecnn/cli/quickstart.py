"""`edgecnn quickstart`: train, export for every target, verify, bench and report, in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgecnn.cli import app
from edgecnn.cli._common import console, handle_errors, note


@app.command("quickstart")
@handle_errors
def quickstart_command(
    *,
    model: str = typer.Option("mobilenet_v2", "--model", help="Zoo model to train and deploy."),
    data: str = typer.Option("digits", "--data", help="Data SPEC (digits is bundled with scikit-learn: offline)."),
    out: Path = typer.Option(Path("runs/quickstart"), "--out", "-o", help="Run folder."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs (default: a short schedule that reaches 97 % on digits)."),
    target: Optional[list[str]] = typer.Option(None, "--target", help="Only these targets (repeatable; default: every one this machine can build)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Threads for training, verify and bench (default: physical cores)."),
    bench_time: float = typer.Option(1.0, "--bench-time", help="Seconds of timed runs per artifact."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run folder."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Where downloadable data sets live."),
) -> None:
    """The whole pipeline on bundled data, offline: train -> export -> verify -> bench -> report.html."""
    from edgecnn.quickstart import QuickstartSettings, run_quickstart
    from edgecnn.report import print_summary

    settings = QuickstartSettings(
        model=model, data=data, out=out, epochs=epochs, targets=tuple(target) if target else None,
        force=force, threads=threads, bench_min_time_s=bench_time, data_root=str(data_root) if data_root else None,
    )
    result = run_quickstart(settings, step=lambda message: note(message, style="bold"))
    print_summary(result.rows, console)
    console.print(f"report: {result.report}  ({result.seconds:.0f} s in all; rebuild with `edgecnn report {result.run_dir}`)")
    if result.failures:
        from edgecnn.errors import CheckFailedError

        raise CheckFailedError(f"verify failed for {', '.join(result.failures)}: see {result.run_dir}/verify.json")
