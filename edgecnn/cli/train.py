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
    import os

    from edgecnn.api.model import train_run
    from edgecnn.api.progress import NOTE
    from edgecnn.zoo import get_spec

    result = train_run(name, data, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed,
                       out=out, resume=resume, force=force, weights=weights, state_dict=state_dict,
                       data_root=data_root, threads=threads, augment=not no_augment, show_progress_bar=True,
                       progress=lambda event: note(event.message) if event.kind == NOTE else None)
    if int(os.environ.get("RANK", "0")) == 0:
        _print_result(get_spec(name).name, result)


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
