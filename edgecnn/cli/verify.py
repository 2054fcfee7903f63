"""`edgecnn verify`: accuracy parity of exported artifacts against the PyTorch fp32 reference, as a CI gate."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from edgecnn.cli._common import console, note, progress_events, write_json
from edgecnn.cli.remote import RemoteOptions, remote_command


@remote_command("verify")
def verify_command(
    *,  # typer passes options by name; keyword-only keeps the 5-positional-parameter rule
    path: Path = typer.Argument(..., help="A bundle folder (or its manifest.json), or one artifact file with --reference."),
    data: Optional[str] = typer.Option(None, "--data", help="Verify on this data SPEC's test split (default: the bundle's golden set)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Where downloadable datasets live."),
    runtime: Optional[str] = typer.Option(None, "--runtime", help="Only the artifacts of this runtime (or the runtime of a single file)."),
    max_drop: Optional[float] = typer.Option(None, "--max-drop", help="Top-1 points an artifact may lose, every precision (default: int8 1.0, fp32/fp16 unchecked)."),
    min_agreement: Optional[float] = typer.Option(None, "--min-agreement", help="Fraction of samples whose top-1 must match the reference, every precision (default: fp32/fp16 0.995, int8 0.97)."),
    min_cosine: Optional[float] = typer.Option(None, "--min-cosine", help="Minimum mean cosine similarity of logits (default: unchecked)."),
    max_abs_diff: Optional[float] = typer.Option(None, "--max-abs-diff", help="Largest absolute logit difference allowed (default: unchecked)."),
    threshold: Optional[List[str]] = typer.Option(None, "--threshold", help="Per-precision override, repeatable: int8.max_drop=2, fp32.min_agreement=0.99, int8.min_cosine=off."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="The reference: a checkpoint (model.pt), or a bundle / golden.npz whose golden set to use."),
    reference_source: str = typer.Option("auto", "--reference-source", help="auto (PyTorch live when torch and the checkpoint are here, else golden), pytorch or golden."),
    precision: Optional[str] = typer.Option(None, "--precision", help="Precision of a single artifact file (fp32, fp16, int8) (default: from its name)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Runtime threads (default: the bundle's device profile, else physical cores)."),
    batch: int = typer.Option(32, "--batch", help="Images per runtime call (an artifact with a static batch runs at its own)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Verify on at most this many samples."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Split seed for --data (default: the model's training seed)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write every number as JSON to this file."),
    junit_path: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML (one test case per artifact) to this file."),
    summary_path: Optional[str] = typer.Option(None, "--summary", help="Append a Markdown table to this file (e.g. \"$GITHUB_STEP_SUMMARY\"; empty: none)."),
    untuned: bool = typer.Option(False, "--untuned", help="Ignore the bundle's tuning for this machine (tuning/<signature>.json): the runners' defaults."),
    remote: RemoteOptions = RemoteOptions(),
) -> None:
    """Check that every artifact still classifies like the PyTorch model; exit 1 if any check fails."""
    from edgecnn.api.device_runs import verify as verify_api
    from edgecnn.atomic import check_output_path

    options = dict(data=data, runtime=runtime, max_drop=max_drop, min_agreement=min_agreement, min_cosine=min_cosine,
                   max_abs_diff=max_abs_diff, thresholds=threshold or [], reference_source=reference_source,
                   precision=precision, threads=threads, batch=batch, limit=limit, seed=seed, untuned=untuned)
    if remote.requested:  # on devices over SSH, against the bundle's golden set (edgecnn.remote); --data is the device's
        from edgecnn.cli.remote import events_to_stderr, print_remote, refuse_local_paths

        refuse_local_paths({"--reference": reference, "--junit": junit_path, "--summary": summary_path,
                            "--data-root": data_root})
        check_output_path(json_path, option="--json")
        return print_remote(verify_api(path, **options, remote=remote, progress=events_to_stderr), json_path)
    from edgecnn.verify import VerifyFailedError, append_summary, write_junit

    # Every output file is checked before anything runs, so a bad path costs no verification.
    check_output_path(json_path, option="--json")
    check_output_path(junit_path, option="--junit")
    check_output_path(summary_path or None, option="--summary")
    with progress_events("verifying", per_label=True) as on_event:
        report = verify_api(path, **options, data_root=data_root, reference=reference, progress=on_event)
    console.print(_table(report))
    for line in report.notes:
        note(f"note: {line}")
    if json_path:
        write_json(json_path, report.to_dict())
        note(f"wrote {json_path}")
    if junit_path:
        write_junit(report, junit_path)
        note(f"wrote {junit_path}")
    if summary_path:
        append_summary(report, summary_path)
        note(f"appended the summary to {summary_path}")
    elif summary_path is not None:
        # `--summary "$GITHUB_STEP_SUMMARY"` outside GitHub Actions expands to an empty string.
        note("--summary is empty (GITHUB_STEP_SUMMARY unset?): no summary written")
    if not report.passed:
        raise VerifyFailedError(report.failure_message(), report)


def _table(report) -> Table:
    from edgecnn.verify import REFERENCE_LIVE, format_metric

    source = report.reference_label or (
        "PyTorch fp32 re-run live" if report.reference_source == REFERENCE_LIVE else "golden logits (PyTorch fp32 at export)")
    title = f"verify {report.model}" + (f" → {report.target}" if report.target else "")
    caption = f"{report.samples} samples from {report.samples_source}; reference: {source}"
    if report.reference_top1 is not None:
        caption += f", top-1 {report.reference_top1:.2f} %"
    table = Table(title=title, caption=caption)
    for column, justify in (("artifact", "left"), ("runtime", "left"), ("precision", "left"), ("top-1", "right"),
                            ("drop", "right"), ("agreement", "right"), ("max |Δ|", "right"), ("cosine", "right"),
                            ("thresholds", "left"), ("result", "left")):
        table.add_column(column, justify=justify)
    for result in report.artifacts:
        failed = set(result.failed_checks)

        def cell(name: str, value) -> str:
            text = format_metric(name, value)
            return f"[bold red]{text}[/]" if name in failed else text

        limits = ", ".join(f"{c.name} {c.op} {format_metric(c.name, c.threshold, threshold=True)}" + (" (skipped)" if c.passed is None else "")
                           for c in result.checks if c.threshold is not None) or "-"
        verdict = "[green]pass[/]" if result.passed else f"[bold red]FAIL[/] {', '.join(result.failed_checks)}"
        table.add_row(
            result.name, result.runtime, _precision(result),
            "-" if result.top1 is None else f"{result.top1:.2f} %", cell("drop", result.drop),
            cell("agreement", result.agreement), cell("max_abs_diff", result.max_abs_diff),
            cell("cosine", result.cosine), limits, verdict,
        )
    return table


def _precision(result) -> str:
    """'fp32', or 'fp32 IR, bf16 compute' when the runtime computed in another precision."""
    from edgecnn.bench.tuned import precision_label

    label = precision_label(result.runtime, result.precision, result.compute_precision)
    if result.layers_in_float:
        label = label.replace(result.precision, result.precision_words, 1)
    return label + (" (tuned)" if result.tuned_from else "")
