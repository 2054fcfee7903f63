"""The few CUDA runtime calls TensorRT needs, through cuda-python (no torch on a Jetson)."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from edgecnn.errors import MissingDependencyError


def import_cudart() -> Any:
    """cuda-python's runtime module: `cuda.bindings.runtime`, or `cuda.cudart` before cuda-python 12.6."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise MissingDependencyError("cuda-python", "tensorrt", "TensorRT device buffers")


class CudaRuntime:
    """CUDA runtime calls with their error codes turned into exceptions."""

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

    def destroy_stream(self, stream: Any) -> None:
        self.check(self.rt.cudaStreamDestroy(stream))

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
