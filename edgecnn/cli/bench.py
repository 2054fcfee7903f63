"""`edgecnn bench PATH`: latency of every artifact of a bundle (or of one file), side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from edgecnn.cli._common import console, note, progress_events, write_json
from edgecnn.cli.remote import RemoteOptions, remote_command


@remote_command("bench")
def bench(
    *,  # typer passes options by name; keyword-only keeps the 5-positional-parameter rule
    path: Path = typer.Argument(..., help="A bundle folder, its manifest.json, or one artifact file."),
    runtime: Optional[str] = typer.Option(
        None, "--runtime", help="Only this runtime's artifacts (bundle; 'torch' runs the checkpoint the manifest records), "
             "or the runtime for a file."
    ),
    threads: Optional[int] = typer.Option(
        None, "--threads", help="Threads per runtime (default: the bundle's device profile, else the physical cores)."
    ),
    batch: str = typer.Option("1", "--batch", help="Batch size, or a sweep: 1,8."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed runs before timing."),
    iters: Optional[int] = typer.Option(None, "--iters", help="Timed runs per artifact and batch."),
    min_time: Optional[float] = typer.Option(
        None, "--min-time", help="Time each artifact and batch for at least S seconds (default: 3 s unless --iters)."
    ),
    baseline: Optional[str] = typer.Option(
        None, "--baseline",
        help="Speed-ups against this artifact (a name or a runtime; 'torch' adds the PyTorch eager run "
             "of the checkpoint the manifest records) (default: the slowest at each batch size).",
    ),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the full report as JSON."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw p50 bars with p90-p99 whiskers (PNG)."),
    timeout: Optional[float] = typer.Option(
        None, "--timeout", help="Give up on one artifact and batch after S seconds."
    ),
    untuned: bool = typer.Option(
        False, "--untuned", help="Ignore the bundle's tuning for this machine (tuning/<signature>.json): the runners' defaults."
    ),
    remote: RemoteOptions = RemoteOptions(),
) -> None:
    """Benchmark latency, throughput, load time and memory of each artifact, each in its own process."""
    from edgecnn.api.device_runs import bench as bench_api
    from edgecnn.atomic import check_output_path
    from edgecnn.validate import optional_seconds

    optional_seconds(min_time, "--min-time")
    optional_seconds(timeout, "--timeout")
    options = dict(runtime=runtime, threads=threads, batch=batch, warmup=warmup, iters=iters, min_time=min_time,
                   baseline=baseline, timeout=timeout, untuned=untuned)
    if remote.requested:  # on devices over SSH: the same bench runs there (edgecnn.remote)
        from edgecnn.cli.remote import events_to_stderr, print_remote

        if plot is not None:
            from edgecnn.errors import BadInputError

            raise BadInputError("--plot draws one machine's run: drop it with --on/--fleet (the JSON has every device)")
        check_output_path(json_path, option="--json")
        return print_remote(bench_api(path, **options, remote=remote, progress=events_to_stderr), json_path)

    # Refuse an unwritable output before measuring anything (it used to fail after the whole run).
    check_output_path(json_path, option="--json")
    check_output_path(plot, option="--plot")
    with progress_events("benchmarking") as on_event:
        result = bench_api(path, **options, progress=on_event)
    report = result.to_dict()
    _print_report(report, result.method)
    if json_path is not None:
        write_json(json_path, report)
        note(f"wrote {json_path}")
    if plot is not None:
        from edgecnn.report.plots import plot_latency

        plot_latency(report["artifacts"], plot)
        note(f"wrote {plot}")


def _print_report(report: dict, method: str) -> None:
    """The table, the method, the environment and what each runtime applied."""
    console.print(results_table(report))
    console.print(method, style="dim", highlight=False)
    tuned = [f"{r['name']} {r['threads']} threads" for r in report["artifacts"] if r.get("tuned_from")]
    if tuned:
        console.print(f"Tuned (threads and runner options from {report['artifacts'][0].get('tuned_from') or 'tuning/'}"
                      f"; 'Applied by' says what each runtime ran with): {', '.join(tuned)}", style="dim", highlight=False)
    env = report["environment"]
    console.print(
        f"Environment: {env['cpu_model']}, {env['physical_cores']} physical cores, "
        f"load average {_fmt_load(env.get('loadavg_before'))} -> {_fmt_load(env.get('loadavg_after'))}; "
        + ", ".join(f"{k} {str(v).split('-')[0]}" for k, v in env["runtime_versions"].items()),
        style="dim", highlight=False,
    )
    runtime_of = {row["name"]: row["runtime"] for row in report["artifacts"]}
    for name, applied in env.get("runtime_options", {}).items():
        console.print(f"Applied by {name}: {_fmt_applied(applied, runtime_of.get(name))}",
                      style="dim", highlight=False)


def results_table(report: dict) -> Table:
    """One row per artifact and batch size (mean, std, min, max and the settings are in --json)."""
    from rich import box

    baseline = report.get("baseline")
    reference = f"vs {baseline}" if baseline else "vs the slowest at each batch size"
    table = Table(
        title="edgecnn bench", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0),
        caption=("p50/p90/p99: latency per batch, ms; load and 1st (first inference): ms; "
                 f"RSS: peak resident MB; size: MB; speed-up: p50 {reference}"),
        caption_justify="left",
    )
    table.add_column("artifact", overflow="fold", min_width=14)
    for header in ("batch", "p50", "p90", "p99", "img/s", "load", "1st", "RSS", "size", "speed-up"):
        table.add_column(header, justify="right", no_wrap=True)
    for row in report["artifacts"]:
        lat = row["latency_ms"]
        table.add_row(
            f"{row['name']}\n[dim]{row['runtime']} {_precision(row)}[/dim]".rstrip(),
            str(row["batch"]),
            f"{lat['p50']:.2f}", f"{lat['p90']:.2f}", f"{lat['p99']:.2f}", _fmt_rate(row["throughput_ips"]),
            f"{row['load_ms']:.0f}", f"{row['first_inference_ms']:.1f}", f"{row['peak_rss_mb']:.0f}",
            f"{row['size_mb']:.2f}", f"{row['speedup']:.2f}x",
        )
    return table


def _precision(row: dict) -> str:
    """'fp32', or 'fp32 IR, bf16 compute' when the runtime computed in another precision; '(tuned)' when tuned."""
    from edgecnn.bench.tuned import precision_label

    text = precision_label(row["runtime"], row.get("precision"), row.get("compute_precision"))
    return text + (" (tuned)" if row.get("tuned_from") else "")


def _fmt_rate(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _fmt_load(value) -> str:
    return "?" if not value else f"{value[0]:.2f}"


def _fmt_applied(applied: dict, runtime: str | None) -> str:
    """The settings that change a number, in the order its backend lists them; the rest is in --json."""
    from edgecnn.backends import get_backend

    keys = get_backend(runtime).applied_keys if runtime else ()
    shown = [f"{key}={applied[key]}" for key in keys if key in applied and applied[key] is not None]
    return ", ".join(shown) or ", ".join(f"{k}={v}" for k, v in applied.items())
