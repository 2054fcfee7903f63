"""`edgecnn explain`: which layers of a bundle's INT8 artifact cost the most accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from edgecnn.cli import app
from edgecnn.cli._common import console, handle_errors, note, write_json


@app.command("explain")
@handle_errors
def explain_command(
    *,
    bundle_path: Path = typer.Argument(..., help="A bundle folder with an int8 artifact (edgecnn export --precision int8)."),
    artifact: Optional[str] = typer.Option(None, "--artifact", help="The int8 artifact to explain (path in the bundle; default: every int8 artifact)."),
    top: int = typer.Option(10, "--top", help="Layers shown in the table (the JSON has all)."),
    budget: float = typer.Option(120.0, "--budget", help="Seconds per artifact for measuring each layer's gain when kept float."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write every layer's numbers as JSON."),
) -> None:
    """Per quantized layer: PyTorch module name, node, op, SQNR of its int8 output, gain when kept float."""
    from edgecnn.api.host_runs import explain as explain_api
    from edgecnn.atomic import check_output_path
    from edgecnn.cli.export import _progress_stage
    from edgecnn.errors import BadInputError
    from edgecnn.validate import seconds

    check_output_path(json_path, option="--json")
    seconds(budget, "--budget")
    if top < 1:
        raise BadInputError(f"--top must be at least 1, got {top}")
    stage, stop = _progress_stage()
    try:
        result = explain_api(bundle_path, artifact=artifact, budget=budget, progress=lambda event: stage(event.message))
    finally:
        stop()
    for explanation in result.artifacts:
        console.print(_table(explanation, top))
    if json_path:
        write_json(json_path, result.to_dict())
        note(f"wrote {json_path}")


def _table(result, top: int) -> Table:
    floats = result.layers_in_float
    title = f"{result.artifact}: the {min(top, len(result.layers))} costliest of {len(result.layers)} quantized layers"
    if floats:
        title += f" ({len(floats)} kept in float at export: {', '.join(f['user_name'] for f in floats[:4])})"
    table = Table(title=title, caption=f"SQNR: int8 layer output vs fp32, dB (higher is better), on up to 8 golden "
                                       f"images; gain: share of the logit error (MSE vs reference) gone when only "
                                       f"that layer runs in float. {result.method}")
    for column, justify in (("#", "right"), ("layer (PyTorch module)", "left"), ("node", "left"), ("op", "left"),
                            ("SQNR dB", "right"), ("gain when float", "right"), ("agreement if float", "right")):
        table.add_column(column, justify=justify)
    for rank, layer in enumerate(result.layers[:top], 1):
        table.add_row(str(rank), layer.user_name, layer.node, layer.op,
                      "-" if layer.sqnr_db is None else f"{layer.sqnr_db:.1f}",
                      "-" if layer.gain is None else f"{layer.gain:+.1%}",
                      "-" if layer.agreement_float is None else f"{layer.agreement_float:.2%}")
    return table
