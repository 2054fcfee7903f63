"""What every command shares: error handling, JSON output, consoles.

Commands stay thin: parse options, call the library, print. Errors raised by the library are
`EdgecnnError`s; `handle_errors` turns them into one line on stderr and the right exit code.
"""

from __future__ import annotations

import functools
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from edgecnn.atomic import write_json_atomic
from edgecnn.errors import DiskFullError, EdgecnnError, disk_full_cause, disk_full_error

# Piped output (CI logs, `| tee`) gets a wide console so tables are not squeezed to 80 columns.
_PIPED_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160
console = Console(width=_PIPED_WIDTH)
err_console = Console(stderr=True)


def debug_enabled() -> bool:
    return os.environ.get("EDGECNN_DEBUG", "") not in ("", "0")


def handle_errors(fn):
    """Wrap a command: an EdgecnnError becomes one stderr line and its exit code.

    Unexpected exceptions also become one line (exit 1) unless EDGECNN_DEBUG=1 asks for the
    traceback, so users never see a wall of internals for a problem they can fix.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except EdgecnnError as exc:
            if debug_enabled():
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - the last line of defence for users
            if debug_enabled():
                raise
            full = disk_full_cause(exc)
            if full is not None:  # wherever the write was, a full disk is the user's to fix
                typer.echo(f"error: {disk_full_error(full)}", err=True)
                raise typer.Exit(DiskFullError.exit_code) from None
            typer.echo(
                f"error: unexpected {type(exc).__name__}: {exc} (set EDGECNN_DEBUG=1 for the traceback)",
                err=True,
            )
            raise typer.Exit(1) from None

    return wrapper


def note(message: str, *, style: str | None = None) -> None:
    """A side message for people (alias resolution, warnings): stderr, so stdout stays clean.

    Printed without markup: messages quote things like `pip install 'edgecnn[litert]'`, which
    rich would otherwise eat as a style tag.
    """
    err_console.print(message, highlight=False, markup=False, style=style)


def write_json(path: Path | str, payload: Any) -> Path:
    """Write JSON atomically: a temp file in the same folder, then rename."""
    return write_json_atomic(path, payload)


def human_count(value: float) -> str:
    """4_231_976 -> '4.23 M' (for tables; the JSON keeps exact integers)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f}"


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


@contextmanager
def progress_events(description: str, *, per_label: bool = False):
    """A callback for the Python API's progress events: steps drive a bar on stderr (on a terminal), notes
    become stderr lines. `per_label`: one bar per step message (verify: one per runtime)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgecnn.api.progress import NOTE, STEP

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        tasks: dict[str, Any] = {}

        def on_event(event) -> None:
            if event.kind == NOTE:
                note(event.message)
            elif event.kind == STEP:
                key = event.message if per_label else description
                if key not in tasks:
                    tasks[key] = progress.add_task(key, total=event.total)
                progress.update(tasks[key], completed=event.done, total=event.total,
                                description=key if per_label else event.message)

        yield on_event
