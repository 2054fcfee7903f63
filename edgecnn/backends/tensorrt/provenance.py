"""What ties a TensorRT engine to the machine that built it, and the one TensorRT version parser.

An engine runs only on the TensorRT version and GPU that built it. Every engine edgecnn builds gets
a provenance sidecar (`<engine>.json`: TensorRT version, GPU name, compute capability, JetPack/L4T);
the runner and `edgecnn build` compare it with this machine and refuse a mismatch with the fix.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

from edgecnn.atomic import read_json
from edgecnn.backends.tensorrt.cuda import CudaRuntime, import_cudart
from edgecnn.errors import BadInputError, MissingDependencyError

# L4T release (major.minor of /etc/nv_tegra_release) -> JetPack release, for people reading the
# provenance; the comparison itself uses the TensorRT version and the GPU.
_JETPACK_OF_L4T = {
    "32.6": "4.6", "32.7": "4.6.x", "35.1": "5.0.2", "35.2": "5.1", "35.3": "5.1.1", "35.4": "5.1.2",
    "35.5": "5.1.3", "35.6": "5.1.4", "36.2": "6.0 DP", "36.3": "6.0", "36.4": "6.1/6.2",
}
PROVENANCE_SUFFIX = ".json"
REBUILD_HINT = "rebuild on this device: edgecnn build BUNDLE"


def parse_trt_version(text: str) -> tuple[int, int, int]:
    """(major, minor, patch) from '10.3.0.30', '8.6.1', '10.3.0.30-1+cuda12.5' or a trtexec 'v100300'/'v8502'."""
    text = str(text).strip()
    banner = re.fullmatch(r"v?(\d{4,6})", text)
    if banner:
        digits = banner.group(1)
        if len(digits) == 4:  # 8.x banners: v8502 = 8.5.2
            return int(digits[0]), int(digits[1]), int(digits[2:])
        return int(digits[:-4]), int(digits[-4:-2]), int(digits[-2:])  # v100300 = 10.3.0
    parts = re.findall(r"\d+", text.split("-")[0])
    if not parts:
        raise BadInputError(f"cannot read a TensorRT version from {text!r}")
    numbers = [int(p) for p in parts[:3]] + [0] * (3 - len(parts[:3]))
    return numbers[0], numbers[1], numbers[2]


def _version_text(version: Any) -> str | None:
    """'10.3.0.30' -> '10.3.0' (engines are tied to major.minor.patch); None when unknown or unreadable."""
    if not version:
        return None
    try:
        return ".".join(str(n) for n in parse_trt_version(version))
    except BadInputError:
        return None


def read_l4t(text: str) -> dict[str, str]:
    """{'l4t': '36.4.0', 'jetpack': '6.1/6.2'} from the text of /etc/nv_tegra_release ({} if not L4T)."""
    match = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not match:
        return {}
    revision = match.group(2).split(".")
    l4t = ".".join([match.group(1), *revision])
    info = {"l4t": l4t if len(revision) > 1 else f"{l4t}.0"}
    jetpack = _JETPACK_OF_L4T.get(f"{match.group(1)}.{revision[0]}")
    if jetpack:
        info["jetpack"] = jetpack
    return info


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def machine_provenance(trt: Any = None, cudart: Any = None) -> dict[str, Any]:
    """What ties an engine to this machine: TensorRT version, GPU name and compute capability, L4T.

    Fields that cannot be read here (no TensorRT, no CUDA device) are left out rather than guessed.
    """
    info: dict[str, Any] = {}
    if trt is None:
        try:
            trt = importlib.import_module("tensorrt")
        except ImportError:
            trt = None
    if trt is not None:
        info["tensorrt"] = str(trt.__version__)
    try:
        name, major, minor = CudaRuntime(cudart or import_cudart()).device_properties()
        info["gpu"] = name
        info["compute_capability"] = f"{major}.{minor}"
    except (MissingDependencyError, RuntimeError, AttributeError):
        pass
    tegra = _read_text("/etc/nv_tegra_release")
    if tegra is not None:
        info.update(read_l4t(tegra))
    model = (_read_text("/proc/device-tree/model") or "").strip("\x00\n ")
    if model:
        info["device_model"] = model
    return info


def provenance_mismatches(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Why an engine built under `recorded` cannot run under `current` (empty when it can).

    Only fields both sides know are compared: a build script without Python may not know the
    GPU name, and that must not block an engine the same machine built.
    """
    problems = []
    built, here = _version_text(recorded.get("tensorrt")), _version_text(current.get("tensorrt"))
    if built and here and built != here:
        problems.append(f"built with TensorRT {built}, this machine has {here}")
    for key, label in (("compute_capability", "compute capability"), ("gpu", "GPU")):
        before, now = recorded.get(key), current.get(key)
        if before and now and str(before).strip() != str(now).strip():
            problems.append(f"built for {label} {before}, this machine has {now}")
    return problems


def provenance_path(engine_path: str | Path) -> Path:
    """The provenance sidecar of an engine: `model.int8.engine` -> `model.int8.engine.json`."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + PROVENANCE_SUFFIX)


def read_provenance(engine_path: str | Path) -> dict[str, Any] | None:
    """The engine's recorded provenance, or None when it has no sidecar."""
    path = provenance_path(engine_path)
    if not path.is_file():
        return None
    return read_json(path, what="engine provenance", hint=REBUILD_HINT, expect=dict)


def rebuild_hint(engine_path: str | Path) -> str:
    """The rebuild command for an engine, naming the bundle folder it lives in (else its folder)."""
    engine_path = Path(engine_path)
    bundle = engine_path.parent
    for folder in (engine_path.parent, engine_path.parent.parent):
        if (folder / "manifest.json").is_file():
            bundle = folder
            break
    return REBUILD_HINT.replace("BUNDLE", str(bundle))


def check_engine_provenance(engine_path: str | Path, current: dict[str, Any]) -> dict[str, Any] | None:
    """Refuse (BadInputError) an engine whose sidecar says it was built elsewhere; returns the sidecar."""
    engine_path = Path(engine_path)
    recorded = read_provenance(engine_path)
    if recorded is None:
        return None
    problems = provenance_mismatches(recorded, current)
    if problems:
        raise BadInputError(f"{engine_path.name} was {'; '.join(problems)}: {rebuild_hint(engine_path)}")
    return recorded
