"""Per-channel weight ranges chosen by error (MSE) instead of min-max, for 7-bit and 8-bit int8 weights (issue 22).

On x86 without VNNI, edgecnn's `onnx` and `x86` profiles quantize weights to 7 bits so ONNX Runtime's u8*s8
kernels do not saturate (vpmaddubsw adds pairs in int16). Min-max 7-bit per-channel weights cost accuracy in
exact arithmetic (Lite1 97 %, Lite2 98 % agreement against 99 % for 8-bit: benchmarks/int8_methods.md). A
step twice as large makes the choice of each channel's range matter more: min-max spends the whole grid on the
channel's largest weight. This measures the classic alternative, a clip ratio per output channel that minimises
the weight's squared rounding error (plain, and weighted by each input channel's mean square activation, which
is the output error a conv actually sees).

It starts from ONNX Runtime's own QDQ graph (edgecnn.backends.onnxruntime.quantize, per-channel symmetric
weights, minmax activations) and replaces only each weight's per-channel scale and codes (and the int32 bias,
whose scale is input scale x weight scale): activations, graph and kernels are ORT's. Scored on the report part
of the split of benchmarks/int8_methods.py (100 calibrate / 100 search / 100 report, seed 0), in this host's int8
kernels (the arithmetic of an AVX2 `onnx` device) and in the exact Q/DQ emulation (ORT_DISABLE_ALL; a VNNI CPU or
TensorRT), with p50 at batch 1 timed side by side with the fp32 file (edgecnn's interleaved rounds: the ratio
holds under load, the milliseconds do not).

Also measured here, for the same AVX2 question: 8-bit weights on depthwise convs only (other convs 7-bit), and
int8 (S8S8) activations with 8-bit weights.

    PYTHONPATH=. nice -n 10 python benchmarks/int8_weight_ranges.py --out /tmp/wr [--models lite1,lite2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from edgecnn.backends.onnxruntime.pair_bound import _rescale_bias  # noqa: E402
from int8_methods import (  # noqa: E402
    MODELS, cpu_line, export_fp32, load_parts, run_logits, score,
)

ALPHAS = np.linspace(0.40, 1.0, 61)


def _input_energy(fp32: Path, images: np.ndarray, convs: dict[str, str]) -> dict[str, np.ndarray]:
    """Mean square of every conv's input per input channel (fp32 model, calibration photos)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(fp32))
    wanted = sorted(set(convs.values()))
    del model.graph.output[:]
    model.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in wanted)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    sums: dict[str, np.ndarray] = {}
    for start in range(0, len(images), 20):
        outs = sess.run(wanted, {sess.get_inputs()[0].name: images[start:start + 20]})
        for name, value in zip(wanted, outs):
            sums[name] = sums.get(name, 0) + np.square(value.astype(np.float64)).mean(axis=(0, 2, 3)) * len(value)
    return {name: total / len(images) for name, total in sums.items()}


def _best_scales(w: np.ndarray, qmin: int, qmax: int, energy: np.ndarray | None, group: int) -> np.ndarray:
    """Per output channel, the scale (a clip ratio of max|w|) that minimises the (energy-weighted) squared error."""
    flat = w.reshape(w.shape[0], -1).astype(np.float64)
    if energy is not None:
        # weight [out, in/group, kh, kw]: the input channel of each weight, for grouped/depthwise convs too
        per_in = w.shape[1]
        out_per_group = w.shape[0] // group
        chans = (np.arange(w.shape[0])[:, None] // out_per_group) * per_in + np.arange(per_in)[None, :]
        weights = np.repeat(energy[chans], w.shape[2] * w.shape[3], axis=1)
    else:
        weights = np.ones_like(flat)
    top = np.abs(flat).max(axis=1)
    top[top == 0] = 1e-12
    best, best_err = top / qmax, np.full(len(flat), np.inf)
    for alpha in ALPHAS:
        scale = alpha * top / qmax
        q = np.clip(np.round(flat / scale[:, None]), qmin, qmax)
        err = (weights * np.square(q * scale[:, None] - flat)).sum(axis=1)
        better = err < best_err
        best[better], best_err[better] = scale[better], err[better]
    return best.astype(np.float32)


def rerange(qdq: Path, fp32: Path, out: Path, *, energy: dict[str, np.ndarray] | None) -> dict:
    """Rewrite every per-channel int8 weight of the QDQ graph with error-minimising scales."""
    import onnx
    from onnx import numpy_helper

    model, float_model = onnx.load(str(qdq)), onnx.load(str(fp32))
    protos = {init.name: init for init in float_model.graph.initializer}
    floats = {name: numpy_helper.to_array(init) for name, init in protos.items()}
    inits = {init.name: init for init in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    changed, clipped = 0, []
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        group = next((a.i for a in conv.attribute if a.name == "group"), 1)
        wdq = producer.get(conv.input[1])
        if wdq is None or wdq.op_type != "DequantizeLinear" or wdq.input[0] not in inits:
            continue
        qname, sname = wdq.input[0], wdq.input[1]
        original = floats.get(qname.removesuffix("_quantized"))
        codes = numpy_helper.to_array(inits[qname])
        if original is None or codes.dtype != np.int8 or original.ndim != 4:
            continue
        qmax = int(np.abs(codes.astype(np.int32)).max())  # 127 (8-bit) or 64 (ORT's reduce_range)
        source = _conv_input(conv, producer)
        weighting = energy.get(source) if energy is not None and source else None
        scale = _best_scales(original, -qmax, qmax, weighting, group)
        old = numpy_helper.to_array(inits[sname]).astype(np.float32)
        new_codes = np.clip(np.round(original / scale.reshape(-1, 1, 1, 1)), -qmax, qmax).astype(np.int8)
        inits[qname].CopyFrom(numpy_helper.from_array(new_codes, qname))
        inits[sname].CopyFrom(numpy_helper.from_array(scale.reshape(old.shape), sname))
        if len(conv.input) > 2:
            _rescale_bias(conv.input[2], producer, inits, protos, scale / old.reshape(-1))
        clipped.append(float(np.mean(scale / old.reshape(-1))))
        changed += 1
    onnx.save(model, str(out))
    return {"weights_reranged": changed, "mean_clip_ratio": round(float(np.mean(clipped)), 4) if clipped else None}


def depthwise_8bit(qdq8: Path, fp32: Path, out: Path) -> dict:
    """8-bit weights kept on depthwise convs only; every other conv's weights re-quantized to ORT's 7-bit grid.

    The saturation on AVX2 is the u8*s8 GEMM's (vpmaddubsw adds adjacent products in int16). ONNX Runtime's
    depthwise QLinearConv kernel widens both to int16 and multiplies-adds into int32 (vpmaddwd): exact at 8
    bits. If that holds, only GEMM-run convs need the 7-bit step, and the depthwise ones (3x3 per channel, the
    most sensitive layers of this family) keep 8.
    """
    import onnx
    from onnx import numpy_helper

    model, float_model = onnx.load(str(qdq8)), onnx.load(str(fp32))
    protos = {init.name: init for init in float_model.graph.initializer}
    floats = {name: numpy_helper.to_array(init) for name, init in protos.items()}
    inits = {init.name: init for init in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    kept, seven = 0, 0
    for conv in (n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")):
        group = next((a.i for a in conv.attribute if a.name == "group"), 1)
        wdq = producer.get(conv.input[1])
        if wdq is None or wdq.op_type != "DequantizeLinear" or wdq.input[0] not in inits:
            continue
        qname, sname = wdq.input[0], wdq.input[1]
        original = floats.get(qname.removesuffix("_quantized"))
        if original is None or numpy_helper.to_array(inits[qname]).dtype != np.int8:
            continue
        if original.ndim == 4 and group > 1 and group == original.shape[0]:
            kept += 1
            continue
        old = numpy_helper.to_array(inits[sname]).astype(np.float32)
        axis = 0 if original.ndim == 4 else (1 if conv.op_type == "MatMul" else 0)
        flat = np.moveaxis(original, axis, 0).reshape(original.shape[axis], -1)
        top = np.abs(flat).max(axis=1)
        top[top == 0] = 1e-12
        scale = (top / 64.0).astype(np.float32) if old.ndim else np.float32(np.abs(flat).max() / 64.0)
        shape = [1] * original.ndim
        shape[axis] = -1
        codes = np.clip(np.round(original / np.reshape(scale, shape if old.ndim else [])), -64, 64).astype(np.int8)
        inits[qname].CopyFrom(numpy_helper.from_array(codes, qname))
        inits[sname].CopyFrom(numpy_helper.from_array(np.reshape(scale, old.shape), sname))
        if len(conv.input) > 2:
            _rescale_bias(conv.input[2], producer, inits, protos, np.reshape(scale, -1) / np.reshape(old, -1))
        seven += 1
    onnx.save(model, str(out))
    return {"depthwise_8bit": kept, "other_7bit": seven}


def _conv_input(conv, producer) -> str | None:
    """The float tensor a conv's input DequantizeLinear came from (its QuantizeLinear's input)."""
    dq = producer.get(conv.input[0])
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    q = producer.get(dq.input[0])
    return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else None


def run_model(name: str, size: int, out: Path, results: dict) -> None:
    from edgecnn.backends.onnxruntime.int8 import float_logits as _float_logits
    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8

    data, labels, parts = load_parts(name, size, out)
    fp32 = export_fp32(name, size, out, data["calib"])
    ref = run_logits(fp32, data["report"])
    lab = labels[parts["report"]]
    entry = results.setdefault(name, {"fp32_top1_report": float(np.mean(ref.argmax(1) == lab)), "variants": {}})
    energy_cache: dict = {}
    for bits in (7, 8):
        base = out / f"{name}-minmax{bits}.onnx"
        if not base.exists():
            quantize_onnx_int8(fp32, base, data["calib"], reduce_range=bits == 7)
            _float_logits(base)
        if not energy_cache:
            import onnx

            model = onnx.load(str(base))
            producer = {o: n for n in model.graph.node for o in n.output}
            convs = {c.name: s for c in model.graph.node if c.op_type == "Conv" and (s := _conv_input(c, producer))}
            energy_cache.update(_input_energy(fp32, data["calib"], convs))
        variants = {f"minmax {bits}-bit": (base, {})}
        if bits == 8:
            path = out / f"{name}-dw8.onnx"
            variants["minmax, depthwise 8-bit, other 7-bit"] = (path, depthwise_8bit(base, fp32, path))
            # int8 activations (S8S8): |a| <= 128, |w| <= 127 would fit a pair in int16, if the kernel kept them signed
            for tag, kwargs in (("s8s8 asymmetric", {"activation_type": "QInt8"}), ("s8s8 symmetric", {"symmetric": True})):
                path = out / f"{name}-{tag.replace(' ', '-')}.onnx"
                if not path.exists():
                    quantize_onnx_int8(fp32, path, data["calib"], reduce_range=False, **kwargs)
                    _float_logits(path)
                variants[f"minmax 8-bit, {tag} activations"] = (path, {})
        for tag, energy in (("mse", None), ("mse-weighted", energy_cache)):
            path = out / f"{name}-{tag}{bits}.onnx"
            start = time.perf_counter()
            info = rerange(base, fp32, path, energy=energy)
            info["seconds"] = round(time.perf_counter() - start, 1)
            variants[f"{tag} {bits}-bit"] = (path, info)
        score_variants(name, variants, fp32, data["report"], ref, lab, entry)


def score_variants(name: str, variants: dict, fp32: Path, images: np.ndarray, ref: np.ndarray, lab: np.ndarray,
                   entry: dict) -> None:
    """Each variant (label -> (path, info)) scored in both arithmetics and timed side by side with fp32."""
    from edgecnn.bench.candidates import RunnerMeasure

    measure = RunnerMeasure(images.shape[1:])
    for label, (path, info) in variants.items():
        row = dict(info)
        for arithmetic, emulate in (("kernels", False), ("emulation", True)):
            logits = run_logits(path, images, emulate=emulate)
            # agreement moves by whole photos (1 point each); the logit error ranks methods with less noise
            row[arithmetic] = {**score(ref, logits, lab),
                               "logit_rmse": round(float(np.sqrt(np.mean((logits - ref) ** 2))), 4)}
        side = measure.side_by_side("onnxruntime", path, fp32, images[:1])
        row["p50_ms_vs_fp32"] = {key: side[key] for key in ("p50_ms", "fp32_p50_ms", "ratio", "load_average")}
        entry["variants"][label] = row
        print(name, label, json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", default="lite1,lite2")
    parser.add_argument("--json", type=Path, default=Path(__file__).with_name("int8_weight_ranges.json"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"cpu": cpu_line(), "split": "100 calibrate / 100 search / 100 report (seed 0)", "models": {}}
    for name in args.models.split(","):
        run_model(name, MODELS[name], args.out, results["models"])
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
