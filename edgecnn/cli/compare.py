"""`edgecnn compare SOURCE... --target T[,T] --data SPEC`: which model to ship — the answer first, then the table."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from edgecnn.cli._common import console, human_count, note, write_json
from edgecnn.cli.remote import RemoteOptions, remote_command


@remote_command("compare")
def compare(
    *,  # typer passes options by name
    sources: Optional[List[str]] = typer.Argument(
        None, help="Models: zoo names, checkpoints, timm:NAME, torchvision:NAME, FILE.onnx, FILE.py:FUNCTION, ..."),
    target: List[str] = typer.Option(..., "--target", help="Targets, comma-separated or repeated: onnx,x86,arm,..."),
    precision: str = typer.Option("fp32,int8", "--precision", help="Precisions to compare: fp32,fp16,int8."),
    data: str = typer.Option(..., "--data", help="Labelled data every candidate is verified on (digits, imagefolder:DIR, ...)."),
    zoo: Optional[str] = typer.Option(
        None, "--zoo", help="Add zoo models, trained here with their recipes on --data (or reused from --out): "
                            "lightweight, baseline, or NAME,NAME."),
    max_latency: Optional[float] = typer.Option(None, "--max-latency", help="Latency budget: p50 in ms."),
    max_size: Optional[float] = typer.Option(None, "--max-size", help="Size budget: the artifact's files, MB."),
    out: Path = typer.Option(Path("runs/compare"), "--out", help="Bundles, checkpoints, results and report.html; a rerun continues here."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write every number and reason as JSON."),
    force: bool = typer.Option(False, "--force", help="Export and measure again what --out already holds (checkpoints are kept)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="--zoo training epochs (default: each model's recipe)."),
    calib_data: Optional[str] = typer.Option(None, "--calib-data", help="INT8 calibration data (default: a trained model's own data, else --data)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Where downloadable datasets live."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Threads per runtime (default: each target's device profile)."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed runs before timing."),
    min_time: float = typer.Option(1.0, "--min-time", help="Time each artifact for at least S seconds."),
    iters: Optional[int] = typer.Option(None, "--iters", help="Timed runs per artifact (instead of --min-time)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Verify on at most N samples of --data."),
    search_budget: float = typer.Option(600.0, "--search-budget", help="Seconds the INT8 fallback search may take per export."),
    weights: Optional[str] = typer.Option(None, "--weights", help="SOURCEs that are names (timm:, torchvision:): imagenet (default), random or a file."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="Foreign SOURCEs: input side, one for all or one per SOURCE in order: 240,260."),
    resize: Optional[str] = typer.Option(None, "--resize", help="Foreign SOURCEs: shorter side before the centre crop, one for all or one per SOURCE."),
    mean: Optional[str] = typer.Option(None, "--mean", help="Foreign SOURCEs: per-channel mean a,b,c on pixels scaled to [0, 1]."),
    std: Optional[str] = typer.Option(None, "--std", help="Foreign SOURCEs: per-channel std a,b,c on pixels scaled to [0, 1]."),
    channels: Optional[int] = typer.Option(None, "--channels", help="Foreign SOURCEs: input channels, 1 or 3."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="Foreign SOURCEs: class list file (one class a line)."),
    remote: RemoteOptions = RemoteOptions(),
) -> None:
    """Which model should I ship: accuracy × latency × size of every SOURCE × target × precision, with the Pareto front."""
    from edgecnn.atomic import check_output_path
    from edgecnn.compare_models.run import compare as compare_api

    from edgecnn.compare_models.sources import per_source_options

    check_output_path(json_path, option="--json")
    stated = per_source_options(list(sources or []), weights=weights, input_size=input_size, resize=resize,
                                mean=mean, std=std, channels=channels, classes=str(classes) if classes else None)
    result = compare_api(*(sources or []), targets=target, precisions=precision, data=data, zoo=zoo,
                         max_latency_ms=max_latency, max_size_mb=max_size, out=out, force=force, epochs=epochs,
                         calib_data=calib_data, data_root=str(data_root) if data_root else None, threads=threads,
                         warmup=warmup, min_time_s=min_time, iters=iters, verify_limit=limit,
                         search_budget_s=search_budget, remote=remote if remote.requested else None,
                         source_options=stated,
                         progress=_progress_line)
    print_result(result)
    if json_path is not None:
        write_json(json_path, result.to_dict())
        note(f"wrote {json_path}")
    if not result.anything_measured:
        note("nothing could be measured: every candidate failed (reasons in the table)")
        raise typer.Exit(1)


def _progress_line(event) -> None:
    """Every event one stderr line: the count done / left and the time so far ride in the step's message."""
    note(event.message)


def print_result(result) -> None:
    """The answer first (one line per device), then the table, the method and where the report is."""
    for answer in result.answers:
        console.print(answer.line, style="bold", highlight=False, markup=False)
        if answer.front:
            console.print(f"  Pareto front on {answer.device} (fastest first): {', '.join(answer.front)}",
                          highlight=False, markup=False)
    console.print(results_table(result))
    console.print(result.method, style="dim", highlight=False, markup=False)
    for line in result.environment():
        console.print(f"Environment: {line}", style="dim", highlight=False, markup=False)
    if result.report_html:
        note(f"report: {result.report_html} ({result.measured_now} measured now, {result.reused} reused from --out)")


def results_table(result) -> Table:
    from rich import box

    table = Table(title="edgecnn compare", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  caption="front: on the Pareto front; ship: the answer for its device; drop: points vs the "
                          "model's PyTorch fp32; p50/p90: ms at batch 1; RSS: peak MB; size: MB; MACs per image",
                  caption_justify="left")
    table.add_column("candidate", overflow="fold", min_width=28)
    table.add_column("device", overflow="fold")
    for header in ("", "top-1", "drop", "p50", "p90", "RSS", "size", "params", "MACs"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("reason (all of it: report.html, --json)", overflow="fold", max_width=48)
    chosen = {(a.device, a.choice) for a in result.answers}
    front = {(a.device, name) for a in result.answers for name in a.front}
    for row in sorted(result.candidates, key=lambda r: (r.device, not r.measured, -(r.top1 or 0.0))):
        mark = "ship" if (row.device, row.name) in chosen else ("front" if (row.device, row.name) in front else "")
        table.add_row(row.name, row.device, mark if row.measured else "[red]failed[/red]", _num(row.top1, "{:.2f}"),
                      _num(row.drop, "{:+.2f}"), _num(row.p50_ms, "{:.3g}") + ("*" if row.emulated else ""),
                      _num(row.p90_ms, "{:.3g}"), _num(row.peak_rss_mb, "{:.0f}"), _num(row.size_mb, "{:.3g}"),
                      human_count(row.params) if row.params else "-", human_count(row.macs) if row.macs else "-",
                      _short(row.reason) or ("* emulated CPU: not ranked" if row.emulated else ""))
    return table


def _short(reason: str, limit: int = 90) -> str:
    """A reason cut to a table cell; the whole of it is in report.html and --json."""
    return reason if len(reason) <= limit else reason[:limit - 1].rstrip() + "…"


def _num(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
