"""What a TensorRT bundle holds besides the fp32 ONNX: the fp16 and Q/DQ graphs, build_engine.sh, a README.

All of it is written on the host, without TensorRT: the engine itself is built on the device that
runs it (`bash build_engine.sh` with trtexec, or `edgecnn build .`).
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from edgecnn.atomic import write_text_atomic
from edgecnn.backends.onnxruntime import BACKEND as ONNX_RUNTIME
from edgecnn.backends.tensorrt.fp16 import convert_onnx_fp16
from edgecnn.backends.tensorrt.plans import TIMING_CACHE, EnginePlan, as_plans, entry_dict, plan_engines, trt_settings
from edgecnn.backends.tensorrt.provenance import REBUILD_HINT
from edgecnn.backends.tensorrt.quantize import TensorRTQuantResult, quantize_qdq_int8
from edgecnn.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from edgecnn.bundle import ArtifactEntry
    from edgecnn.compare import Progress
    from edgecnn.profiles import DeviceProfile

BUILD_SCRIPT_NAME = "build_engine.sh"
README_NAME = "README.md"
QDQ_SUFFIX = ".int8.qdq.onnx"
FP16_SUFFIX = ".fp16.onnx"


def write_build_script(bundle_root: str | os.PathLike, artifacts: Sequence["EnginePlan | ArtifactEntry | dict"],
                       profile: "DeviceProfile") -> Path:
    """Write `build_engine.sh` into the bundle: builds every planned engine on the device with trtexec.

    The script (the package's build_engine.sh template) finds trtexec (`$TRTEXEC`,
    /usr/src/tensorrt/bin/trtexec, PATH), reads the TensorRT version (`$EDGECNN_TRT_VERSION`, dpkg,
    python3 -c 'import tensorrt', the trtexec banner) and picks the flags of that version: 8.x/10.x
    --fp16/--int8, 11.x the strongly typed graph; --workspace (8.0-8.3) or --memPoolSize;
    --skipInference (8.6+) or --buildOnly. `DRY_RUN=1` prints the trtexec commands instead of running
    them. `artifacts` are EnginePlans, or the bundle's artifact entries to plan from.
    """
    plans = as_plans(list(artifacts), profile)
    if not plans:
        raise BadInputError("no TensorRT engine to build: the plan is empty")
    settings = trt_settings(profile)
    from edgecnn import __version__

    builds = []
    for plan in plans:
        c, h, w = plan.input_shape
        builds.append("build_one " + " ".join(shlex.quote(str(v)) for v in (
            plan.precision, plan.source, plan.source_fp16 or "", plan.engine, plan.input_name, f"{c}x{h}x{w}")))
    values = {
        "VERSION": __version__, "TARGET": profile.name, "WORKSPACE_MB": settings["workspace_mb"],
        "BATCH_MIN": settings["batch"]["min"], "BATCH_OPT": settings["batch"]["opt"],
        "BATCH_MAX": settings["batch"]["max"], "DLA_CORES": settings["dla_cores"] if settings["dla"] else 0,
        "TIMING_CACHE": TIMING_CACHE, "BUILDS": "\n".join(builds),
    }
    text = resources.files(__package__).joinpath(BUILD_SCRIPT_NAME).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    path = Path(bundle_root) / BUILD_SCRIPT_NAME
    write_text_atomic(path, text)
    os.chmod(path, 0o755)
    return path


def write_device_readme(bundle_root: str | os.PathLike, *, model_name: str, profile: "DeviceProfile",
                        plans: Sequence[EnginePlan] = (), bundle_name: str | None = None) -> Path:
    """Write the bundle's README.md: what to copy, what to run on the device, in order."""
    root = Path(bundle_root)
    name = bundle_name or _final_name(root)
    trt = profile.settings or {}
    versions = ", ".join(f"JetPack {v}" for v in trt.get("jetpack", [])) or "a CUDA machine"
    engines = "\n".join(f"- `{p.engine}`: {p.precision}, from `{p.source}`" for p in plans) or "- (none planned)"
    dla = ("\nThis board has DLA: add `--dla-core 0` to either build command to run the layers DLA supports "
           "there (fp16/int8 only; the rest falls back to the GPU).\n" if trt.get("dla") else "")
    text = f"""# {model_name} for {profile.name} (TensorRT)

This bundle holds the ONNX models, not the engine: a TensorRT engine only runs on the TensorRT
version and GPU that built it, so it is built on the device. Written for {versions}
(TensorRT {", ".join(trt.get("tensorrt", [])) or "8.6, 10.x or 11.x"}).

## On the device

1. Copy this folder to the device: `scp -r {name} user@device:~/` and `cd {name}`
2. Build the engine(s), either with edgecnn (`pip install 'edgecnn[tensorrt]'`; JetPack already
   has TensorRT itself):

       edgecnn build .

   or with NVIDIA's trtexec, nothing to install (it runs `edgecnn build .` at the end when edgecnn
   is there, which adds the engines to manifest.json with their sha256 and provenance):

       bash {BUILD_SCRIPT_NAME}

   `DRY_RUN=1 bash {BUILD_SCRIPT_NAME}` prints the trtexec commands without running them.
3. Measure and check them:

       edgecnn bench .
       edgecnn verify .
{dla}
Engines to build:

{engines}

Set the power mode before measuring (`sudo nvpmodel -m 0 && sudo jetson_clocks` on a Jetson).
An engine copied to another device, or kept across a JetPack/TensorRT upgrade, is refused with
"{REBUILD_HINT}".
"""
    path = root / README_NAME
    write_text_atomic(path, text)
    return path


def _final_name(root: Path) -> str:
    """The bundle's name: BundleWriter builds in a hidden '.NAME.staging-PID-XXXXXXXX' folder renamed on commit."""
    match = re.fullmatch(r"\.(.+)\.(?:staging-\d+-)?[A-Za-z0-9_]{8}", root.name)
    return match.group(1) if match else root.name


@dataclass
class TensorRTBundleParts:
    """What `prepare_tensorrt_bundle` added to a bundle being written."""

    artifacts: list  # ArtifactEntry for the fp16 graph and the Q/DQ model (the fp32 ONNX is the caller's)
    plans: list[EnginePlan]
    manifest_section: dict  # goes under manifest["tensorrt"]
    files: list[Path]  # build_engine.sh, README.md
    quantization: TensorRTQuantResult | None = None
    messages: list[str] = field(default_factory=list)  # what to tell the user


FP16_PURPOSE = "TensorRT 11 fp16 engine source (strongly typed)"


def write_fp16_graph(fp32_onnx: Path) -> Path:
    """The fp16 graph TensorRT 11 builds fp16 engines from (strongly typed), beside the fp32 ONNX."""
    stem = fp32_onnx.name.removesuffix(".onnx").removesuffix(".fp32")
    return convert_onnx_fp16(fp32_onnx, fp32_onnx.with_name(stem + FP16_SUFFIX))


def qdq_record(quant: TensorRTQuantResult, *, name: str) -> dict:
    """What the manifest says about a Q/DQ graph (`name`: its file name in the bundle)."""
    return {**quant.to_dict(), "path": name, "source": quant.source.name, "scheme": "tensorrt-qdq-symmetric"}


@dataclass(frozen=True)
class _Graphs:
    """The engine-source graphs written next to the fp32 ONNX."""

    artifacts: list
    quantization: TensorRTQuantResult | None


def _write_graphs(root: Path, fp32_onnx: Path, precisions: list[str], *, input_spec: dict,
                  calibration_batches: np.ndarray | None, method: str, progress: "Progress | None") -> _Graphs:
    """The fp16 graph (for TensorRT 11) when fp16 is planned, the Q/DQ model when int8 is."""
    from edgecnn.bundle import artifact_entry

    stem = fp32_onnx.name.removesuffix(".onnx").removesuffix(".fp32")
    artifacts, quant = [], None
    if "fp16" in precisions:
        fp16_path = write_fp16_graph(fp32_onnx)
        artifacts.append(artifact_entry(root, [fp16_path], format=ONNX_RUNTIME.format, runtime=ONNX_RUNTIME.name,
                                        precision="fp16", input=input_spec, purpose=FP16_PURPOSE))
    if "int8" in precisions:
        if calibration_batches is None:
            raise BadInputError("an int8 TensorRT bundle needs calibration images: pass --calib-data SPEC")
        quant = quantize_qdq_int8(fp32_onnx, fp32_onnx.with_name(stem + QDQ_SUFFIX), calibration_batches,
                                  method=method, progress=progress)
        artifacts.append(artifact_entry(root, [quant.path], format=ONNX_RUNTIME.format, runtime=ONNX_RUNTIME.name,
                                        precision="int8", input=input_spec,
                                        quantization=qdq_record(quant, name=quant.path.name)))
    return _Graphs(artifacts=artifacts, quantization=quant)


def prepare_tensorrt_bundle(bundle_root: str | os.PathLike, fp32_onnx: str | os.PathLike,
                            profile: "DeviceProfile", *, input_spec: dict, model_name: str,
                            precision: str | None = None, calibration_batches: np.ndarray | None = None,
                            method: str = "minmax", bundle_name: str | None = None,
                            progress: "Progress | None" = None) -> TensorRTBundleParts:
    """Add the TensorRT parts to a bundle under construction (host side, no TensorRT needed).

    `fp32_onnx` is the exported fp32 model already inside `bundle_root`; `input_spec` is the
    manifest's artifact input dict ({shape [C,H,W], layout, dtype, batch}). Writes the engine-source
    graphs (the Q/DQ one quantized once, no search: export's INT8 step searches), build_engine.sh and
    README.md. The caller adds `artifacts` to the manifest and puts `manifest_section` under
    manifest["tensorrt"]. `bundle_name` is the folder name the user will see (default: the final name
    of a BundleWriter folder).
    """
    root, fp32_onnx = Path(bundle_root), Path(fp32_onnx)
    precisions = planned_precisions(profile, precision)
    graphs = _write_graphs(root, fp32_onnx, precisions, input_spec=input_spec,
                           calibration_batches=calibration_batches, method=method, progress=progress)
    fp32_entry = {"path": fp32_onnx.relative_to(root).as_posix(), "format": ONNX_RUNTIME.format, "precision": "fp32",
                  "input": input_spec}
    parts = write_engine_parts(root, [fp32_entry, *graphs.artifacts], profile, precisions=precisions,
                               model_name=model_name, bundle_name=bundle_name)
    parts.artifacts, parts.quantization = graphs.artifacts, graphs.quantization
    return parts


def planned_precisions(profile: "DeviceProfile", precision: str | None) -> list[str]:
    """The engines a bundle plans: the precision asked for, plus fp16 beside int8 where the device has it."""
    precision = profile.check_precision(precision or profile.default_precision)
    return [precision] + (["fp16"] if precision == "int8" and "fp16" in profile.precisions else [])


def kept_precisions(planned: list[str], artifacts: Sequence) -> list[str]:
    """The planned engines whose source the bundle has: an int8 search that kept no Q/DQ graph (it missed the
    gate on the golden set) leaves the other engines (fp16 beside it, else fp32), not a failed export."""
    have = {str(entry_dict(a).get("precision")) for a in artifacts}
    kept = [p for p in planned if p != "int8" or "int8" in have]
    return kept or ["fp32"]


def write_engine_parts(root: Path, artifacts: Sequence, profile: "DeviceProfile", *, precisions: list[str],
                       model_name: str, bundle_name: str | None = None) -> TensorRTBundleParts:
    """The engine plans from a bundle's ONNX artifacts, build_engine.sh, README.md and the manifest section."""
    fp32 = next(a for a in (entry_dict(x) for x in artifacts) if a.get("precision") == "fp32")
    stem = Path(fp32["path"]).name.removesuffix(".onnx").removesuffix(".fp32")
    plans = plan_engines(artifacts, profile, precisions=precisions, stem=stem)
    script = write_build_script(root, plans, profile)
    name = bundle_name or _final_name(root)
    readme = write_device_readme(root, model_name=model_name, profile=profile, plans=plans, bundle_name=name)
    written_for = {k: profile.settings[k] for k in ("jetpack", "tensorrt", "l4t") if k in profile.settings}
    section = {"engines": [p.to_dict() for p in plans], "build_script": BUILD_SCRIPT_NAME,
               "timing_cache": TIMING_CACHE, **trt_settings(profile), "written_for": written_for}
    messages = [
        f"the TensorRT engine is built on the device: copy {name}/ there and run "
        f"`bash {BUILD_SCRIPT_NAME}` (trtexec) or `edgecnn build .`, then `edgecnn bench .` and `edgecnn verify .`"
    ]
    return TensorRTBundleParts(artifacts=[], plans=plans, manifest_section=section, files=[script, readme],
                               messages=messages)
