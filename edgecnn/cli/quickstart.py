"""`edgecnn quickstart`: train, export for every target, verify, bench and report, in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgecnn.cli import app
from edgecnn.cli._common import console, handle_errors, note


@app.command("quickstart")
@handle_errors
def quickstart_command(
    *,
    model: str = typer.Option("mobilenet_v2", "--model", help="Zoo model to train and deploy, or a model of your own "
                              "(timm:NAME, torchvision:NAME, FILE.py:FUNCTION, module:FUNCTION, .pt2, TorchScript, "
                              ".onnx): not trained, exported with --data as calibration photos."),
    data: Optional[str] = typer.Option(None, "--data", help="Data SPEC (default digits, bundled with scikit-learn: "
                                       "offline; a model of your own needs imagefolder:DIR photos)."),
    golden_data: Optional[str] = typer.Option(None, "--golden-data", help="Your own model: the golden set verify checks, "
                                              "apart from --data (default: a part of --data calibration does not use)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="timm:/torchvision: model: imagenet, random or FILE."),
    state_dict: Optional[Path] = typer.Option(None, "--state-dict", help="Your own model: a state dict for a factory's model."),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Your own model: input side S."),
    resize: Optional[int] = typer.Option(None, "--resize", help="Your own model: shorter side before the centre crop."),
    mean: Optional[str] = typer.Option(None, "--mean", help="Your own model: mean a,b,c on pixels in [0, 1]."),
    std: Optional[str] = typer.Option(None, "--std", help="Your own model: std a,b,c on pixels in [0, 1]."),
    channels: Optional[int] = typer.Option(None, "--channels", help="Your own model: 1 or 3 input channels."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="Your own model: class list (line number = class index)."),
    out: Path = typer.Option(Path("runs/quickstart"), "--out", "-o", help="Run folder."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs (default: a short schedule that reaches 97 % on digits)."),
    target: Optional[list[str]] = typer.Option(None, "--target", help="Only these targets (repeatable; default: every one this machine can build)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Threads for training, verify and bench (default: physical cores)."),
    bench_time: float = typer.Option(1.0, "--bench-time", help="Seconds of timed runs per artifact."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run folder."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Where downloadable data sets live."),
) -> None:
    """The whole pipeline on bundled data, offline: train -> export -> verify -> bench -> report.html.

    With a model of your own: load -> export (calibrated on --data) -> verify (golden set) -> bench -> report.
    """
    from edgecnn.quickstart import QuickstartSettings, run_quickstart
    from edgecnn.report import print_summary
    from edgecnn.validate import seconds, writable_folder

    writable_folder(out, "--out")
    seconds(bench_time, "--bench-time")
    own = {"weights": weights, "state_dict": str(state_dict) if state_dict else None, "input_size": input_size,
           "resize": resize, "mean": mean, "std": std, "channels": channels,
           "classes": str(classes) if classes else None}
    settings = QuickstartSettings(
        model=model, data=data, out=out, epochs=epochs, targets=tuple(target) if target else None,
        force=force, threads=threads, bench_min_time_s=bench_time, data_root=str(data_root) if data_root else None,
        source_options=own, golden_data=golden_data,
    )
    result = run_quickstart(settings, step=lambda message: note(message, style="bold"))
    print_summary(result.rows, console)
    console.print(f"report: {result.report}  ({result.seconds:.0f} s in all; rebuild with `edgecnn report {result.run_dir}`)")
    if result.failures:
        from edgecnn.errors import CheckFailedError

        raise CheckFailedError(f"verify failed for {', '.join(result.failures)}: see {result.run_dir}/verify.json")
