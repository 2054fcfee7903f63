"""`edgecnn eval`: top-1/top-5 of a checkpoint or a zoo model on the test split of a data SPEC."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from edgecnn.cli import app
from edgecnn.cli._common import console, handle_errors, note, write_json


@app.command("eval")
@handle_errors
def eval_command(
    *,
    source: str = typer.Argument(..., help="A checkpoint (model.pt or its folder) or a model NAME."),
    data: Optional[str] = typer.Option(None, "--data", help="Data SPEC \\[default: the checkpoint's own data]."),
    split: str = typer.Option("test", "--split", help="test, val or train."),
    weights: Optional[str] = typer.Option(None, "--weights", help="With a NAME: imagenet (default), random or a weights file."),
    state_dict: Optional[Path] = typer.Option(None, "--state-dict", help="With a NAME: your torchvision-style state dict."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Where downloadable datasets live."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Split seed \\[default: the checkpoint's, else 0]."),
    batch_size: int = typer.Option(256, "--batch-size", help="Inference batch size."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON to this file."),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Foreign source: input side S."),
    resize: Optional[int] = typer.Option(None, "--resize", help="Foreign source: shorter side before the centre crop."),
    mean: Optional[str] = typer.Option(None, "--mean", help="Foreign source: per-channel mean a,b,c on pixels in [0, 1]."),
    std: Optional[str] = typer.Option(None, "--std", help="Foreign source: per-channel std a,b,c on pixels in [0, 1]."),
    channels: Optional[int] = typer.Option(None, "--channels", help="Foreign source: 1 or 3 input channels."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="Foreign source: class list file (line number = class index)."),
) -> None:
    """Report top-1 and top-5 accuracy on the test split (of a zoo model, a checkpoint or your own model)."""
    from edgecnn.atomic import check_output_path
    from edgecnn.errors import BadInputError, require

    check_output_path(json_path, option="--json")
    require("torch", "torch", "edgecnn eval")
    from edgecnn.data import load_data, preprocess_for
    from edgecnn.sources import StatedPreprocess, is_foreign, load_source
    from edgecnn.train import evaluate

    stated = StatedPreprocess(input_size=input_size, resize=resize, mean=mean, std=std, channels=channels,
                              classes=str(classes) if classes else None)
    foreign = is_foreign(source)
    if not foreign and input_size is not None:
        raise BadInputError("--input-size describes your own model; a zoo name or checkpoint is evaluated at the "
                            "size its data and recipe give")
    loaded = load_source(source, weights=weights, state_dict=state_dict, stated=stated)
    if not foreign and not loaded.from_checkpoint and loaded.spec.name != source:
        note(f"{source} -> {loaded.spec.name}")
    checkpoint = loaded.checkpoint or {}
    data = data or checkpoint.get("data")
    if not data:
        raise BadInputError("--data SPEC is needed to evaluate a model NAME (e.g. --data digits)")
    if data_root is None and checkpoint.get("data_root"):
        data_root = Path(checkpoint["data_root"])
    split_seed = seed if seed is not None else int(checkpoint.get("seed") or 0)
    # A foreign model's folders are looked up in its class list (e.g. ImageNet synsets).
    dataset = load_data(data, data_root=data_root, seed=split_seed,
                        class_names=tuple(loaded.class_names or ()) or None if foreign else None)
    if dataset.num_classes != loaded.num_classes:
        raise BadInputError(
            f"class-count mismatch: {source} predicts {loaded.num_classes} classes, {data} has {dataset.num_classes}"
        )
    if foreign or loaded.from_checkpoint:
        preprocess = loaded.preprocess  # stated, or from the library's config: never guessed from the data
    else:
        preprocess = preprocess_for(loaded.spec, dataset, pretrained=True, data_spec=data)
    if not loaded.accuracy_meaningful:
        note("random weights: this accuracy means nothing")
    top1, top5 = evaluate(loaded.model, dataset.split(split), preprocess, batch_size=batch_size)
    result = {
        "model": loaded.name,
        "source": str(source),
        "weights": loaded.provenance.get("weights"),
        "data": data,
        "split": split,
        "seed": split_seed,
        "samples": len(dataset.split(split)),
        "top1": round(top1, 3),
        "top5": round(top5, 3),
        "preprocess": preprocess.to_dict(),
        "accuracy_meaningful": loaded.accuracy_meaningful,
    }
    _print_result(result, top1, top5)
    if json_path:
        write_json(json_path, result)
        note(f"wrote {json_path}")


def _print_result(result: dict, top1: float, top5: float) -> None:
    table = Table(title=f"{result['model']} on {result['data']} ({result['split']}, {result['samples']} images)")
    for column in ("top-1", "top-5"):
        table.add_column(column, justify="right")
    table.add_row(f"{top1:.2f} %", f"{top5:.2f} %")
    console.print(table)
