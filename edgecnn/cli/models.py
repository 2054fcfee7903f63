"""`edgecnn models` and `edgecnn info`: what is in the zoo, and what one model is made of."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from edgecnn.cli import app
from edgecnn.cli._common import console, handle_errors, human_count, note, write_json


@app.command("models")
@handle_errors
def models_command(
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the table as JSON to this file."),
    family: Optional[str] = typer.Option(None, help="Only 'lightweight' or 'baseline'."),
) -> None:
    """List every model in the zoo: family, parameters, multiply-adds, input size, aliases."""
    from edgecnn.atomic import check_output_path
    from edgecnn.errors import require

    check_output_path(json_path, option="--json")
    # Counting parameters and multiply-adds builds every network.
    require("torch", "torch", "edgecnn models")
    from edgecnn.zoo.catalog import zoo_rows

    rows = zoo_rows(family=family)
    table = Table(title="edgecnn model zoo", caption="MACs: multiply-adds of conv + linear layers, one image at the default input")
    for column, justify in (("name", "left"), ("family", "left"), ("params", "right"), ("MACs", "right"),
                            ("input", "left"), ("min side", "right"), ("source", "left"), ("aliases", "left")):
        table.add_column(column, justify=justify)
    for row in rows:
        table.add_row(
            row["name"], row["family"], human_count(row["params"]), human_count(row["macs"]),
            "x".join(map(str, row["input_size"])), str(row["min_size"]), row["source"], ", ".join(row["aliases"]),
        )
    console.print(table)
    if json_path:
        write_json(json_path, {"models": rows})
        note(f"wrote {json_path}")


@app.command("info")
@handle_errors
def info_command(
    name: str = typer.Argument(..., help="Model name or alias (see `edgecnn models`), or timm:NAME, torchvision:NAME, FILE.py:FUNCTION, FILE.pt2, a TorchScript file."),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Input side H (= W); default: the model's (required for a factory, .pt2 or TorchScript)."),
    num_classes: Optional[int] = typer.Option(None, "--num-classes", help="Classifier outputs (default 1000; a file source has its own)."),
    channels: Optional[int] = typer.Option(None, "--channels", help="Foreign source: input channels, 1 or 3 (default 3)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the breakdown as JSON to this file."),
) -> None:
    """Per-layer breakdown of one model: type, output shape, parameters, multiply-adds."""
    from edgecnn.atomic import check_output_path
    from edgecnn.errors import BadInputError, require

    check_output_path(json_path, option="--json")
    require("torch", "torch", "edgecnn info")
    from edgecnn.sources import is_foreign

    if num_classes is not None and num_classes < 1:
        raise BadInputError(f"--num-classes must be at least 1, got {num_classes}")
    if is_foreign(name):
        title, count, profile = _foreign_profile(name, input_size=input_size, num_classes=num_classes, channels=channels)
    else:
        title, count, profile = _zoo_profile(name, input_size=input_size, num_classes=num_classes or 1000)
    shape = profile.input_size
    table = Table(title=f"{title}  input {'x'.join(map(str, shape))}  {count} classes")
    for column, justify in (("layer", "left"), ("type", "left"), ("output", "left"), ("params", "right"), ("MACs", "right")):
        table.add_column(column, justify=justify)
    for layer in profile.layers:
        table.add_row(layer.name, layer.type, "x".join(map(str, layer.output_shape)),
                      f"{layer.params:,}", f"{layer.macs:,}")
    table.add_section()
    table.add_row("total", "", "", f"{profile.total_params:,}", f"{profile.total_macs:,}")
    console.print(table)
    if json_path:
        payload = {"model": title, "num_classes": count, **profile.to_dict()}
        write_json(json_path, payload)
        note(f"wrote {json_path}")


def _zoo_profile(name: str, *, input_size: Optional[int], num_classes: int):
    """(name, classes, profile) of a zoo model, built on the meta device."""
    from edgecnn.errors import BadInputError
    from edgecnn.zoo import get_spec
    from edgecnn.zoo.profile import profile_spec

    spec = get_spec(name)
    if spec.name != name:
        note(f"{name} -> {spec.name}")
    side = spec.input_size[1] if input_size is None else input_size
    if side < spec.min_size:
        raise BadInputError(f"{spec.name} needs an input side of at least {spec.min_size}, got {side}")
    return spec.name, num_classes, profile_spec(spec, num_classes=num_classes, side=side)


def _foreign_profile(source: str, *, input_size: Optional[int], num_classes: Optional[int], channels: Optional[int]):
    """(source, classes, profile) of a foreign model; a library's is built with random weights (offline)."""
    from edgecnn.sources import StatedPreprocess, load_source, parse_source
    from edgecnn.sources.parse import LIBRARY_KINDS
    from edgecnn.zoo.profile import profile_model

    library = parse_source(source).kind in LIBRARY_KINDS
    loaded = load_source(source, weights="random" if library else None, num_classes=num_classes,
                         stated=StatedPreprocess(input_size=input_size, channels=channels), need_normalization=False)
    return source, loaded.num_classes, profile_model(loaded.model, loaded.preprocess.input_shape)
