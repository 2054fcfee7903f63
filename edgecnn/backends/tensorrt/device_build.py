"""`edgecnn build BUNDLE` as a library call: build (or adopt) a TensorRT bundle's engines on this device.

Runs where TensorRT is (a Jetson with JetPack, a CUDA machine); never imports torch. Engines the
bundle's build_engine.sh already built here are adopted (hash + provenance) instead of rebuilt.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgecnn.backends.tensorrt import BACKEND
from edgecnn.backends.tensorrt.bundle_parts import BUILD_SCRIPT_NAME
from edgecnn.backends.tensorrt.engine import EngineBuildResult, adoptable_engine, build_engine, register_engines
from edgecnn.backends.tensorrt.plans import MANIFEST_SECTION, TIMING_CACHE, EnginePlan, plan_engines
from edgecnn.backends.tensorrt.provenance import machine_provenance
from edgecnn.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from edgecnn.bundle import Bundle
    from edgecnn.profiles import DeviceProfile

RUNTIME = BACKEND.name


class TensorRTMissingError(BadInputError):
    """TensorRT's Python package is not importable on this machine (exit 2)."""


@dataclass
class DeviceBuildReport:
    """The engines `build_bundle_engines` built or kept, for the CLI's table and --json."""

    bundle: "Bundle"
    profile: "DeviceProfile"
    results: list[EngineBuildResult]

    def to_dict(self) -> dict[str, Any]:
        root = self.bundle.root
        return {"bundle": str(root), "target": self.profile.name, "engines": [
            {"path": str(r.path.relative_to(root)), "precision": r.precision, "adopted": r.adopted,
             "build_s": r.build_s, "provenance": r.provenance} for r in self.results]}


def build_bundle_engines(bundle_path: str | os.PathLike, *, precision: str | None = None,
                         dla_core: int | None = None, force: bool = False,
                         note: Callable[[str], None] | None = None) -> DeviceBuildReport:
    """Build the bundle's planned engines here (or adopt valid ones) and add them to its manifest."""
    from edgecnn.bundle import load_bundle

    note = note or (lambda message: None)
    bundle = load_bundle(bundle_path)
    profile = bundle_profile(bundle)
    if profile.runtime != RUNTIME:
        raise BadInputError(
            f"{bundle.root} is a bundle for target {profile.name} ({profile.runtime}): edgecnn build builds "
            "TensorRT engines; export with --target jetson or --target cuda"
        )
    plans = bundle_plans(bundle, profile, precision)
    _require_tensorrt(bundle.root)
    current = machine_provenance()
    results = [_build_one(bundle, profile, plan, current=current, dla_core=dla_core, force=force, note=note)
               for plan in plans]
    register_engines(bundle.root, results)
    return DeviceBuildReport(bundle=bundle, profile=profile, results=results)


def _require_tensorrt(bundle_root: Path) -> None:
    try:
        importlib.import_module("tensorrt")
    except ImportError:
        raise TensorRTMissingError(
            "TensorRT is not installed here (edgecnn build needs its Python package): on a Jetson it comes with "
            "JetPack (sudo apt install nvidia-tensorrt), elsewhere pip install 'edgecnn[tensorrt]'; or build with "
            f"trtexec: bash {bundle_root / BUILD_SCRIPT_NAME}"
        ) from None


def _build_one(bundle: "Bundle", profile: "DeviceProfile", plan: EnginePlan, *, current: dict,
               dla_core: int | None, force: bool, note: Callable[[str], None]) -> EngineBuildResult:
    """Adopt the plan's engine when it was built here from the same ONNX, else build it."""
    root = bundle.root
    sources = {e.path: e for e in bundle.artifacts}
    for relative in filter(None, (plan.source, plan.source_fp16)):
        if relative in sources:
            bundle.check_integrity(sources[relative])  # never build from an ONNX that changed
    engine = root / plan.engine
    source_paths = [root / p for p in (plan.source, plan.source_fp16) if p]
    adopted = None if force else adoptable_engine(engine, source_paths, current)
    if adopted is not None and adopted.get("dla_core") == dla_core:
        note(f"{plan.engine}: built here earlier from the same ONNX ({adopted.get('built_with', '?')}); kept")
        return EngineBuildResult(path=engine, precision=plan.precision, source=root / plan.source,
                                 provenance=adopted, build_s=0.0, adopted=True)
    note(f"building {plan.engine} ({plan.precision}) from {plan.source} ...")
    return build_engine(root / plan.source, engine, profile, plan.precision, timing_cache=root / TIMING_CACHE,
                        dla_core=dla_core, onnx_fp16_path=root / plan.source_fp16 if plan.source_fp16 else None)


def bundle_profile(bundle: "Bundle") -> "DeviceProfile":
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
            alias_of=recorded.get("alias_of"), settings=dict(recorded.get(BACKEND.profile_table) or {}),
        )
    if not bundle.target:
        raise BadInputError(f"{bundle.root}: the manifest names no target; re-export the bundle")
    return load_profile(bundle.target)


def bundle_plans(bundle: "Bundle", profile: "DeviceProfile", precision: str | None) -> list[EnginePlan]:
    """The engines to build: the manifest's plan, narrowed to `precision` (planned on the spot if absent)."""
    section = bundle.manifest.get(MANIFEST_SECTION) or {}
    plans = [EnginePlan.from_dict(p) for p in section.get("engines") or []]
    if precision is not None:
        profile.check_precision(precision)
        chosen = [p for p in plans if p.precision == precision]
        if chosen:
            return chosen
        stem = Path(plans[0].engine).name.split(".")[0] if plans else "model"
        return plan_engines(bundle.artifacts, profile, precisions=[precision], input_shape=bundle.input_shape,
                            stem=stem)
    if not plans:
        plans = plan_engines(bundle.artifacts, profile, input_shape=bundle.input_shape)
    return plans
