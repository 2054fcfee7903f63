"""TFLite / LiteRT runner: `.tflite` files through ai-edge-litert, or tflite-runtime."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from edgecnn.errors import BadInputError, MissingDependencyError
from edgecnn.backends.runner import FixedBatchError, Runner, as_nchw_float32, chw_from_manifest, package_version


def _import_interpreter() -> tuple[Any, str, str | None]:
    """(Interpreter class, module name, version): ai-edge-litert first, then tflite-runtime."""
    for module_name, distribution in (
        ("ai_edge_litert.interpreter", "ai-edge-litert"),
        ("tflite_runtime.interpreter", "tflite-runtime"),
    ):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        return module.Interpreter, module_name.split(".")[0], package_version(distribution)
    raise MissingDependencyError("ai_edge_litert", "litert", "TFLite artifacts")


def detect_layout(shape: tuple[int, ...], expected_chw: tuple[int, int, int] | None) -> str:
    """'NCHW' or 'NHWC' for a 4-D input shape, using the manifest's [C,H,W] when known."""
    dims = tuple(int(d) for d in shape[1:])
    if expected_chw is not None:
        c, h, w = expected_chw
        if dims == (c, h, w):
            return "NCHW"
        if dims == (h, w, c):
            return "NHWC"
        raise BadInputError(
            f"the .tflite input {list(shape)} matches neither NCHW nor NHWC of [C,H,W] {list(expected_chw)}"
        )
    # No manifest: image channels are few (1, 3 or 4), spatial sizes are larger.
    if dims[0] <= 4 < min(dims[1], dims[2]):
        return "NCHW"
    if dims[2] <= 4 < min(dims[0], dims[1]):
        return "NHWC"
    return "NCHW"


class TFLiteRunner(Runner):
    """A .tflite on the CPU with explicit threads (XNNPACK applies by default), any batch via resize.

    Two APIs: `api="interpreter"` (the default; also what tflite-runtime offers) and
    `api="compiled_model"` (LiteRT's CompiledModel, what `litert-benchmark` times; ai-edge-litert
    only). Quantized inputs and outputs are converted with the tensors' own scale and zero point,
    and an NHWC model is fed from the NCHW batch by a transpose in `bind`, outside the timed call.
    """

    runtime = "tflite"
    extra = "litert"
    # xnnpack (False: the built-in kernels) and xnnpack_fp16 (compiled_model: XNNPACK's FORCE_FP16 flag)
    # are what `edgecnn tune` sweeps besides threads and the API.
    options = frozenset({"api", "xnnpack", "xnnpack_fp16"})

    def load(self, path, *, threads=None, batch=1, **options: Any) -> "TFLiteRunner":
        options = self._start_load(path, threads, batch, options)
        self.api = str(options.get("api", "interpreter"))
        if self.api not in ("interpreter", "compiled_model"):
            raise BadInputError(f"api must be interpreter or compiled_model, got {self.api!r}")
        interpreter_cls, module_name, self.version = _import_interpreter()
        self.xnnpack, self.xnnpack_fp16 = _xnnpack_options(options, self.api)
        try:
            self.interpreter = interpreter_cls(model_path=str(self.path), num_threads=self.threads,
                                               **_resolver_kwargs(interpreter_cls, module_name, self.xnnpack))
        except ValueError as exc:
            raise BadInputError(f"cannot load {self.path} as a TFLite model: {exc}") from exc
        inputs = self.interpreter.get_input_details()
        if len(inputs) != 1:
            raise BadInputError(f"{self.path.name} has {len(inputs)} inputs; edgecnn expects one image input")
        detail = inputs[0]
        shape = tuple(int(d) for d in detail["shape"])
        if len(shape) != 4:
            raise BadInputError(f"{self.path.name}: input rank {len(shape)}, expected 4")
        self.layout = detect_layout(shape, chw_from_manifest(options))
        if self.layout == "NCHW":
            self.input_shape = (shape[1], shape[2], shape[3])
        else:
            self.input_shape = (shape[3], shape[1], shape[2])
        self.input_index = detail["index"]
        self.input_dtype = np.dtype(detail["dtype"])
        self.input_quant = _quantization(detail)
        output = self.interpreter.get_output_details()[0]
        self.output_dtype = np.dtype(output["dtype"])
        self.output_quant = _quantization(output)

        if self.api == "compiled_model":
            if module_name != "ai_edge_litert":
                raise BadInputError("api=compiled_model needs ai-edge-litert, not tflite-runtime")
            # The interpreter only told us the I/O details; the compiled model does the work.
            self.interpreter = None
            self._load_compiled_model()
        try:
            self._resize(batch)
        except FixedBatchError:
            self.fixed_batch = shape[0]  # what the file runs: a caller may reload at this batch
            raise
        self.applied = {
            "api": self.api,
            "num_threads": self.threads,
            "package": module_name,
            "xnnpack": self._xnnpack_applied(),
            "xnnpack_fp16": self.xnnpack_fp16,
            "input_layout": self.layout,
            "input_dtype": self.input_dtype.name,
            "output_dtype": self.output_dtype.name,
            "input_quantization": self.input_quant,
            "output_quantization": self.output_quant,
        }
        return self

    def _load_compiled_model(self) -> None:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.environment import Environment, EnvironmentOptions
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.cpu_kernel_mode import CpuKernelMode
        from ai_edge_litert.options import CpuOptions, Options

        self._environment = Environment.create(options=EnvironmentOptions())
        self.compiled = CompiledModel.from_file(
            str(self.path),
            environment=self._environment,
            options=Options(
                hardware_accelerators=HardwareAccelerator(HardwareAccelerator.CPU),
                cpu_options=CpuOptions(
                    num_threads=self.threads,
                    kernel_mode=None if self.xnnpack else CpuKernelMode.BUILTIN,
                    xnnpack_flags=_XNNPACK_QS8 | _XNNPACK_QU8 | _XNNPACK_FORCE_FP16 if self.xnnpack_fp16 else None,
                ),
            ),
        )

    def _shape_for(self, batch: int) -> list[int]:
        c, h, w = self.input_shape
        return [batch, c, h, w] if self.layout == "NCHW" else [batch, h, w, c]

    def _resize(self, batch: int) -> None:
        try:
            self._resize_unchecked(batch)
        except (RuntimeError, ValueError) as exc:
            # litert-torch files bake their batch into reshapes; XNNPACK then refuses a new one.
            raise FixedBatchError(
                f"{self.path.name} runs at its exported batch only (resizing to {batch} failed: "
                f"{str(exc).splitlines()[0][:120]}); export it with that batch size instead"
            ) from exc

    def _resize_unchecked(self, batch: int) -> None:
        shape = self._shape_for(batch)
        if self.api == "compiled_model":
            signature = next(iter(self.compiled.get_signature_list()))
            details = self.compiled.get_input_tensor_details(signature)
            if list(next(iter(details.values()))["shape"]) != shape:
                self.compiled.resize_input_tensor(0, shape, strict=False)
            self._inputs = self.compiled.create_input_buffers(0)
            self._outputs = self.compiled.create_output_buffers(0)
            out = next(iter(self.compiled.get_output_tensor_details(signature).values()))
            self._output_shape = [int(d) for d in out["shape"]]
        else:
            current = [int(d) for d in self.interpreter.get_input_details()[0]["shape"]]
            if current != shape:
                self.interpreter.resize_tensor_input(self.input_index, shape)
            self.interpreter.allocate_tensors()
            self.output_index = self.interpreter.get_output_details()[0]["index"]
        self.batch = batch

    def _xnnpack_applied(self) -> bool | None:
        """Whether a delegate (XNNPACK on CPU) took over nodes; None when the API cannot tell."""
        if self.api == "compiled_model":
            try:
                return bool(self.compiled.is_fully_accelerated()) or None
            except Exception:
                return None
        try:
            ops = self.interpreter._get_ops_details()  # noqa: SLF001 - the only way to ask
        except Exception:
            return None
        return any(op.get("op_name") == "DELEGATE" for op in ops)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits for any batch size; a file that refuses a new batch runs split and padded at its own."""
        batch = self._check_image_shape(batch)
        if self.fixed_batch is None and batch.shape[0] != self.batch:
            try:
                self._resize(batch.shape[0])
            except FixedBatchError:
                # litert-torch files bake their batch in: learn it once, then the base class splits.
                self.fixed_batch = self.batch
                self._resize(self.fixed_batch)
        return super().run(batch)

    def _check_image_shape(self, batch: np.ndarray) -> np.ndarray:
        batch = as_nchw_float32(batch)
        if self.input_shape is not None and tuple(batch.shape[1:]) != tuple(self.input_shape):
            raise BadInputError(f"{self.path.name} takes {list(self.input_shape)} per image (C, H, W); "
                                f"the batch has {list(batch.shape[1:])}")
        return batch

    def bind(self, batch: np.ndarray) -> None:
        batch = self._check_batch(self._check_image_shape(batch))
        if batch.shape[0] != self.batch:
            self._resize(batch.shape[0])
        if self.layout == "NHWC":
            batch = np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
        if self.input_quant is not None:
            scale, zero_point = self.input_quant["scale"], self.input_quant["zero_point"]
            info = np.iinfo(self.input_dtype)
            batch = np.clip(np.round(batch / scale) + zero_point, info.min, info.max)
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        if self.api == "compiled_model":
            self._inputs[0].write(batch)
        else:
            self.interpreter.set_tensor(self.input_index, batch)

    def invoke(self) -> None:
        if self.api == "compiled_model":
            self.compiled.run_by_index(0, self._inputs, self._outputs)
        else:
            self.interpreter.invoke()

    def fetch(self) -> np.ndarray:
        if self.api == "compiled_model":
            count = int(np.prod(self._output_shape))
            output = self._outputs[0].read(count, self.output_dtype.type).reshape(self._output_shape)
        else:
            output = self.interpreter.get_tensor(self.output_index)
        if self.output_quant is not None:
            scale, zero_point = self.output_quant["scale"], self.output_quant["zero_point"]
            return ((output.astype(np.float32) - zero_point) * scale).astype(np.float32)
        return np.array(output, dtype=np.float32, copy=True)

    def close(self) -> None:
        self.interpreter = None
        self.compiled = None
        self._inputs = self._outputs = None


# TfLiteXNNPackDelegateOptions flags (xnnpack_delegate.h): signed and unsigned int8 kernels (on by
# default) and FORCE_FP16, which runs float operators in fp16 where the CPU has fp16 arithmetic.
_XNNPACK_QS8, _XNNPACK_QU8, _XNNPACK_FORCE_FP16 = 0x1, 0x2, 0x4


def _xnnpack_options(options: dict[str, Any], api: str) -> tuple[bool, bool]:
    """(use XNNPACK, force fp16) from the runner options; fp16 needs XNNPACK and the compiled-model API."""
    xnnpack, fp16 = options.get("xnnpack", True), options.get("xnnpack_fp16", False)
    if not isinstance(xnnpack, bool) or not isinstance(fp16, bool):
        raise BadInputError(f"xnnpack and xnnpack_fp16 must be true or false, got {xnnpack!r}, {fp16!r}")
    if fp16 and (api != "compiled_model" or not xnnpack):
        raise BadInputError("xnnpack_fp16 needs api=compiled_model with XNNPACK on (the interpreter API has no flag for it)")
    return xnnpack, fp16


def _resolver_kwargs(interpreter_cls, module_name: str, xnnpack: bool) -> dict[str, Any]:
    """The interpreter argument that switches XNNPACK off (built-in kernels only); none when it stays on."""
    if xnnpack:
        return {}
    module = importlib.import_module(f"{module_name}.interpreter")
    return {"experimental_op_resolver_type": module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}


def _quantization(detail: dict[str, Any]) -> dict[str, float] | None:
    """{'scale', 'zero_point'} of an integer tensor, None for float tensors."""
    if not np.issubdtype(np.dtype(detail["dtype"]), np.integer):
        return None
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if not scale:
        raise BadInputError(
            f"integer tensor {detail.get('name')!r} has no quantization scale: cannot convert it"
        )
    return {"scale": float(scale), "zero_point": int(zero_point)}
