"""`edgecnn report RUN_DIR`: rebuild report.html and summary.json from a quickstart run's JSON files."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from edgecnn.cli import app
from edgecnn.cli._common import console, handle_errors, note


@app.command("report")
@handle_errors
def report_command(
    run_dir: Path = typer.Argument(..., help="A run folder written by `edgecnn quickstart` (--out)."),
    open_browser: bool = typer.Option(False, "--open", help="Open the report in the default web browser."),
    device_run: Optional[List[Path]] = typer.Option(
        None, "--device-run", help="Add the --json of `bench|verify --on/--fleet` (copied into RUN_DIR/devices/; repeatable)."
    ),
) -> None:
    """Rebuild RUN_DIR/report.html (one self-contained page) and print the results table."""
    from edgecnn.report import load_run, print_summary, summary_rows, write_report
    from edgecnn.report.devices import add_device_runs, device_recommendations, device_table

    add_device_runs(run_dir, device_run or [])
    path = write_report(run_dir)
    run = load_run(run_dir)
    print_summary(summary_rows(run), console)
    for name, advice in device_recommendations(device_table(run.device_runs)).items():
        console.print(f"on {name}: {advice}", highlight=False, markup=False)
    note(f"wrote {path} and {path.with_name('summary.json')}")
    if open_browser:
        import webbrowser

        if not webbrowser.open(path.resolve().as_uri()):
            note(f"no web browser found here: open {path} by hand")
