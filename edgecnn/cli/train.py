"""`edgecnn train`: train a zoo model on a data SPEC; DIR/model.pt and DIR/metrics.json."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from edgecnn.cli import app
from edgecnn.cli._common import console, handle_errors, note


@app.command("train")
@handle_errors
def train_command(
    *,
    name: str = typer.Argument(..., help="Model name or alias (see `edgecnn models`)."),
    data: str = typer.Option(..., "--data", help="Data SPEC: digits, mnist, fashion-mnist, cifar10, idx:DIR, imagefolder:DIR."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs (default: the model's recipe, e.g. mobilenet_v2 15, else 30)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Global batch size \\[default: 64]."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate \\[default: AdamW 3e-3 from scratch, 1e-3 from weights; SGD 0.05, 0.01]."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="adamw or sgd \\[default: adamw]."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for splits, init and augmentation \\[default: 0]."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder \\[default: runs/NAME]."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in --out from its last.pt."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Start from: imagenet, random (default) or a weights file."),
    state_dict: Optional[Path] = typer.Option(None, "--state-dict", help="Start from your own torchvision-style state dict."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Where downloadable datasets live \\[default: ~/.cache/edgecnn/data]."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads \\[default: torch's]."),
    no_augment: bool = typer.Option(False, "--no-augment", help="Train without random shifts/rotations."),
    force: bool = typer.Option(False, "--force", help="Train again over an existing DIR/model.pt."),
) -> None:
    """Train NAME on --data; keep the best epoch (validation top-1) as DIR/model.pt."""
    from edgecnn.errors import BadInputError, require

    require("torch", "train", "edgecnn train")
    from edgecnn.train import DEFAULT_BATCH_SIZE, TrainConfig, train
    from edgecnn.zoo import get_spec

    spec = get_spec(name)
    if spec.name != name:
        note(f"{name} -> {spec.name}")
    if resume and force:
        raise BadInputError("pass either --resume or --force, not both")
    if weights is not None and weights not in ("imagenet", "random") and not Path(weights).is_file():
        raise BadInputError(f"--weights must be imagenet, random or an existing file, got {weights!r}")
    if state_dict is not None and not state_dict.is_file():
        raise BadInputError(f"no such state dict file: {state_dict}")
    from edgecnn.validate import writable_folder

    writable_folder(out or Path("runs") / spec.name, "--out")  # before the epochs, not after them
    config = TrainConfig(
        model=spec.name,
        data=data,
        out_dir=str(out or Path("runs") / spec.name),
        epochs=epochs,  # None: the model's registered recipe, else DEFAULT_EPOCHS
        batch_size=DEFAULT_BATCH_SIZE if batch_size is None else batch_size,
        lr=lr,
        optimizer=optimizer.lower() if optimizer else None,
        seed=0 if seed is None else seed,
        weights=None if weights == "random" else weights,
        state_dict=str(state_dict) if state_dict else None,
        data_root=str(data_root) if data_root else None,
        threads=threads,
        augment=not no_augment,
    )
    result = train(config, force=force, resume=resume)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        _print_result(spec.name, result)


def _print_result(name: str, result) -> None:
    """The run's summary table and where its files are (rank 0 only)."""
    metrics = result.metrics
    table = Table(title=f"{name} on {metrics['data']}")
    for column in ("best epoch", "val top-1", "test top-1", "test top-5", "train time"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{metrics['best_epoch']}/{metrics['epochs_completed']}", f"{metrics['best_val_top1']:.2f} %",
        f"{metrics['test_top1']:.2f} %", f"{metrics['test_top5']:.2f} %", f"{metrics['train_seconds']:.1f} s",
    )
    console.print(table)
    note(f"wrote {result.checkpoint} and {result.out_dir / 'metrics.json'}")
