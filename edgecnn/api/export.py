"""`edgecnn.export`: a model (a SOURCE, an `edgecnn.load` handle or an `nn.Module`) to a verified deploy bundle.

The same pipeline and checks as `edgecnn export` (which calls this): the output is refused before any
work when it exists (unless `force`), and the bundle's manifest is what the CLI writes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from edgecnn.api.model import Model, Numbers, Preprocessing, load
from edgecnn.api.progress import ProgressCallback, Reporter
from edgecnn.api.results import ExportResult

if TYPE_CHECKING:
    from edgecnn.api.bundle_handle import Bundle

DEFAULT_SIZE = 300  # calibration images and golden samples (edgecnn.build_context's defaults)


def export(model: Any, *, target: str, precision: Optional[str] = None, out: Optional[Union[str, Path]] = None,
           force: bool = False, calib_data: Any = None, golden_data: Any = None, calib_size: int = DEFAULT_SIZE,
           golden_size: int = DEFAULT_SIZE, calib_method: str = "minmax",
           data_root: Optional[Union[str, Path]] = None, seed: int = 0, tflite_int8: str = "full-integer",
           fallback: bool = True, search_budget: float = 600.0, max_drop: Optional[float] = None,
           distill: bool = True, min_agreement: Optional[float] = None, weights: Optional[str] = None,
           state_dict: Optional[Union[str, Path]] = None, input_size: Optional[int] = None,
           resize: Optional[int] = None, mean: Optional[Numbers] = None, std: Optional[Numbers] = None,
           channels: Optional[int] = None, classes: Optional[Union[str, Path]] = None,
           progress: Optional[ProgressCallback] = None) -> "Bundle":
    """Export `model` for one device profile (`target`: onnx, x86, arm, rpi5, jetson, ... or a .toml file).

    `model`: a SOURCE string (loaded as `edgecnn export SOURCE` loads it, with weights/state_dict and the
    stated preprocessing), a `Model` from `edgecnn.load`/`edgecnn.train`, or an `nn.Module` in memory
    (state input_size, mean and std). `calib_data`/`golden_data`: a SPEC string, an `edgecnn.data` spec,
    or images in memory (a numpy array). `distill=False` leaves out the INT8 recipe that fine-tunes the weights
    on the calibration images (it runs only when the plain recipes miss the aim). Returns the bundle, its export report as `bundle.export_result`.
    """
    from edgecnn import validate
    from edgecnn.build_context import ExportRequest
    from edgecnn.data.specs import as_data
    from edgecnn.pipeline import export_bundle
    from edgecnn.profiles import load_profile
    from edgecnn.thresholds import check_threshold

    validate.seconds(search_budget, "--search-budget")
    check_threshold("max_drop", max_drop)
    check_threshold("min_agreement", min_agreement)
    stated = Preprocessing(input_size=input_size, resize=resize, mean=mean, std=std, channels=channels,
                           classes=classes)
    source, loaded, stated, weights, state_dict = _source_of(model, stated, weights, state_dict)
    profile = load_profile(target)
    out = Path(out) if out is not None else default_bundle_dir(source, profile.name, precision,
                                                               named=_in_memory(loaded))
    validate.writable_folder(out, "--out")
    request = ExportRequest(
        source=source, target=target, out=out, precision=precision, force=force, weights=weights,
        state_dict=str(state_dict) if state_dict else None, calib_data=as_data(calib_data),
        golden_data=as_data(golden_data), calib_size=calib_size, calib_method=calib_method,
        data_root=str(data_root) if data_root else None, golden_size=golden_size, input_size=stated.input_size,
        seed=seed, tflite_int8_scheme=tflite_int8, resize=stated.resize, mean=stated.mean, std=stated.std,
        channels=stated.channels, classes=str(stated.classes) if stated.classes else None, fallback=fallback,
        distill=distill,
        search_budget=search_budget, max_drop=max_drop, min_agreement=min_agreement, loaded=loaded,
    )
    report = export_bundle(request, stage=Reporter(progress).stage)
    from edgecnn.api.bundle_handle import Bundle

    return Bundle(report.bundle.root, export_result=ExportResult(report=export_json(report), export_report=report))


def _source_of(model: Any, stated: Preprocessing, weights, state_dict):
    """(source text, loaded model or None, stated preprocessing, weights, state dict) for the request.

    A SOURCE string is loaded by the pipeline, after the output and the target are checked; a Model
    is already loaded, and brings what it was loaded with.
    """
    from edgecnn.errors import BadInputError

    if isinstance(model, (str, os.PathLike)):
        return str(model), None, stated, weights, state_dict
    if isinstance(model, Model):
        if stated != Preprocessing() or weights is not None or state_dict is not None:
            raise BadInputError("preprocessing, weights and state_dict go with a SOURCE string or edgecnn.load(...); "
                                "a loaded Model already has them")
        return model.source, model.loaded, model.preprocessing, model.weights, model.state_dict
    # An nn.Module in memory: its preprocessing is stated here (load refuses weights and state_dict).
    model = load(model, input_size=stated.input_size, resize=stated.resize, mean=stated.mean, std=stated.std,
                 channels=stated.channels, classes=stated.classes, weights=weights, state_dict=state_dict)
    return model.source, model.loaded, model.preprocessing, None, None


def _in_memory(loaded: Any) -> bool:
    from edgecnn.sources.memory import MODULE_SOURCE

    return loaded is not None and loaded.provenance.get("source") == MODULE_SOURCE


def default_bundle_dir(source: str, target: str, precision: Optional[str], *, named: bool = False) -> Path:
    """dist/MODEL-TARGET[-PRECISION]: the precision only when asked for (a default may fall back)."""
    from edgecnn.sources import source_name

    stem = source
    if not named:
        exists = Path(source).exists()
        stem = Path(source).stem if exists else source
        if stem == "model" and exists:
            stem = Path(source).resolve().parent.name
        stem = source_name(source) or stem
    return Path("dist") / (f"{stem}-{target}-{precision}" if precision else f"{stem}-{target}")


def export_json(report: Any) -> dict[str, Any]:
    """What `edgecnn export --json` writes, from the pipeline's ExportReport."""
    return {"bundle": str(report.bundle.root), "target": report.profile.name, "precision": report.precision,
            "seconds": round(report.seconds, 2), "artifacts": report.rows,
            "fusion": report.bundle.manifest.get("fusion"), "warnings": report.warnings,
            "next_steps": report.next_steps}


__all__ = ["default_bundle_dir", "export", "export_json"]
