"""ncnn runner: a `.param` + `.bin` pair through Tencent's `ncnn` wheel, one image per extractor run."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.backends.ncnn.param import read_param
from edgecnn.backends.runner import FixedBatchError, Runner, chw_from_manifest
from edgecnn.errors import BadInputError, require

# What each precision switches on. fp32 must say "off" explicitly: ncnn turns fp16 storage and
# arithmetic on by default wherever the CPU has them (a Pi 5's A76 does), so a default-configured
# net runs an "fp32" model in fp16.
_FP16_OPTIONS = ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic")
PRECISIONS = ("fp32", "fp16")
_WINOGRAD_OPTIONS = ("use_winograd_convolution", "use_winograd23_convolution", "use_winograd43_convolution",
                     "use_winograd63_convolution")


def _flag(options: dict[str, Any], name: str, default: bool) -> bool:
    value = options.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadInputError(f"the ncnn option {name} must be true or false, got {value!r}")
    return value


class NcnnRunner(Runner):
    """ncnn.Net on the CPU with explicit threads and per-precision fp16 options; batch 1 (Runner.run splits)."""

    runtime = "ncnn"
    extra = "ncnn"
    # What `edgecnn tune` sweeps besides threads: fp16 storage + arithmetic (an fp32 model then computes
    # in fp16), Winograd and sgemm convolution (ncnn's defaults: on where the CPU benefits).
    options = frozenset({"fp16", "winograd", "sgemm"})

    def load(self, path, *, threads=None, batch=1, **options: Any) -> "NcnnRunner":
        options = self._start_load(path, threads, batch, options)
        if self.path is None:
            raise BadInputError("the ncnn runner needs a .param file")
        precision = str(options.get("precision") or "fp32")
        if precision not in PRECISIONS:
            raise BadInputError(f"the ncnn runner runs {' and '.join(PRECISIONS)} models, not {precision}")
        graph = read_param(self.path)
        if len(graph.inputs) != 1 or len(graph.outputs) != 1:
            raise BadInputError(f"{self.path.name} has {len(graph.inputs)} input(s) and {len(graph.outputs)} "
                                "output(s); edgecnn expects one image in and one logits blob out")
        self.input_name, self.output_name = graph.inputs[0], graph.outputs[0]
        self.input_shape = _input_shape(graph.input_shape, chw_from_manifest(options), self.path.name)
        weights = self.path.with_suffix(".bin")
        if not weights.is_file():
            raise BadInputError(f"artifact not found: {weights} (an ncnn model is a .param and a .bin)")
        # ncnn takes one C,H,W image per run; a batch is a loop of runs (Runner.run does it).
        self.fixed_batch = 1
        if batch != 1:
            raise FixedBatchError(f"{self.path.name}: an ncnn model runs one image at a time, not a batch of {batch}")

        ncnn = require("ncnn", self.extra, "ncnn artifacts")
        self.version = ncnn.__version__
        self.net = ncnn.Net()
        # Options are read when layers are created, so they are set before anything loads.
        opt = self.net.opt
        opt.num_threads = self.threads
        opt.use_vulkan_compute = False
        fp16 = _flag(options, "fp16", precision == "fp16")
        for name in _FP16_OPTIONS:
            setattr(opt, name, fp16)
        for option, attributes in (("winograd", _WINOGRAD_OPTIONS), ("sgemm", ("use_sgemm_convolution",))):
            if options.get(option) is not None:
                for name in attributes:
                    setattr(opt, name, _flag(options, option, True))
        opt.use_bf16_storage = False
        opt.use_packing_layout = True  # SIMD-width channel packing: the fast path on NEON and AVX
        if self.net.load_param(str(self.path)) != 0:
            raise BadInputError(f"ncnn cannot load {self.path}: the .param file is malformed or uses unknown layers")
        if self.net.load_model(str(weights)) != 0:
            raise BadInputError(f"ncnn cannot load {weights}: the weights are truncated or do not match the .param")
        self.applied = self._read_back(precision)
        self._mat = self._output = None
        return self

    def _read_back(self, precision: str) -> dict[str, Any]:
        """The options as the loaded net holds them."""
        opt = self.net.opt
        return {
            "num_threads": int(opt.num_threads),
            "precision": precision,
            "use_fp16_storage": bool(opt.use_fp16_storage),
            "use_fp16_packed": bool(opt.use_fp16_packed),
            "use_fp16_arithmetic": bool(opt.use_fp16_arithmetic),
            "use_bf16_storage": bool(opt.use_bf16_storage),
            "use_winograd_convolution": bool(opt.use_winograd_convolution),
            "use_sgemm_convolution": bool(opt.use_sgemm_convolution),
            "use_packing_layout": bool(opt.use_packing_layout),
            "use_vulkan_compute": bool(opt.use_vulkan_compute),
            "ncnn_version": self.version,
            "input_blob": self.input_name,
            "output_blob": self.output_name,
        }

    def bind(self, batch: np.ndarray) -> None:
        import ncnn

        batch = self._check_batch(batch)
        # clone(): the Mat owns its copy, so the numpy buffer may go away before invoke.
        self._mat = ncnn.Mat(np.ascontiguousarray(batch[0])).clone()
        self.batch = 1

    def invoke(self) -> None:
        # A fresh extractor per run: an extractor caches its blobs, so a second extract() on the
        # same one would return the cached output without computing anything.
        extractor = self.net.create_extractor()
        extractor.input(self.input_name, self._mat)
        status, self._output = extractor.extract(self.output_name)
        if status != 0:
            raise BadInputError(f"ncnn failed to run {self.path.name} (extract returned {status})")

    def fetch(self) -> np.ndarray:
        return np.array(self._output, dtype=np.float32, copy=True).reshape(1, -1)

    def close(self) -> None:
        if getattr(self, "net", None) is not None:
            self.net.clear()
        self.net = self._mat = self._output = None


def _input_shape(declared, manifest, name: str) -> tuple[int, int, int] | None:
    """[C, H, W]: the .param's Input shape and the manifest's must agree; either alone is taken."""
    if declared is not None and manifest is not None and tuple(declared) != tuple(manifest):
        raise BadInputError(f"{name} declares input [C,H,W] {list(declared)}, the manifest {list(manifest)}")
    return declared or manifest


__all__ = ["NcnnRunner"]
