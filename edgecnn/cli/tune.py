"""`edgecnn tune BUNDLE`: the fastest runtime settings on this machine that still pass the accuracy gate."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from edgecnn.cli import app
from edgecnn.cli._common import console, err_console, handle_errors, note, write_json
from edgecnn.cli.remote import RemoteOptions, remote_options, dispatch


@app.command("tune")
@handle_errors
@remote_options
def tune_command(
    *,  # typer passes options by name; keyword-only keeps the 5-positional-parameter rule
    path: Path = typer.Argument(..., help="A bundle folder (or its manifest.json) with a golden set."),
    runtime: Optional[str] = typer.Option(None, "--runtime", help="Only this runtime's artifacts."),
    budget: float = typer.Option(300.0, "--budget", help="Seconds the whole sweep may take (candidates stop when the next would not fit)."),
    min_time: float = typer.Option(1.0, "--min-time", help="Time each candidate for at least S seconds (bench's method)."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed runs before timing each candidate."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Gate each candidate on at most this many golden samples (default: all)."),
    threshold: Optional[List[str]] = typer.Option(None, "--threshold", help="Gate override, repeatable, as in verify: bf16.min_agreement=0.99, int8.max_drop=2."),
    force: bool = typer.Option(False, "--force", help="Replace this machine's existing tuning file."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the full report (every candidate) as JSON."),
    remote: RemoteOptions = RemoteOptions(),
) -> None:
    """Sweep each runtime's knobs, time every candidate, gate the faster ones on the golden set, store the fastest that passes."""
    from edgecnn.atomic import check_output_path
    from edgecnn.tune import TuneSettings, tune
    from edgecnn.validate import seconds
    from edgecnn.verify import build_overrides

    seconds(budget, "--budget")
    seconds(min_time, "--min-time")
    if remote.requested:
        # Tuned on each device by its own edgecnn tune; its tuning file and manifest record come back here.
        return dispatch("tune", path, remote=remote,
                        json_path=json_path, runtime=runtime,
                        forwarded={"--runtime": runtime, "--budget": budget, "--min-time": min_time, "--warmup": warmup,
                                   "--limit": limit, "--threshold": threshold or None, "--force": force})
    check_output_path(json_path, option="--json")
    # The tuning file and the manifest's record of it are written into the bundle: it must take them.
    check_output_path(path if path.name == "manifest.json" else path / "manifest.json", option="the bundle at")
    settings = TuneSettings(runtime=runtime, budget_s=budget, min_time_s=min_time, warmup=warmup, limit=limit,
                            overrides=build_overrides(thresholds=threshold or ()), force=force)
    report = _tune_with_progress(tune, path, settings)
    console.print(summary_table(report))
    console.print(settings.describe(), style="dim", highlight=False)
    device = report["device"]
    console.print(f"Device: {device['cpu_model']}, {device['physical_cores']} physical cores, {device['machine']}; "
                  f"load average {_load(report.get('loadavg_before'))} -> {_load(report.get('loadavg_after'))}; "
                  f"{report['seconds']:g} s of a {budget:g} s budget"
                  + (" (the budget stopped the sweep)" if report["stopped_by_budget"] else ""),
                  style="dim", highlight=False)
    for row in report["artifacts"]:
        for line in filter(None, (row.get("note"), row.get("reason"))):
            note(f"note: {row['path']}: {line}")
    for skipped in report["skipped"]:
        note(f"skipped {skipped['name']}: {skipped['reason']}")
    note(f"wrote {report['tuning_file']} (recorded in the manifest; bench and verify use it on this machine, "
         "--untuned for the defaults)")
    if json_path is not None:
        write_json(json_path, report)
        note(f"wrote {json_path}")


def _tune_with_progress(tune, path: Path, settings) -> dict:
    """`tune` under a progress bar on stderr (when it is a terminal): one step per candidate."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        task = progress.add_task("tuning", total=None)

        def on_plan(total: int) -> None:
            progress.update(task, total=total)

        def on_candidate(name: str, done: int, planned: int, candidate) -> None:
            p50 = "-" if candidate.p50 is None else f"{candidate.p50:.2f} ms"
            verdict = "pass" if candidate.passed else "fail"
            progress.update(task, advance=1, description=f"{name}: {_settings(candidate.settings)} {p50} {verdict}")

        return tune(path, settings, on_candidate=on_candidate, on_plan=on_plan)


def summary_table(report: dict) -> Table:
    """Per artifact: default p50, tuned p50, speed-up, the settings chosen, the agreement."""
    from rich import box

    table = Table(title=f"edgecnn tune {report['model']} on {report['signature']}", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False,
                  caption=("p50: ms at batch 1, default and tuned re-timed back to back; speed-up: default p50 / tuned "
                           "p50; agreement: top-1 agreement with the golden (PyTorch fp32) logits on "
                           f"{report['gate_samples']} samples; tried: candidates timed (pass: gated and passed; one slower "
                           "than the best passing is not gated)"),
                  caption_justify="left")
    table.add_column("artifact", overflow="fold")
    table.add_column("precision", overflow="fold")
    for header in ("default p50", "tuned p50", "speed-up"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("settings chosen", overflow="fold")
    table.add_column("agreement", justify="right")
    table.add_column("tried", justify="right")
    for row in report["artifacts"]:
        passed = sum(1 for c in row["candidates"] if c["passed"])
        table.add_row(
            row["path"], row["precision_label"] or row["precision"], _ms(row["default_p50"]), _ms(row["tuned_p50"]),
            "-" if row["speedup"] is None else f"{row['speedup']:.2f}x",
            "[red]none passed[/]" if row["settings"] is None else _settings(row["settings"]),
            "-" if row["agreement"] is None else f"{100 * row['agreement']:.2f} %",
            f"{len(row['candidates'])} ({passed} pass)",
        )
    return table


def _settings(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def _ms(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _load(value) -> str:
    return "?" if not value else f"{value[0]:.2f}"
