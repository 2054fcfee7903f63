"""The `edgecnn` command line: one module per command, each thin.

Command modules are imported here so Typer knows them, but every heavy SDK (torch included) is
imported inside the command function, so `edgecnn bench` on a device never imports torch.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="edgecnn",
    help="Train, export, quantize, benchmark and verify CNN classifiers for edge devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module registers its command(s) on `app` when imported.
from edgecnn.cli import remote as _remote  # noqa: E402,F401  (the hidden device-agent; --on options)
from edgecnn.cli import models as _models  # noqa: E402,F401
from edgecnn.cli import train as _train  # noqa: E402,F401
from edgecnn.cli import eval as _eval  # noqa: E402,F401
from edgecnn.cli import bench as _bench  # noqa: E402,F401
from edgecnn.cli import export as _export  # noqa: E402,F401
from edgecnn.cli import explain as _explain  # noqa: E402,F401
from edgecnn.cli import build as _build  # noqa: E402,F401
from edgecnn.cli import verify as _verify  # noqa: E402,F401
from edgecnn.cli import quickstart as _quickstart  # noqa: E402,F401
from edgecnn.cli import report as _report  # noqa: E402,F401
from edgecnn.cli import tune as _tune  # noqa: E402,F401
from edgecnn.cli import compare as _compare  # noqa: E402,F401


def main() -> None:
    """Console-script entry point."""
    app()
