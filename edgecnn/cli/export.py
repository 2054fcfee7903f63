"""`edgecnn export`, `edgecnn quantize` and `edgecnn devices`: from a model to a deploy bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from edgecnn.cli import app
from edgecnn.cli._common import console, handle_errors, note, write_json


def _progress_stage():
    """A spinner line per stage on stderr (stdout keeps the table), plus the stage's duration."""
    from rich.console import Console
    from rich.status import Status

    err = Console(stderr=True)
    state: dict = {"status": None}

    def stage(message: str) -> None:
        if state["status"] is None:
            state["status"] = Status(message, console=err)
            state["status"].start()
        else:
            state["status"].update(message)
        if not err.is_terminal:  # CI logs get one timestamped line per stage instead of a spinner
            err.log(message)

    def stop() -> None:
        if state["status"] is not None:
            state["status"].stop()

    return stage, stop


@app.command("export")
@handle_errors
def export_command(
    *,
    source: str = typer.Argument(..., help="Zoo model name (see `edgecnn models`), a checkpoint (model.pt or its folder), timm:NAME, torchvision:NAME, FILE.py:FUNCTION, package.module:FUNCTION, FILE.pt2 or a TorchScript file."),
    target: str = typer.Option(..., "--target", "-t", help="Device profile (see `edgecnn devices`) or a .toml file."),
    precision: Optional[str] = typer.Option(None, "--precision", "-p", help="fp32, fp16 or int8 (default: the profile's)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Bundle folder (default: dist/MODEL-TARGET[-PRECISION])."),
    force: bool = typer.Option(False, "--force", help="Replace an existing bundle folder."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Zoo, timm: or torchvision: name only: imagenet (default), random, or a weights file."),
    state_dict: Optional[Path] = typer.Option(None, "--state-dict", help="A name's torchvision-style state dict, or one for a factory's model (loaded weights_only)."),
    calib_data: Optional[str] = typer.Option(None, "--calib-data", help="Data SPEC for INT8 calibration and the golden set (default: the checkpoint's data); 'noise' only for latency tests."),
    golden_data: Optional[str] = typer.Option(None, "--golden-data", help="Data SPEC of the golden set, apart from --calib-data (default: the test split of the checkpoint's data, or a part of --calib-data that calibration does not use)."),
    calib_size: int = typer.Option(300, "--calib-size", help="Calibration images (class-balanced sample of the training split)."),
    calib_method: str = typer.Option("minmax", "--calib-method", help="ONNX Runtime / TensorRT calibration: minmax, entropy or percentile."),
    golden_size: int = typer.Option(300, "--golden-size", help="Held-out samples saved with PyTorch logits for on-device checks."),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Input side S (default: the model's; required for a factory, .pt2 or TorchScript source)."),
    resize: Optional[int] = typer.Option(None, "--resize", help="Foreign source: shorter side before the centre crop (default round(S / 0.875)), recorded."),
    mean: Optional[str] = typer.Option(None, "--mean", help="Foreign source: per-channel mean a,b,c on pixels scaled to [0, 1]."),
    std: Optional[str] = typer.Option(None, "--std", help="Foreign source: per-channel std a,b,c on pixels scaled to [0, 1]."),
    channels: Optional[int] = typer.Option(None, "--channels", help="Foreign source: input channels, 1 or 3 (default 3)."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="Foreign source: class list file (one class a line; first word = folder name; line number = class index)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Where downloadable data sets live."),
    seed: int = typer.Option(0, "--seed", help="Seed for the calibration and golden samples."),
    tflite_int8: str = typer.Option("full-integer", "--tflite-int8", help="TFLite int8 scheme: full-integer (int8 compute; needs ai-edge-litert for speed) or weight-only (int8 weights, float compute; fast on tflite-runtime 2.14 too)."),
    no_fallback: bool = typer.Option(False, "--no-fallback", help="INT8: keep the plain int8 result even when it misses the gate (no layers kept in float)."),
    search_budget: float = typer.Option(600.0, "--search-budget", help="INT8: seconds the recipe and fallback search may take (default 600)."),
    no_distill: bool = typer.Option(False, "--no-distill", help="INT8: never fine-tune the weights onto the int8 grid (the distilled recipe runs only when the plain ones miss the aim; it takes up to half the search budget left)."),
    max_drop: Optional[float] = typer.Option(None, "--max-drop", help="INT8 gate: top-1 points int8 may lose (default: verify's, 1.0)."),
    min_agreement: Optional[float] = typer.Option(None, "--min-agreement", help="INT8 gate: fraction of golden samples whose top-1 must match the reference (default: verify's, 0.97)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the export report as JSON."),
) -> None:
    """Export a model for one device: ONNX, fusion, INT8, the target's format, a verified bundle."""
    from edgecnn.api.export import export
    from edgecnn.atomic import check_output_path
    from edgecnn.sources import source_name

    check_output_path(json_path, option="--json")
    if source_name(source) is None:
        _note_alias(source)
    stage, stop = _progress_stage()
    try:
        bundle = export(
            source, target=target, precision=precision, out=out, force=force, weights=weights, state_dict=state_dict,
            calib_data=calib_data, golden_data=golden_data, calib_size=calib_size, calib_method=calib_method,
            data_root=data_root, golden_size=golden_size, seed=seed, tflite_int8=tflite_int8,
            fallback=not no_fallback, distill=not no_distill, search_budget=search_budget, max_drop=max_drop, min_agreement=min_agreement,
            input_size=input_size, resize=resize, mean=mean, std=std, channels=channels, classes=classes,
            progress=lambda event: stage(event.message))
    finally:
        stop()
    print_export_report(bundle.export_result.export_report)
    if json_path:
        write_json(json_path, bundle.export_result.to_dict())
        note(f"wrote {json_path}")


def print_export_report(report) -> None:
    """The table of artifacts (size, export time, agreement with PyTorch) and what to do next."""
    manifest = report.bundle.manifest
    golden = manifest.get("golden") or {}
    table = Table(title=f"{manifest['model']['name']} -> {report.profile.name} ({report.profile.runtime})  "
                        f"bundle {report.bundle.root}",
                  caption=f"parity: {_reference_words(golden)} vs artifact on the golden set ({golden.get('samples')} samples: "
                          f"{golden.get('source')})")
    for column, justify in (("artifact", "left"), ("precision", "left"), ("size MB", "right"),
                            ("export s", "right"), ("agreement", "right"), ("max |diff|", "right"),
                            ("top-1", "right"), ("drop pts", "right")):
        table.add_column(column, justify=justify)
    for row in report.rows:
        parity = row.get("parity") or {}
        top1 = parity.get("top1")
        floats = row.get("layers_in_float") or 0
        table.add_row(
            row["artifact"], row["precision"] + (f" ({floats} layer{'s' if floats != 1 else ''} in float)" if floats else ""),
            f"{row['bytes'] / 1e6:.2f}", f"{row['export_s']:.1f}",
            f"{parity['top1_agreement']:.2%}" if parity else "-",
            f"{parity['max_abs_diff']:.3g}" if parity else "-",
            f"{top1:.2f}" if top1 is not None else "-",
            f"{parity['drop']:+.2f}" if top1 is not None else "-",
        )
    console.print(table)
    for row in report.rows:
        if row.get("int8"):
            console.print(int8_summary(row["artifact"], row["int8"]))
    fusion = manifest.get("fusion") or {}
    if "nodes_before" in fusion:
        console.print(f"fusion: {fusion['nodes_before']} ONNX nodes as exported -> {fusion['nodes_after']} after "
                      f"BatchNorm folding and slimming ({fusion['batchnorm_modules_folded']} BatchNorm layers folded, "
                      f"{fusion['batchnorm_nodes_after']} BatchNormalization nodes left)")
    for warning in report.warnings:
        note(f"warning: {warning}")
    for step in report.next_steps:
        console.print(step)
    console.print(f"bundle written to {report.bundle.root} in {report.seconds:.1f} s; next: "
                  f"edgecnn bench {report.bundle.root}  |  edgecnn verify {report.bundle.root}")


@app.command("quantize")
@handle_errors
def quantize_command(
    *,
    model: Path = typer.Argument(..., help="An fp32 ONNX model (e.g. a bundle's onnx/model.fp32.onnx)."),
    calib_data: str = typer.Option(..., "--calib-data", help="Data SPEC for calibration (digits, idx:DIR, imagefolder:DIR, ...)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file: .onnx (ONNX Runtime QDQ) or .xml (OpenVINO NNCF)."),
    like: Optional[Path] = typer.Option(None, "--like", help="Checkpoint or bundle whose preprocessing the model expects (default: the bundle the model sits in)."),
    golden_data: Optional[str] = typer.Option(None, "--golden-data", help="Data SPEC of the golden set, apart from --calib-data (default: the test split of the checkpoint's data, or a part of --calib-data that calibration does not use)."),
    calib_size: int = typer.Option(300, "--calib-size", help="Calibration images."),
    method: str = typer.Option("minmax", "--method", help="ONNX Runtime calibration: minmax, entropy or percentile."),
    symmetric: bool = typer.Option(False, "--symmetric", help="Symmetric int8 Q/DQ (zero point 0), as TensorRT wants."),
    data_root: Optional[Path] = typer.Option(None, "--data-root"),
    seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
) -> None:
    """INT8-quantize one ONNX model on real calibration data (a single stage of `export`)."""
    from edgecnn.data import calibration_images, load_data
    from edgecnn.errors import BadInputError

    from edgecnn.backends import get_backend, runtime_for_path

    if not model.is_file():
        raise BadInputError(f"not found: {model}")
    if out.exists() and not force:
        raise BadInputError(f"{out} already exists: pass --force to replace it")
    from edgecnn.atomic import check_output_path

    check_output_path(out, option="--out")
    writable = [b for b in backends_with_file_quantizer()]
    if out.suffix.lower() not in {s for b in writable for s in b.suffixes}:
        choices = " or ".join(f"{b.suffixes[0]} ({b.label})" for b in writable)
        raise BadInputError(f"--out must end in {choices}, got {out.name}")
    quantize_file = get_backend(runtime_for_path(out)).file_quantize_step()
    preprocess = _preprocess_for(model, like)
    dataset = load_data(calib_data, data_root=data_root, seed=seed)
    images, _ = calibration_images(dataset, preprocess, n=calib_size, seed=seed)
    note(f"calibrating on {len(images)} images of {calib_data}, preprocessed to {list(preprocess.input_shape)}")
    console.print(quantize_file(model, out, images, method=method, symmetric=symmetric))


def backends_with_file_quantizer():
    from edgecnn.backends import backends

    return [b for b in backends(deploy_only=True) if b.file_quantizer]


def _preprocess_for(model: Path, like: Optional[Path]):
    """The preprocessing a bare ONNX model expects: from --like, or the bundle it sits in."""
    from edgecnn.bundle import MANIFEST_NAME, load_bundle
    from edgecnn.errors import BadInputError

    if like is not None:
        if like.is_dir() and (like / MANIFEST_NAME).is_file() or like.name == MANIFEST_NAME:
            return load_bundle(like).preprocess
        from edgecnn.checkpoint import read_checkpoint

        return read_checkpoint(like if like.is_file() else like / "model.pt")["preprocess_spec"]
    for folder in [model.resolve().parent, *model.resolve().parents][:3]:
        if (folder / MANIFEST_NAME).is_file():
            preprocess = load_bundle(folder).preprocess
            if preprocess is not None:
                return preprocess
    raise BadInputError(
        f"cannot tell how {model.name} expects its input: pass --like CHECKPOINT_OR_BUNDLE "
        "(the preprocessing it was exported with)"
    )


@app.command("devices")
@handle_errors
def devices_command(
    *,
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the profiles as JSON."),
) -> None:
    """List the device profiles (export targets): runtime, precisions, threads, limits."""
    from edgecnn.atomic import check_output_path
    from edgecnn.profiles import list_profiles

    check_output_path(json_path, option="--json")
    profiles = list_profiles()
    table = Table(title="edgecnn device profiles (devices/*.toml)")
    for column in ("target", "runtime", "precisions", "default", "threads", "opset", "max input", "description"):
        table.add_column(column)
    for profile in profiles:
        table.add_row(profile.name + (f" -> {profile.alias_of}" if profile.alias_of else ""), profile.runtime,
                      ", ".join(profile.precisions), profile.default_precision,
                      str(profile.threads or "all cores"), str(profile.opset),
                      f"{profile.max_size}px x{profile.max_batch}", profile.description)
    console.print(table)
    if json_path:
        write_json(json_path, {"devices": [p.to_dict() for p in profiles]})
        note(f"wrote {json_path}")


def int8_summary(artifact: str, record: dict) -> str:
    """One paragraph: the recipe export chose, the layers it kept in float, and the latencies it compared."""
    floats = record.get("layers_in_float") or []
    recipe = (record.get("recipe") or {}).get("label", "?")
    text = f"int8 {artifact}: recipe {recipe}"
    if floats:
        names = ", ".join(f["user_name"] for f in floats[:6]) + (" ..." if len(floats) > 6 else "")
        text += f"; {len(floats)} layer(s) kept in float to pass the gate: {names}"
    timed = [(label, record.get(key)) for label, key in (("full int8", "full_int8_p50_ms"), ("fp32", "fp32_p50_ms"))]
    if record.get("p50_ms") is not None and floats:
        timed.insert(0, ("this artifact", record["p50_ms"]))
    if any(v is not None for _, v in timed):
        text += "; p50 batch 1 on this host (median, >= 1 s timed): " + ", ".join(
            f"{label} {value:.2f} ms" for label, value in timed if value is not None)
        timing = record.get("timing") or {}
        if timing.get("decides") is False and timing.get("note"):
            text += f" ({timing['note']})"
    text += f"; search {record.get('search_s', 0):.0f} s of {record.get('search_budget_s', 0):.0f} s"
    part = record.get("report_part")
    if part:
        drop = "" if part.get("drop") is None else f", drop {part['drop']:+.2f} points"
        text += (f"; on the {part['samples']} golden samples the search did not choose on: agreement "
                 f"{part['agreement']:.2%}{drop} ({'passes' if part['passed'] else 'misses'} the gate)")
    if record.get("scored_with"):
        text += f"; scored with {record['scored_with']}"
    return text


def _note_alias(source: str) -> None:
    """Print `mobilenet -> mobilenet_v2` when a zoo alias is used."""
    if Path(source).exists():
        return
    from edgecnn.zoo.registry import resolve_name

    try:
        resolved = resolve_name(source)
    except Exception:  # noqa: BLE001 - load_model reports unknown names with suggestions
        return
    if resolved != source:
        note(f"{source} -> {resolved}")


def _reference_words(golden: dict) -> str:
    """'PyTorch fp32' for a torch source, else what the manifest says the golden logits came from."""
    reference = str(golden.get("reference") or "pytorch fp32")
    return "PyTorch fp32" if reference == "pytorch fp32" else reference
