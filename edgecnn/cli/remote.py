"""`--on SSH_TARGET` / `--fleet FILE.toml` for bench, verify, build and tune, and the hidden `edgecnn device-agent`.

The remote options are declared once here (`remote_options` adds them to a command and hands it one
`RemoteOptions`). When a device is named, a command hands them to the Python API, which runs the same
command on each device (edgecnn.remote.run_remote); `print_remote` prints one table with a device
column and writes one JSON.
"""

from __future__ import annotations

import functools
import inspect
import json
from dataclasses import fields
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.table import Table

from edgecnn.cli import app
from edgecnn.cli._common import console, handle_errors, write_json
from edgecnn.remote.dispatch import RemoteOptions  # noqa: F401  (the commands' `remote` parameter)


# The Typer declaration of each RemoteOptions field, in the order --help lists them.
_OPTIONS = {
    "on": (Optional[List[str]], typer.Option(
        None, "--on", help="Run on this device over SSH: user@host[:port] or a ~/.ssh/config Host (repeatable).")),
    "fleet": (Optional[Path], typer.Option(
        None, "--fleet", help="Run on every device of this TOML file (see devices/fleets/example.toml).")),
    "identity": (Optional[Path], typer.Option(
        None, "--identity", help="SSH private key for --on/--fleet (default: your ssh config and agent).")),
    "accept_new_host_key": (bool, typer.Option(
        False, "--accept-new-host-key", help="Trust and record a device's host key on first contact (default: known_hosts only).")),
    "keep": (bool, typer.Option(
        False, "--keep", help="Leave the copied bundle on the device (a later run sends only what changed).")),
}
assert set(_OPTIONS) == {f.name for f in fields(RemoteOptions)}  # a field added to one is added to both


def remote_options(command):
    """Give a command the --on/--fleet/--identity/--accept-new-host-key/--keep options, declared once here;
    the command receives them as one keyword argument `remote: RemoteOptions`."""
    signature = inspect.signature(command)
    kept = [p for p in signature.parameters.values() if p.name != "remote"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
             for name, (kind, option) in _OPTIONS.items()]

    @functools.wraps(command)
    def with_remote(**kwargs):
        remote = RemoteOptions(**{name: kwargs.pop(name) for name in _OPTIONS})
        return command(**kwargs, remote=remote)

    # Typer reads the parameters from the signature and their types from the annotations.
    with_remote.__signature__ = signature.replace(parameters=kept + added)
    with_remote.__annotations__ = {**{k: v for k, v in command.__annotations__.items() if k != "remote"},
                                   **{name: kind for name, (kind, _) in _OPTIONS.items()}}
    return with_remote


def remote_command(name: str):
    """Register a command that can run on devices: `app.command(name)`, the CLI's error handling, and the
    remote options (`remote_options`), the one stack bench, verify, build and tune share."""

    def register(command):
        return app.command(name)(handle_errors(remote_options(command)))

    return register


def note(message: str) -> None:
    """One unwrapped stderr line (a fix to copy, a device's reason), whatever the terminal's width."""
    typer.echo(message, err=True)


def print_remote(result, json_path: Optional[Path]) -> None:
    """A command's run on the devices (the API's RemoteResult): one table, one JSON; exit 1 when any failed."""
    report = result.report
    _print(report["command"], report, result.runs)
    if json_path is not None:
        write_json(json_path, report)
        note(f"wrote {json_path}")
    problems = list(result.problems)
    if problems:
        note(f"{len(problems)} of {len(result.runs)} device(s) failed:")
        for line in problems:
            note(f"  {line}")
        raise typer.Exit(1)


def events_to_stderr(event) -> None:
    """The API's progress callback for a run on devices: every message one stderr line."""
    note(event.message)


def refuse_local_paths(options: dict[str, Any]) -> None:
    """Options naming files on this machine cannot travel to a device: one line saying so."""
    from edgecnn.errors import BadInputError

    given = [flag for flag, value in options.items() if value]
    if given:
        raise BadInputError(f"{', '.join(given)} name(s) files on this machine: drop them with --on/--fleet "
                            "(the devices verify against the bundle's golden set; the merged --json has every result)")


def _print(command: str, report: dict, runs) -> None:
    if command == "bench" and report["artifacts"]:
        console.print(_bench_table(report["artifacts"]))
        console.print("Timed on each device by its own edgecnn bench: perf_counter_ns around the runtime call alone, "
                      "p50/p90/p99 by linear interpolation, throughput = batch / mean; the network is outside every "
                      "timed region.", style="dim", highlight=False)
        for name, payload in report["runs"].items():
            console.print(_bench_method(name, payload), style="dim", highlight=False)
    elif command == "verify" and report["artifacts"]:
        console.print(_verify_table(report["artifacts"]))
    elif command == "tune":
        from edgecnn.cli.tune import summary_table

        for name, payload in report["runs"].items():
            console.print(summary_table({**payload, "artifacts": [r for r in report["artifacts"]
                                                                  if r["device"]["name"] == name]}))
        for name, path in report.get("adopted", {}).items():
            note(f"{name}: tuned; {path or 'no tuning file'} is now in the local bundle and its manifest")
    elif command == "build":
        for name, paths in report.get("adopted", {}).items():
            note(f"{name}: built {', '.join(paths) or 'nothing'}; the local manifest records them")
    for run in runs:
        info = run.device_json()
        if run.ok and info.get("emulated"):
            note(f"note: {run.device.name}: {info['emulated']}")
        if run.ok:
            t = run.transfer
            note(f"{run.device.name}: done in {run.seconds:.1f} s ({t.get('copied', 0)} file(s) copied, "
                 f"{t.get('unchanged', 0)} unchanged; {'kept' if t.get('kept') else 'removed'} on the device)")


def _bench_method(name: str, payload: dict) -> str:
    """One line per device: its settings, CPU, load and runtime versions (all from its own JSON)."""
    settings, env = payload.get("settings") or {}, payload.get("environment") or {}
    runs = (f"{settings['iters']} timed runs" if settings.get("iters") is not None
            else f"timed runs for at least {settings.get('min_time_s')} s (and {settings.get('min_iters')} runs)")
    load = [f"{(env.get(k) or ['?'])[0]}" for k in ("loadavg_before", "loadavg_after")]
    versions = ", ".join(f"{k} {v}" for k, v in (env.get("runtime_versions") or {}).items())
    return (f"{name}: {settings.get('warmup')} warm-up runs, then {runs} per artifact and batch, "
            f"{settings.get('threads')} threads, one process per artifact; {env.get('cpu_model')}, "
            f"{env.get('physical_cores')} physical cores, load average {load[0]} -> {load[1]}; {versions}")


def _device_cell(row: dict) -> str:
    device = row["device"]
    emulated = " [yellow](qemu)[/yellow]" if device.get("emulated") else ""
    return f"{device['name']}{emulated}\n[dim]{device.get('machine')}[/dim]"  # the CPU: in the method lines


def _bench_table(rows: list[dict]) -> Table:
    from rich import box

    table = Table(title="edgecnn bench --on", title_justify="left", box=box.SIMPLE_HEAD, caption_justify="left",
                  caption="p50/p90/p99: latency per batch, ms (each device's own timing); load: ms; RSS: peak MB")
    table.add_column("device", overflow="fold")
    table.add_column("artifact", overflow="fold", min_width=24)
    for header in ("batch", "threads", "p50", "p90", "p99", "img/s", "load", "RSS"):
        table.add_column(header, justify="right", no_wrap=True)
    for row in rows:
        lat = row["latency_ms"]
        table.add_row(_device_cell(row), f"{row['name']}\n[dim]{row['runtime']} {row.get('precision') or ''}[/dim]",
                      str(row["batch"]), str(row.get("threads", "")), f"{lat['p50']:.2f}", f"{lat['p90']:.2f}",
                      f"{lat['p99']:.2f}", f"{row['throughput_ips']:.1f}", f"{row['load_ms']:.0f}",
                      f"{row['peak_rss_mb']:.0f}")
    return table


def _verify_table(rows: list[dict]) -> Table:
    from edgecnn.verify.results import format_metric

    table = Table(title="edgecnn verify --on", title_justify="left")
    for column in ("device", "artifact", "precision", "samples", "top-1", "drop", "agreement", "max |Δ|", "result"):
        table.add_column(column, justify="left" if column in ("device", "artifact", "precision", "result") else "right")
    for row in rows:
        verdict = "[green]pass[/]" if row.get("passed") else f"[bold red]FAIL[/] {', '.join(row.get('failed_checks') or [])}"
        table.add_row(_device_cell(row), row["name"], row.get("precision") or "", str(row.get("samples", "")),
                      "-" if row.get("top1") is None else f"{row['top1']:.2f} %", format_metric("drop", row.get("drop")),
                      format_metric("agreement", row.get("agreement")), format_metric("max_abs_diff", row.get("max_abs_diff")),
                      verdict)
    return table


# --- the device side: hidden, called over ssh by the workstation -----------------------------------------
agent_app = typer.Typer(help="The device side of --on/--fleet (called over ssh).", no_args_is_help=True)
app.add_typer(agent_app, name="device-agent", hidden=True)


@agent_app.command("probe")
@handle_errors
def agent_probe(*, runtime: Optional[List[str]] = typer.Option(None, "--runtime", help="Also import these runtimes.")) -> None:
    """What this device is and which runtimes it has (one JSON line)."""
    from edgecnn.remote import agent

    agent.emit(agent.probe(runtime or ()))


@agent_app.command("lock")
@handle_errors
def agent_lock(*, workdir: Path = typer.Argument(...), holder: str = typer.Option("{}", "--holder"),
               hashes: Optional[Path] = typer.Option(None, "--hashes")) -> None:
    """Hold this device's lock until stdin closes."""
    from edgecnn.remote import agent

    agent.hold_lock(workdir, json.loads(holder), hashes_of=hashes)


@agent_app.command("receive")
@handle_errors
def agent_receive(*, dest: Path = typer.Argument(...)) -> None:
    """Unpack a tar stream from stdin into DEST; print the sha256 of each file written."""
    from edgecnn.remote import agent

    agent.emit({"hashes": agent.receive(dest)})
