"""`edgecnn tune BUNDLE`: the fastest runtime settings on this machine that still pass the accuracy gate."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from edgecnn.cli._common import console, note, progress_events, write_json
from edgecnn.cli.remote import RemoteOptions, remote_command


@remote_command("tune")
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
    from edgecnn.api.device_runs import tune as tune_api
    from edgecnn.atomic import check_output_path
    from edgecnn.validate import seconds

    seconds(budget, "--budget")
    seconds(min_time, "--min-time")
    options = dict(runtime=runtime, budget=budget, min_time=min_time, warmup=warmup, limit=limit,
                   thresholds=threshold or None, force=force)
    check_output_path(json_path, option="--json")
    if remote.requested:
        # Tuned on each device by its own edgecnn tune; its tuning file and manifest record come back here.
        from edgecnn.cli.remote import events_to_stderr, print_remote

        return print_remote(tune_api(path, **options, remote=remote, progress=events_to_stderr), json_path)
    with progress_events("tuning") as on_event:
        result = tune_api(path, **options, progress=on_event)
    report = result.to_dict()
    console.print(summary_table(report))
    console.print(result.method, style="dim", highlight=False)
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


def summary_table(report: dict) -> Table:
    """Per artifact: default p50, tuned p50, speed-up, the settings chosen, the agreement."""
    from rich import box

    table = Table(title=f"edgecnn tune {report['model']} on {report['signature']}", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False,
                  caption=("p50: ms at batch 1, default and tuned re-timed side by side (median of 3 alternating rounds); speed-up: default p50 / tuned "
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
