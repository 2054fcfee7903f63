"""OpenVINO runner: `.xml` + `.bin` IR (or an `.onnx` read directly) on the CPU plugin."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.errors import BadInputError, require
from edgecnn.backends.runner import FixedBatchError, Runner, chw_from_manifest, static_dims

# Properties read back after compiling: what the plugin really chose.
_REPORTED = (
    "INFERENCE_NUM_THREADS",
    "PERFORMANCE_HINT",
    "INFERENCE_PRECISION_HINT",
    "NUM_STREAMS",
    "EXECUTION_DEVICES",
    "ENABLE_CPU_PINNING",
    "ENABLE_HYPER_THREADING",
)

_PRECISIONS = {"f32", "bf16", "f16", "auto"}


class OpenVinoRunner(Runner):
    """Compiled model with explicit threads, the LATENCY hint and an explicit inference precision.

    The inference precision matters: on CPUs with AVX-512 bf16 the plugin's default is bf16,
    which ran an fp32 MobileNet v2 at 4.96 ms against 3.21 ms in f32 on the 2-core reference
    machine (and changes the numbers). fp32 and int8 IRs therefore run in f32 unless
    `inference_precision` says otherwise ("auto" keeps the plugin's default).
    """

    runtime = "openvino"
    extra = "openvino-runtime"
    # num_streams and cpu_pinning are what `edgecnn tune` sweeps besides threads and the precision hint.
    # fake_quantize="emulate" scores an INT8 IR in the device's arithmetic (edgecnn.backends.openvino.emulate).
    options = frozenset({"inference_precision", "performance_hint", "device", "num_streams", "cpu_pinning",
                         "fake_quantize"})

    def load(self, path, *, threads=None, batch=1, **options: Any) -> "OpenVinoRunner":
        options = self._start_load(path, threads, batch, options)
        ov = require("openvino", self.extra, "OpenVINO artifacts")
        self._ov = ov
        self.version = ov.get_version()
        self.device = str(options.get("device", "CPU"))

        self.config = _compile_config(self.threads, options)
        self.core = ov.Core()
        if self.path.suffix.lower() == ".xml" and not self.path.with_suffix(".bin").is_file():
            raise BadInputError(f"OpenVINO weights not found next to the IR: {self.path.with_suffix('.bin')}")
        try:
            self.model = self.core.read_model(str(self.path))
        except Exception as exc:  # OpenVINO raises RuntimeError with its own text
            raise BadInputError(f"OpenVINO cannot read {self.path}: {exc}") from exc
        self.fake_quantize = _apply_fake_quantize(self.model, options)
        if len(self.model.inputs) != 1:
            raise BadInputError(
                f"{self.path.name} has {len(self.model.inputs)} inputs; edgecnn expects one image input"
            )
        partial = self.model.input(0).get_partial_shape()
        dims = static_dims(
            [d.get_length() if d.is_static else -1 for d in partial]
        )
        if len(dims) != 4:
            raise BadInputError(f"{self.path.name}: input rank {len(dims)}, expected NCHW")
        self.input_shape = (
            (dims[1], dims[2], dims[3]) if None not in dims[1:] else chw_from_manifest(options)
        )
        if self.input_shape is None:
            raise BadInputError(
                f"{self.path.name} has a dynamic image size: give the input shape (bundle manifest)"
            )
        self._compiled: dict[int, Any] = {}
        self._compile(batch)
        return self

    def _compile(self, batch: int) -> None:
        """Reshape to a static [batch, C, H, W] and compile once per batch size."""
        if batch not in self._compiled:
            try:
                self.model.reshape({self.model.input(0): [batch, *self.input_shape]})
            except Exception as exc:
                raise FixedBatchError(
                    f"{self.path.name} cannot be reshaped to batch {batch}: {exc}"
                ) from exc
            try:
                compiled = self.core.compile_model(self.model, self.device, self.config)
            except Exception as exc:
                raise BadInputError(f"OpenVINO cannot compile {self.path.name}: {exc}") from exc
            self._compiled[batch] = (compiled, compiled.create_infer_request())
        self.compiled, self.request = self._compiled[batch]
        self.batch = batch
        self.applied = {"device": self.device, **self._reported(self.compiled)}
        if self.fake_quantize == "emulate":  # said wherever the options applied are: not the int8 kernels
            self.applied["fake_quantize"] = "emulated in float (the device's exact int8 arithmetic)"

    @staticmethod
    def _reported(compiled) -> dict[str, Any]:
        reported: dict[str, Any] = {}
        for key in _REPORTED:
            try:
                value = compiled.get_property(key)
            except Exception:  # a property this plugin or version does not expose
                continue
            if hasattr(value, "get_type_name"):  # ov.Type
                value = value.get_type_name()
            elif hasattr(value, "name") and not isinstance(value, (str, int, float, bool)):
                value = value.name  # enums
            elif isinstance(value, (list, tuple)):
                value = [str(v) for v in value]
            reported[key] = value
        return reported

    def bind(self, batch: np.ndarray) -> None:
        batch = self._check_batch(batch)
        if batch.shape[0] != self.batch:
            self._compile(batch.shape[0])
        # Copy into the request's own tensor, as benchmark_app does: the timed call then
        # reads memory the plugin allocated and aligned.
        self.request.get_input_tensor(0).data[...] = batch

    def invoke(self) -> None:
        self.request.infer()

    def fetch(self) -> np.ndarray:
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def close(self) -> None:
        self._compiled = {}
        self.request = None
        self.compiled = None



def _compile_config(threads: int, options: dict[str, Any]) -> dict[str, str]:
    """The plugin's properties: threads, the performance hint and the inference precision (f32 for fp32 and
    int8 IRs unless asked otherwise), plus the swept stream and pinning settings."""
    precision = str(options.get("precision") or "fp32").lower()
    wanted = options.get("inference_precision")
    if wanted is None:
        wanted = "f32" if precision in ("fp32", "int8") else "auto"
    wanted = str(wanted).lower()
    if wanted not in _PRECISIONS:
        raise BadInputError(
            f"inference_precision must be one of {', '.join(sorted(_PRECISIONS))}, got {wanted!r}"
        )
    hint = str(options.get("performance_hint", "LATENCY")).upper()
    if hint not in ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"):
        raise BadInputError(f"performance_hint must be LATENCY or THROUGHPUT, got {hint!r}")
    config = {"INFERENCE_NUM_THREADS": str(threads), "PERFORMANCE_HINT": hint}
    if wanted != "auto":
        config["INFERENCE_PRECISION_HINT"] = wanted
    config.update(_stream_and_pinning(options))
    return config


def _apply_fake_quantize(model: Any, options: dict[str, Any]) -> str:
    """"kernels" leaves FakeQuantize to the plugin's int8 kernels; "emulate" rewrites it as float ops so the
    score is the device's arithmetic, not this host's (edgecnn.backends.openvino.emulate)."""
    fake_quantize = str(options.get("fake_quantize", "kernels")).lower()
    if fake_quantize not in ("kernels", "emulate"):
        raise BadInputError(f"fake_quantize must be kernels or emulate, got {fake_quantize!r}")
    if fake_quantize == "emulate":
        from edgecnn.backends.openvino.emulate import emulate_fake_quantize

        emulate_fake_quantize(model)
    return fake_quantize

def _stream_and_pinning(options: dict[str, Any]) -> dict[str, str]:
    """NUM_STREAMS and ENABLE_CPU_PINNING when asked for (the plugin decides otherwise)."""
    config: dict[str, str] = {}
    streams = options.get("num_streams")
    if streams is not None:
        if isinstance(streams, bool) or not (isinstance(streams, int) and streams >= 1):
            raise BadInputError(f"num_streams must be a positive integer, got {streams!r}")
        config["NUM_STREAMS"] = str(streams)
    pinning = options.get("cpu_pinning")
    if pinning is not None:
        if not isinstance(pinning, bool):
            raise BadInputError(f"cpu_pinning must be true or false, got {pinning!r}")
        config["ENABLE_CPU_PINNING"] = "YES" if pinning else "NO"
    return config
