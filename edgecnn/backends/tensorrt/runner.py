"""TensorRT runner: a serialized `.engine` / `.plan` built on the device it runs on.

Written against TensorRT's Python API and gated by what the installed version offers:
TensorRT 10+ (and 8.5+, which already has it) uses the named-tensor API with
`execute_async_v3`; 8.2-8.4 use binding indices with `execute_async_v2`. Device buffers come
from cuda-python (`cuda.bindings.runtime`, or `cuda.cudart` before cuda-python 12.6), so no torch
is needed on a Jetson. Importing this module needs neither; `load` raises MissingDependencyError
naming the `tensorrt` extra when they are missing.

A TensorRT engine runs only on the TensorRT version and GPU that built it. Every engine edgecnn
builds gets a provenance sidecar (`<engine>.json`: TensorRT version, GPU name, compute
capability, JetPack/L4T); `load` compares it with this machine and refuses a mismatch with the
fix, instead of letting TensorRT fail with a deserialization error or, worse, run slowly on
tactics tuned for another GPU.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import BadInputError, MissingDependencyError, require
from edgecnn.backends.runner import FixedBatchError, Runner, chw_from_manifest, static_dims


def _import_cudart() -> Any:
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise MissingDependencyError("cuda-python", "tensorrt", "TensorRT device buffers")


class _Cuda:
    """The few CUDA runtime calls the runner needs, with errors turned into exceptions."""

    def __init__(self, cudart: Any) -> None:
        self.rt = cudart

    def check(self, result: Any) -> Any:
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:  # cudaSuccess
            name = getattr(err, "name", str(err))
            raise RuntimeError(f"CUDA call failed: {name}")
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    def malloc(self, nbytes: int) -> int:
        return int(self.check(self.rt.cudaMalloc(max(1, nbytes))))

    def free(self, pointer: int) -> None:
        self.check(self.rt.cudaFree(pointer))

    def stream(self) -> Any:
        return self.check(self.rt.cudaStreamCreate())

    def to_device(self, device: int, host: np.ndarray, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.check(self.rt.cudaMemcpyAsync(device, host.ctypes.data, host.nbytes, kind, stream))

    def to_host(self, host: np.ndarray, device: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.check(self.rt.cudaMemcpyAsync(host.ctypes.data, device, host.nbytes, kind, stream))

    def synchronize(self, stream: Any) -> None:
        self.check(self.rt.cudaStreamSynchronize(stream))

    def device_properties(self) -> tuple[str, int, int]:
        """(GPU name, compute capability major, minor) of the current device."""
        device = self.check(self.rt.cudaGetDevice())
        props = self.check(self.rt.cudaGetDeviceProperties(device))
        name = props.name
        name = name.decode(errors="replace").rstrip("\x00") if isinstance(name, bytes) else str(name)
        return name, int(props.major), int(props.minor)

    def device_name(self) -> str:
        return self.device_properties()[0]


# L4T release (major.minor of /etc/nv_tegra_release) -> JetPack release, for people reading the
# provenance; the comparison itself uses the TensorRT version and the GPU.
_JETPACK_OF_L4T = {
    "32.6": "4.6", "32.7": "4.6.x", "35.1": "5.0.2", "35.2": "5.1", "35.3": "5.1.1", "35.4": "5.1.2",
    "35.5": "5.1.3", "35.6": "5.1.4", "36.2": "6.0 DP", "36.3": "6.0", "36.4": "6.1/6.2",
}
PROVENANCE_SUFFIX = ".json"
REBUILD_HINT = "rebuild on this device: edgecnn build BUNDLE"


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


def version_triplet(version: str | None) -> str | None:
    """'10.3.0.30' -> '10.3.0': engines are tied to major.minor.patch."""
    if not version:
        return None
    parts = re.findall(r"\d+", str(version))[:3]
    return ".".join(parts + ["0"] * (3 - len(parts))) if parts else None


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
        cuda = _Cuda(cudart or _import_cudart())
        name, major, minor = cuda.device_properties()
        info["gpu"] = name
        info["compute_capability"] = f"{major}.{minor}"
    except (MissingDependencyError, RuntimeError, AttributeError):
        pass
    try:
        info.update(read_l4t(Path("/etc/nv_tegra_release").read_text(errors="replace")))
    except OSError:
        pass
    try:
        model = Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00\n ")
        if model:
            info["device_model"] = model
    except OSError:
        pass
    return info


def provenance_mismatches(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Why an engine built under `recorded` cannot run under `current` (empty when it can).

    Only fields both sides know are compared: a build script without Python may not know the
    GPU name, and that must not block an engine the same machine built.
    """
    problems = []
    built, here = version_triplet(recorded.get("tensorrt")), version_triplet(current.get("tensorrt"))
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
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path} is not valid JSON ({exc}): {REBUILD_HINT}") from None
    if not isinstance(payload, dict):
        raise BadInputError(f"{path} must hold a JSON object: {REBUILD_HINT}")
    return payload


def _bundle_of(engine_path: Path) -> str:
    """The bundle folder an engine lives in (for the rebuild hint), else the engine's folder."""
    for folder in (engine_path.parent, engine_path.parent.parent):
        if (folder / "manifest.json").is_file():
            return str(folder)
    return str(engine_path.parent)


def check_engine_provenance(engine_path: str | Path, current: dict[str, Any]) -> dict[str, Any] | None:
    """Refuse (BadInputError) an engine whose sidecar says it was built elsewhere; returns the sidecar."""
    engine_path = Path(engine_path)
    recorded = read_provenance(engine_path)
    if recorded is None:
        return None
    problems = provenance_mismatches(recorded, current)
    if problems:
        raise BadInputError(
            f"{engine_path.name} was {'; '.join(problems)}: "
            + REBUILD_HINT.replace("BUNDLE", _bundle_of(engine_path))
        )
    return recorded


class TensorRTRunner(Runner):
    """Deserialized engine, one execution context, device buffers sized for the batch."""

    runtime = "tensorrt"
    extra = "tensorrt"
    options = frozenset()

    def load(self, path, *, threads=None, batch=1, **options: Any) -> "TensorRTRunner":
        options = self._start_load(path, threads, batch, options)
        trt = require("tensorrt", self.extra, "TensorRT engines")
        self.cuda = _Cuda(_import_cudart())
        self.trt = trt
        self.version = trt.__version__
        major = int(str(trt.__version__).split(".")[0])

        # Before deserializing: TensorRT's own error for a foreign engine does not say what to do.
        self.provenance = check_engine_provenance(self.path, machine_provenance(trt, self.cuda.rt))

        logger = trt.Logger(trt.Logger.WARNING)
        self._trt_runtime = trt.Runtime(logger)
        self.engine = self._trt_runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise BadInputError(
                f"TensorRT {self.version} cannot deserialize {self.path.name}: engines only load with "
                f"the TensorRT version and GPU they were built with; {REBUILD_HINT.replace('BUNDLE', _bundle_of(self.path))}"
            )
        self.context = self.engine.create_execution_context()
        self.named_api = hasattr(self.engine, "num_io_tensors") and hasattr(self.context, "execute_async_v3")
        if major >= 10 and not self.named_api:  # pragma: no cover - a broken install
            raise BadInputError(f"TensorRT {self.version} lacks the named-tensor API")
        self.stream = self.cuda.stream()
        self._device: dict[str, int] = {}
        self._host_out: np.ndarray | None = None

        self._describe_io()
        self.input_shape = self.input_chw or chw_from_manifest(options)
        if self.input_shape is None:
            raise BadInputError(f"{self.path.name} has a dynamic image size: give the input shape (bundle manifest)")
        self._configure(batch)
        self.applied = {
            "api": "named tensors + execute_async_v3" if self.named_api else "bindings + execute_async_v2",
            "gpu": self.cuda.device_name(),
            "input_dtype": self.input_dtype.name,
            "batch_range": self.batch_range,
            "threads": None,  # CPU threads do not apply: the GPU does the work
            "tensorrt": self.version,
            "built_with": (self.provenance or {}).get("tensorrt"),
            "dla_core": (self.provenance or {}).get("dla_core"),
        }
        return self

    # --- engine I/O ------------------------------------------------------------------------

    def _describe_io(self) -> None:
        trt, engine = self.trt, self.engine
        if self.named_api:
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            outputs = [n for n in names if n not in inputs]
            shape = list(engine.get_tensor_shape(inputs[0])) if inputs else []
            dtype = engine.get_tensor_dtype(inputs[0]) if inputs else None
            out_dtype = engine.get_tensor_dtype(outputs[0]) if outputs else None
        else:
            count = engine.num_bindings
            names = [engine.get_binding_name(i) for i in range(count)]
            inputs = [names[i] for i in range(count) if engine.binding_is_input(i)]
            outputs = [n for n in names if n not in inputs]
            index = engine.get_binding_index(inputs[0]) if inputs else 0
            shape = list(engine.get_binding_shape(index))
            dtype = engine.get_binding_dtype(index)
            out_dtype = engine.get_binding_dtype(engine.get_binding_index(outputs[0])) if outputs else None
        if len(inputs) != 1 or len(outputs) < 1:
            raise BadInputError(
                f"{self.path.name} has {len(inputs)} inputs and {len(outputs)} outputs; "
                "edgecnn expects one image input and logits out"
            )
        dims = static_dims(shape)
        if len(dims) != 4:
            raise BadInputError(f"{self.path.name}: input rank {len(dims)}, expected NCHW")
        self.io_names = names
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_dtype = np.dtype(trt.nptype(dtype))
        self.output_dtype = np.dtype(trt.nptype(out_dtype))
        self.input_chw = (dims[1], dims[2], dims[3]) if None not in dims[1:] else None
        self.dynamic_batch = dims[0] is None
        self.fixed_batch = None if self.dynamic_batch else dims[0]
        self.batch_range = [dims[0], dims[0]]
        if self.dynamic_batch:
            profile = (
                engine.get_tensor_profile_shape(self.input_name, 0)
                if self.named_api
                else engine.get_profile_shape(0, self.input_name)
            )
            self.batch_range = [int(profile[0][0]), int(profile[2][0])]

    def _configure(self, batch: int) -> None:
        """Set the input shape for `batch` and (re)allocate device buffers."""
        low, high = self.batch_range
        if not low <= batch <= high:
            raise FixedBatchError(
                f"{self.path.name} was built for batch {low}..{high}, not {batch}"
                if low != high else f"{self.path.name} was built for batch {low} only, not {batch}"
            )
        shape = (batch, *self.input_shape)
        if self.dynamic_batch:
            if self.named_api:
                self.context.set_input_shape(self.input_name, shape)
            else:
                self.context.set_binding_shape(self.engine.get_binding_index(self.input_name), shape)
        self._free()
        for name in self.io_names:
            if self.named_api:
                tensor_shape = tuple(self.context.get_tensor_shape(name))
                dtype = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))
            else:
                index = self.engine.get_binding_index(name)
                tensor_shape = tuple(self.context.get_binding_shape(index))
                dtype = np.dtype(self.trt.nptype(self.engine.get_binding_dtype(index)))
            nbytes = int(np.prod(tensor_shape)) * dtype.itemsize
            self._device[name] = self.cuda.malloc(nbytes)
            if self.named_api:
                self.context.set_tensor_address(name, self._device[name])
            if name == self.output_name:
                self._host_out = np.empty(tensor_shape, dtype=dtype)
        if not self.named_api:
            self._bindings = [self._device[name] for name in self.io_names]
        self.batch = batch

    def _free(self) -> None:
        for pointer in self._device.values():
            try:
                self.cuda.free(pointer)
            except RuntimeError:
                pass
        self._device = {}

    # --- running ---------------------------------------------------------------------------

    def bind(self, batch: np.ndarray) -> None:
        batch = self._check_batch(batch)
        if batch.shape[0] != self.batch:
            self._configure(batch.shape[0])
        self._host_in = np.ascontiguousarray(batch, dtype=self.input_dtype)
        self.cuda.to_device(self._device[self.input_name], self._host_in, self.stream)
        self.cuda.synchronize(self.stream)

    def invoke(self) -> None:
        if self.named_api:
            ok = self.context.execute_async_v3(int(self.stream))
            self.cuda.synchronize(self.stream)
        else:  # TensorRT 8.2-8.4: binding indices
            ok = self.context.execute_async_v2(self._bindings, int(self.stream))
            self.cuda.synchronize(self.stream)
        if not ok:
            raise RuntimeError(f"TensorRT failed to run {self.path.name}")

    def fetch(self) -> np.ndarray:
        self.cuda.to_host(self._host_out, self._device[self.output_name], self.stream)
        self.cuda.synchronize(self.stream)
        return self._host_out.astype(np.float32, copy=True)

    def close(self) -> None:
        if getattr(self, "cuda", None) is not None:
            self._free()
            if getattr(self, "stream", None) is not None:
                try:
                    self.cuda.check(self.cuda.rt.cudaStreamDestroy(self.stream))
                except RuntimeError:
                    pass
                self.stream = None
        self.context = None
        self.engine = None
