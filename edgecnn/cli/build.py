"""`edgecnn build BUNDLE`: build a TensorRT bundle's engines on the device that will run them.

Runs where TensorRT is (a Jetson with JetPack, a CUDA machine); never imports torch. Engines the
bundle's build_engine.sh already built here are adopted (hash + provenance) instead of rebuilt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from edgecnn.cli import app
from edgecnn.cli._common import console, handle_errors, note, write_json
from edgecnn.errors import BadInputError


class TensorRTMissingError(BadInputError):
    """TensorRT's Python package is not importable on this machine (exit 2)."""


@app.command("build")
@handle_errors
def build(
    bundle_path: Path = typer.Argument(..., help="A TensorRT bundle folder (from edgecnn export --target jetson|cuda)."),
    precision: Optional[str] = typer.Option(
        None, "--precision", help="Build only this precision (fp32|fp16|int8) [default: the bundle's planned engines]."
    ),
    dla_core: Optional[int] = typer.Option(
        None, "--dla-core", help="Run on this DLA core with GPU fallback (Orin NX / AGX Orin; fp16 or int8)."
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild engines that already exist and are valid here."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write what was built as JSON."),
) -> None:
    """Build (or adopt) the bundle's TensorRT engines here and add them to its manifest."""
    import importlib

    from edgecnn.bundle import load_bundle
    from edgecnn.export import tensorrt as trt_export

    bundle = load_bundle(bundle_path)
    profile = _profile_of(bundle)
    if profile.runtime != "tensorrt":
        raise BadInputError(
            f"{bundle.root} is a bundle for target {profile.name} ({profile.runtime}): edgecnn build builds "
            "TensorRT engines; export with --target jetson or --target cuda"
        )
    plans = _plans_of(bundle, profile, precision, trt_export)
    try:
        importlib.import_module("tensorrt")
    except ImportError:
        raise TensorRTMissingError(
            "TensorRT is not installed here (edgecnn build needs its Python package): on a Jetson it comes with "
            "JetPack (sudo apt install nvidia-tensorrt), elsewhere pip install 'edgecnn[tensorrt]'; or build with "
            f"trtexec: bash {bundle.root / trt_export.BUILD_SCRIPT_NAME}"
        ) from None

    current = trt_export.engine_provenance()
    sources = {e.path: e for e in bundle.artifacts}
    timing_cache = bundle.root / trt_export.TIMING_CACHE
    results = []
    for plan in plans:
        for relative in filter(None, (plan.source, plan.source_fp16)):
            if relative in sources:
                bundle.check_integrity(sources[relative])  # never build from an ONNX that changed
        engine = bundle.root / plan.engine
        source_paths = [bundle.root / p for p in (plan.source, plan.source_fp16) if p]
        adopted = None if force else trt_export.adoptable_engine(engine, source_paths, current)
        if adopted is not None and adopted.get("dla_core") == dla_core:
            note(f"{plan.engine}: built here earlier from the same ONNX ({adopted.get('built_with', '?')}); kept")
            results.append(trt_export.EngineBuildResult(path=engine, precision=plan.precision,
                                                        source=bundle.root / plan.source, provenance=adopted,
                                                        build_s=0.0, adopted=True))
            continue
        note(f"building {plan.engine} ({plan.precision}) from {plan.source} ...")
        results.append(trt_export.build_engine(
            bundle.root / plan.source, engine, profile, plan.precision, timing_cache=timing_cache,
            dla_core=dla_core, onnx_fp16_path=bundle.root / plan.source_fp16 if plan.source_fp16 else None,
        ))
    trt_export.register_engines(bundle.root, results)

    table = Table(title=f"TensorRT engines for {bundle.model_name} ({profile.name})")
    for column in ("engine", "precision", "TensorRT", "GPU", "DLA", "build s", ""):
        table.add_column(column)
    for result in results:
        p = result.provenance
        table.add_row(str(result.path.relative_to(bundle.root)), result.precision, str(p.get("tensorrt", "?")),
                      str(p.get("gpu") or p.get("device_model") or "?"), str(p.get("dla_core") or "-"),
                      f"{result.build_s:.1f}", "kept" if result.adopted else "built")
    console.print(table)
    note(f"next: edgecnn bench {bundle.root} && edgecnn verify {bundle.root}")
    if json_path:
        write_json(json_path, {"bundle": str(bundle.root), "target": profile.name, "engines": [
            {"path": str(r.path.relative_to(bundle.root)), "precision": r.precision, "adopted": r.adopted,
             "build_s": r.build_s, "provenance": r.provenance} for r in results]})


def _profile_of(bundle):
    """The device profile the bundle was exported for: the manifest's copy, else the shipped one."""
    from edgecnn.profiles import DeviceProfile, load_profile

    recorded = bundle.profile
    if recorded.get("runtime") and recorded.get("precisions"):
        limits = recorded.get("input") or {}
        return DeviceProfile(
            name=str(recorded.get("name") or bundle.target or "device"),
            description=str(recorded.get("description", "")), runtime=str(recorded["runtime"]),
            precisions=tuple(recorded["precisions"]), default_precision=str(recorded.get("default_precision")),
            threads=int(recorded.get("threads") or 0), opset=int(recorded.get("opset") or 17),
            max_size=int(limits.get("max_size") or 1024), max_batch=int(limits.get("max_batch") or 64),
            path=bundle.root / "manifest.json", notes=str(recorded.get("notes", "")),
            alias_of=recorded.get("alias_of"), tensorrt=dict(recorded.get("tensorrt") or {}),
        )
    if not bundle.target:
        raise BadInputError(f"{bundle.root}: the manifest names no target; re-export the bundle")
    return load_profile(bundle.target)


def _plans_of(bundle, profile, precision, trt_export):
    """The engines to build: the manifest's plan, narrowed to --precision (planned on the spot if absent)."""
    section = bundle.manifest.get("tensorrt") or {}
    plans = [trt_export.EnginePlan.from_dict(p) for p in section.get("engines") or []]
    if precision is not None:
        profile.check_precision(precision)
        chosen = [p for p in plans if p.precision == precision]
        if chosen:
            return chosen
        stem = Path(plans[0].engine).name.split(".")[0] if plans else "model"
        return trt_export.plan_engines(bundle.artifacts, profile, precisions=[precision],
                                       input_shape=bundle.input_shape, stem=stem)
    if not plans:
        plans = trt_export.plan_engines(bundle.artifacts, profile, input_shape=bundle.input_shape)
    return plans
