"""Which TensorRT engines a bundle builds, from which ONNX, with which settings of its profile."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from edgecnn.backends.onnxruntime import BACKEND as ONNX_RUNTIME
from edgecnn.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from edgecnn.bundle import ArtifactEntry
    from edgecnn.profiles import DeviceProfile

MANIFEST_SECTION = "tensorrt"  # manifest["tensorrt"]: the engine plans, written at export, read by edgecnn build
ENGINE_DIR = "tensorrt"
TIMING_CACHE = f"{ENGINE_DIR}/timing.cache"
DEFAULT_WORKSPACE_MB = 1024
DEFAULT_BATCH = {"min": 1, "opt": 1, "max": 8}


@dataclass(frozen=True)
class EnginePlan:
    """One engine to build on the device: from which ONNX, at which precision, to which file."""

    precision: str  # fp32 | fp16 | int8
    source: str  # ONNX relative to the bundle root (the Q/DQ model for int8)
    engine: str  # engine file relative to the bundle root
    source_fp16: str | None = None  # fp16 graph for TensorRT 11 (fp16 plans only)
    input_name: str = "input"
    input_shape: tuple[int, int, int] = (3, 224, 224)  # C, H, W

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        return data

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "EnginePlan":
        try:
            return cls(precision=str(payload["precision"]), source=str(payload["source"]),
                       engine=str(payload["engine"]), source_fp16=payload.get("source_fp16") or None,
                       input_name=str(payload.get("input_name") or "input"),
                       input_shape=tuple(int(v) for v in payload["input_shape"]))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInputError(f"manifest: malformed TensorRT engine plan {payload!r} ({exc})") from None


def trt_settings(profile: "DeviceProfile") -> dict[str, Any]:
    """The profile's [tensorrt] table with defaults: batch range (within max_batch), workspace, DLA."""
    settings = dict(profile.settings or {})
    batch = {**DEFAULT_BATCH, **dict(settings.get("batch") or {})}
    batch["max"] = min(int(batch["max"]), int(profile.max_batch))
    batch["min"] = max(1, min(int(batch["min"]), batch["max"]))
    batch["opt"] = min(max(int(batch["opt"]), batch["min"]), batch["max"])
    return {
        "batch": batch,
        "workspace_mb": int(settings.get("workspace_mb") or DEFAULT_WORKSPACE_MB),
        "dla": bool(settings.get("dla", False)),
        "dla_cores": int(settings.get("dla_cores") or (1 if settings.get("dla") else 0)),
    }


def default_precisions(profile: "DeviceProfile") -> list[str]:
    """The profile's default precision, plus fp16 next to int8 as the reference it is compared with."""
    precisions = [profile.default_precision]
    if profile.default_precision == "int8" and "fp16" in profile.precisions:
        precisions.append("fp16")
    return precisions


def plan_engines(artifacts: Iterable["ArtifactEntry | dict"], profile: "DeviceProfile", *,
                 precisions: Sequence[str] | None = None, input_shape: Sequence[int] | None = None,
                 stem: str = "model") -> list[EnginePlan]:
    """The engines to build from a bundle's ONNX artifacts, one per precision.

    fp32 and fp16 engines come from the fp32 ONNX (fp16 also records the fp16 graph TensorRT 11
    needs, when the bundle has one); int8 comes from the Q/DQ model (artifact precision int8).
    `precisions` defaults to `default_precisions(profile)`.
    """
    onnx_of: dict[str, dict] = {}
    for entry in (entry_dict(a) for a in artifacts):
        if entry.get("format") == ONNX_RUNTIME.format:
            onnx_of.setdefault(str(entry.get("precision")), entry)
    plans = []
    for precision in dict.fromkeys(precisions if precisions is not None else default_precisions(profile)):
        profile.check_precision(precision)
        source = onnx_of.get("int8" if precision == "int8" else "fp32")
        if source is None:
            what = "the Q/DQ int8 ONNX" if precision == "int8" else "the fp32 ONNX"
            raise BadInputError(f"the bundle has no {what} to build a {precision} TensorRT engine from: "
                                "re-export it with edgecnn export ... --target " + profile.name)
        fp16 = onnx_of.get("fp16") if precision == "fp16" else None
        shape = input_shape or (source.get("input") or {}).get("shape")
        if not shape:
            raise BadInputError(f"{source['path']}: the manifest records no input shape")
        shape = [int(v) for v in shape][-3:]
        plans.append(EnginePlan(precision=precision, source=str(source["path"]),
                                engine=f"{ENGINE_DIR}/{stem}.{precision}.engine",
                                source_fp16=str(fp16["path"]) if fp16 else None,
                                input_name=str((source.get("input") or {}).get("name") or "input"),
                                input_shape=(shape[0], shape[1], shape[2])))
    return plans


def as_plans(artifacts: Sequence[Any], profile: "DeviceProfile") -> list[EnginePlan]:
    """EnginePlans as given, or planned from artifact entries."""
    if artifacts and all(isinstance(a, EnginePlan) for a in artifacts):
        return list(artifacts)
    return plan_engines(artifacts, profile)


def entry_dict(artifact: Any) -> dict[str, Any]:
    return artifact.to_dict() if hasattr(artifact, "to_dict") else dict(artifact)
