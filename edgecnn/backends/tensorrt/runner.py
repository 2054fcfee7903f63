"""TensorRT runner: a serialized `.engine` / `.plan` built on the device it runs on.

Written against TensorRT's Python API and gated by what the installed version offers:
TensorRT 10+ (and 8.5+, which already has it) uses the named-tensor API with
`execute_async_v3`; 8.2-8.4 use binding indices with `execute_async_v2`. Device buffers come
from cuda-python (`cuda.bindings.runtime`, or `cuda.cudart` before cuda-python 12.6), so no torch
is needed on a Jetson. Importing this module needs neither; `load` raises MissingDependencyError
naming the `tensorrt` extra when they are missing.

A TensorRT engine runs only on the TensorRT version and GPU that built it: `load` compares the
engine's provenance sidecar (provenance.py) with this machine and refuses a mismatch with the fix,
instead of letting TensorRT fail with a deserialization error or, worse, run slowly on tactics
tuned for another GPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.backends.runner import FixedBatchError, Runner, chw_from_manifest, static_dims
from edgecnn.backends.tensorrt.cuda import CudaRuntime, import_cudart
from edgecnn.backends.tensorrt.provenance import (
    check_engine_provenance,
    machine_provenance,
    parse_trt_version,
    rebuild_hint,
)
from edgecnn.errors import BadInputError, require

# Looked up at load time, so tests can hand the runner a fake CUDA runtime.
_import_cudart = import_cudart


class TensorRTRunner(Runner):
    """Deserialized engine, one execution context, device buffers sized for the batch."""

    runtime = "tensorrt"
    extra = "tensorrt"
    options = frozenset()

    def load(self, path, *, threads=None, batch=1, **options: Any) -> "TensorRTRunner":
        options = self._start_load(path, threads, batch, options)
        trt = require("tensorrt", self.extra, "TensorRT engines")
        self.cuda = CudaRuntime(_import_cudart())
        self.trt = trt
        self.version = trt.__version__
        major = parse_trt_version(trt.__version__)[0]

        # Before deserializing: TensorRT's own error for a foreign engine does not say what to do.
        self.provenance = check_engine_provenance(self.path, machine_provenance(trt, self.cuda.rt))

        logger = trt.Logger(trt.Logger.WARNING)
        self._trt_runtime = trt.Runtime(logger)
        self.engine = self._trt_runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise BadInputError(
                f"TensorRT {self.version} cannot deserialize {self.path.name}: engines only load with "
                f"the TensorRT version and GPU they were built with; {rebuild_hint(self.path)}"
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
                    self.cuda.destroy_stream(self.stream)
                except RuntimeError:
                    pass
                self.stream = None
        self.context = None
        self.engine = None
