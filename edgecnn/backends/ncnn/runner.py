"""ncnn runner: a `.param` + `.bin` pair through Tencent's `ncnn` wheel, one image per extractor run."""

from __future__ import annotations

import os
import sys
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

# How ncnn's OpenMP worker threads wait between parallel regions (a network is one region per layer or
# more). "spin" is OpenMP's default: a worker busy-waits (libgomp: 300,000 pause loops, a few ms) for the
# next region. On a quiet machine that saves a wake-up per region; when other processes want the cores it
# is a collapse: the spinning thread burns the time slice its partner needs to reach the barrier (issue 23:
# MobileNet v2 at 2 threads, p90 in seconds). "passive" sleeps at once and wakes through the kernel, which
# costs a wake-up per region quietly but keeps latency under contention (README, "ncnn under load").
OPENMP_WAITS = ("passive", "spin")
DEFAULT_OPENMP_WAIT = "passive"
# The OpenMP runtime reads these once, when it is loaded (i.e. when `import ncnn` loads the extension):
# libgomp, which the Linux wheels bundle, and LLVM's libomp both honour OMP_WAIT_POLICY; GOMP_SPINCOUNT=0
# makes libgomp's passive exact. "spin" clears them, so the runtime's own default applies.
_WAIT_ENVIRONMENT = {"passive": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0"}, "spin": {}}
_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
# ncnn's own knob, Option.openmp_blocktime, reaches LLVM's libomp only (kmp_set_blocktime); libgomp builds
# ignore it. Set anyway for ncnn built with clang: 0 ms sleeps at once, 20 ms is ncnn's default.
_BLOCKTIME_MS = {"passive": 0, "spin": 20}
# The wait policy the OpenMP runtime took when this process imported ncnn through the runner; None before.
_imported_wait: str | None = None


def _import_ncnn(wait: str) -> tuple[Any, str]:
    """(ncnn, the wait policy in effect): the first import sets it; later runners in this process share it."""
    global _imported_wait
    if "ncnn" in sys.modules:
        # Imported already: its OpenMP runtime read the environment then, and never reads it again.
        return sys.modules["ncnn"], _imported_wait or "unknown (ncnn was imported before the runner)"
    saved = {name: os.environ.pop(name, None) for name in _WAIT_VARIABLES}
    os.environ.update(_WAIT_ENVIRONMENT[wait])
    try:
        ncnn = require("ncnn", "ncnn", "ncnn artifacts")
    finally:
        # Only the import needed them: child processes and other OpenMP users keep the caller's environment.
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value
    _imported_wait = wait
    return ncnn, wait


def _openmp_runtime() -> str:
    """The OpenMP library this process has loaded (libgomp or libomp), from /proc/self/maps; '' when unknown."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            names = {line.rsplit("/", 1)[-1].strip() for line in maps if ".so" in line}
    except OSError:
        return ""
    found = sorted(name.split(".so")[0].split("-")[0] for name in names
                   if name.startswith(("libgomp", "libomp", "libiomp")))
    return ", ".join(dict.fromkeys(found))


def _openmp_wait(options: dict[str, Any]) -> str:
    value = options.get("openmp_wait")
    if value is None:
        return DEFAULT_OPENMP_WAIT
    if value not in OPENMP_WAITS:
        raise BadInputError(f"the ncnn option openmp_wait must be {' or '.join(OPENMP_WAITS)}, got {value!r}")
    return value


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
    # in fp16), Winograd and sgemm convolution (ncnn's defaults: on where the CPU benefits), and how OpenMP
    # threads wait between layers (openmp_wait: passive or spin; see OPENMP_WAITS).
    options = frozenset({"fp16", "winograd", "sgemm", "openmp_wait"})

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

        wait = _openmp_wait(options)
        ncnn, self.openmp_wait = _import_ncnn(wait)
        self._wait_asked = wait
        self.version = ncnn.__version__
        self.net = ncnn.Net()
        # Options are read when layers are created, so they are set before anything loads.
        _configure(self.net.opt, options, precision, self.threads, wait)
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
            "openmp_wait": self.openmp_wait,
            "openmp_blocktime": int(opt.openmp_blocktime),
            "openmp_runtime": _openmp_runtime() or "unknown",
            **({} if self._wait_asked == self.openmp_wait else {"openmp_wait_asked": self._wait_asked}),
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


def _configure(opt, options: dict[str, Any], precision: str, threads: int, wait: str) -> None:
    """Set the ncnn.Option the net reads when its layers are created."""
    opt.num_threads = threads
    opt.use_vulkan_compute = False
    opt.openmp_blocktime = _BLOCKTIME_MS[wait]
    fp16 = _flag(options, "fp16", precision == "fp16")
    for name in _FP16_OPTIONS:
        setattr(opt, name, fp16)
    for option, attributes in (("winograd", _WINOGRAD_OPTIONS), ("sgemm", ("use_sgemm_convolution",))):
        if options.get(option) is not None:
            for name in attributes:
                setattr(opt, name, _flag(options, option, True))
    opt.use_bf16_storage = False
    opt.use_packing_layout = True  # SIMD-width channel packing: the fast path on NEON and AVX


def _input_shape(declared, manifest, name: str) -> tuple[int, int, int] | None:
    """[C, H, W]: the .param's Input shape and the manifest's must agree; either alone is taken."""
    if declared is not None and manifest is not None and tuple(declared) != tuple(manifest):
        raise BadInputError(f"{name} declares input [C,H,W] {list(declared)}, the manifest {list(manifest)}")
    return declared or manifest


__all__ = ["DEFAULT_OPENMP_WAIT", "OPENMP_WAITS", "NcnnRunner"]
