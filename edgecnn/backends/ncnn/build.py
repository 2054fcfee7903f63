"""The export step for ncnn targets: TorchScript trace -> pnnx -> `ncnn/model.{fp32,fp16}.param` + `.bin`.

Why TorchScript and not the pipeline's ONNX: TorchScript is pnnx's own input. For MobileNet v2 both
routes give the same ncnn graph, layer for layer, but the ONNX route costs an extra export and pnnx
then writes a `*.pnnxsim.onnx` beside its input. The fp16 artifact is pnnx's `fp16=1` (weights
stored as fp16, half the size); the runner switches on fp16 storage and arithmetic for it.

INT8 is not offered: ncnn quantizes with its C++ tools `ncnn2table` (calibration) and `ncnn2int8`
(rewriting the weights), and neither the `ncnn` wheel (Python bindings only) nor the `pnnx` wheel
(the converter only) ships them; pnnx has no int8 output. An int8 ncnn model needs ncnn built from
source, outside what `pip install` gives.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from edgecnn.backends.ncnn.param import read_param, with_input_shape
from edgecnn.errors import BadInputError, MissingDependencyError

if TYPE_CHECKING:  # pragma: no cover
    from edgecnn.build_context import BuildContext

HOST_EXTRA = "pnnx"
INT8_UNAVAILABLE = ("ncnn int8 needs ncnn's C++ tools ncnn2table and ncnn2int8, which neither the ncnn nor "
                    "the pnnx wheel ships; build ncnn from source for int8, or use fp16")
PNNX_TIMEOUT_S = 900


def build(ctx: "BuildContext") -> None:
    if ctx.precision not in ("fp32", "fp16"):
        raise BadInputError(f"{ctx.profile.name}: {ctx.precision} is not available for ncnn: {INT8_UNAVAILABLE}")
    ctx.stage("tracing the model to TorchScript for pnnx")
    started = time.perf_counter()
    torchscript = trace(ctx.torch_model, ctx.data.golden_inputs[:1], ctx.scratch / "model.pt")
    trace_s = time.perf_counter() - started
    for precision in ctx.precisions:
        param = ctx.writer.path(f"ncnn/model.{precision}.param")
        ctx.stage(f"converting to ncnn with pnnx ({precision})")
        started = time.perf_counter()
        convert(torchscript, param, input_shape=tuple(ctx.preprocess.input_shape), fp16=precision == "fp16",
                scratch=ctx.scratch / f"pnnx-{precision}")
        seconds = time.perf_counter() - started + (trace_s if precision == "fp32" else 0.0)
        layers = read_param(param).layers
        if precision == "fp32":
            ctx.fusion = {"note": "pnnx folds BatchNorm into the convolutions and fuses their activations",
                          "batchnorm_layers_after": layers.get("BatchNorm", 0), "layers_after": dict(layers)}
        ctx.add([param, param.with_suffix(".bin")], format="ncnn", runtime="ncnn", precision=precision,
                seconds=seconds, batch=1, weight_storage=precision, layers=dict(layers))


def trace(model, example, path: Path) -> Path:
    """The model traced on one real sample and saved as TorchScript."""
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        # torch.jit.trace is deprecated in favour of torch.export, but it is what pnnx reads.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            traced = torch.jit.trace(model.eval(), torch.from_numpy(example.copy()), check_trace=False)
        except Exception as exc:  # tracing raises whatever the model's code raises
            raise BadInputError(f"cannot trace the model to TorchScript for pnnx: {exc}") from exc
        traced.save(str(path))
    return path


def pnnx_executable() -> Path:
    """The pnnx binary inside the pnnx wheel (found without importing pnnx, which imports torch)."""
    spec = importlib.util.find_spec("pnnx")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("pnnx", HOST_EXTRA, "converting models to ncnn")
    executable = Path(list(spec.submodule_search_locations)[0]) / ("pnnx.exe" if os.name == "nt" else "pnnx")
    if not executable.is_file():
        raise MissingDependencyError("pnnx", HOST_EXTRA, f"converting models to ncnn; {executable} is missing")
    return executable


def convert(torchscript: Path, param: Path, *, input_shape: tuple[int, int, int], fp16: bool,
            scratch: Path) -> Path:
    """Run pnnx on a TorchScript file: ncnn `param` and its `.bin`, the Input layer's shape written in."""
    scratch.mkdir(parents=True, exist_ok=True)
    weights = param.with_suffix(".bin")
    c, h, w = input_shape
    command = [str(pnnx_executable()), str(torchscript), f"inputshape=[1,{c},{h},{w}]f32",
               f"fp16={int(fp16)}", "device=cpu", "optlevel=2",
               f"ncnnparam={param}", f"ncnnbin={weights}", f"ncnnpy={scratch / 'model_ncnn.py'}",
               # pnnx's own IR goes to the scratch folder; an empty pnnxonnx skips its ONNX copy.
               f"pnnxparam={scratch / 'model.pnnx.param'}", f"pnnxbin={scratch / 'model.pnnx.bin'}",
               f"pnnxpy={scratch / 'model_pnnx.py'}", "pnnxonnx="]
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=scratch, timeout=PNNX_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BadInputError(f"pnnx did not finish converting the model within {PNNX_TIMEOUT_S} s") from None
    if done.returncode != 0 or not param.is_file() or not weights.is_file() or weights.stat().st_size == 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise BadInputError(f"pnnx could not convert the model to ncnn (exit {done.returncode}): "
                            f"{tail or 'no output files'}")
    # pnnx keeps an op it has no ncnn layer for under its PyTorch name (torch.index_select, F.xxx):
    # ncnn layer types never contain a dot, so such a model cannot load; say which op, here.
    unmapped = sorted(kind for kind in read_param(param).layers if "." in kind)
    if unmapped:
        raise BadInputError(f"pnnx has no ncnn layer for {', '.join(unmapped)}: ncnn cannot run this model "
                            "(export it for another target)")
    with_input_shape(param, input_shape)
    return param
