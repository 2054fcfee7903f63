"""`edgecnn report RUN_DIR`: rebuild report.html and summary.json from a quickstart run's JSON files."""

from __future__ import annotations

from pathlib import Path

import typer

from edgecnn.cli import app
from edgecnn.cli._common import console, handle_errors, note


@app.command("report")
@handle_errors
def report_command(
    run_dir: Path = typer.Argument(..., help="A run folder written by `edgecnn quickstart` (--out)."),
    open_browser: bool = typer.Option(False, "--open", help="Open the report in the default web browser."),
) -> None:
    """Rebuild RUN_DIR/report.html (one self-contained page) and print the results table."""
    from edgecnn.report import load_run, print_summary, summary_rows, write_report

    path = write_report(run_dir)
    print_summary(summary_rows(load_run(run_dir)), console)
    note(f"wrote {path} and {path.with_name('summary.json')}")
    if open_browser:
        import webbrowser

        if not webbrowser.open(path.resolve().as_uri()):
            note(f"no web browser found here: open {path} by hand")
