"""Qualcomm aimet-onnx (CLE, AdaRound, SeqMSE) against edgecnn's ONNX Runtime INT8 baseline, EfficientNet-Lite1/Lite2.

Every variant ends as a plain QDQ ONNX (per-channel symmetric int8 weights, uint8 asymmetric activations, int32
bias, float logits) that onnxruntime.InferenceSession loads, and that file is scored, not AIMET's sim, on the 100
"report" photos of the calibrate/search/report split of `int8_methods.py`: agreement of argmax with the fp32 ONNX,
top-1 against the labels, p50 latency at batch 1 (2 threads). 8-bit weights are scored in exact Q/DQ float
emulation (ORT graph optimizations off: this AVX2, no-VNNI host's int8 kernels saturate with 8-bit weights), 7-bit
weights in emulation and on ORT's int8 kernels.

aimet-onnx lives in its own venv (`python -m venv --system-site-packages /work/aimet-venv && pip install
aimet-onnx`); this script runs under the main interpreter and starts one worker process per AIMET variant:

    PYTHONPATH=. nice -n 10 python benchmarks/int8_aimet.py --out /work/aimet-out \
        --aimet-python /work/aimet-venv/bin/python --json benchmarks/int8_aimet.json --md benchmarks/int8_aimet.md

The AIMET sim is made to follow ORT's scheme: it is built on the graph ORT's quantizer reads (`quant_pre_process`),
with a strict-symmetric per-channel config (codes +-127, scale max|w|/127 as ORT's QInt8 symmetric weights), the
Conv output in front of each Clip(0,6) left to the Clip's quantizer (ORT fuses Conv+Clip; AIMET's Conv+Clip supergroup
does not match this graph, and a second quantizer on the unclipped Conv output costs 2-4 points), and the Clip
bounds left unquantized.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import int8_methods as im  # noqa: E402  (MODELS, export_fp32, photo_paths, preprocess, run_logits, ...)

# label -> what the worker does. steps run in order after calibration; "cle" runs before the sim is built.
VARIANTS = {
    "aimet": {"cle": False, "steps": []},
    "aimet + CLE": {"cle": True, "steps": []},
    "aimet + AdaRound": {"cle": False, "steps": ["adaround"]},
    "aimet + SeqMSE": {"cle": False, "steps": ["seqmse"]},
    "aimet + SeqMSE + AdaRound": {"cle": False, "steps": ["seqmse", "adaround"]},
}


# ===================================================================================== worker (aimet venv)
def _strict_config(out: Path) -> str:
    from aimet_onnx.common.quantsim_config import quantsim_config as qc

    config = json.loads(Path(qc.__file__).with_name("default_config_per_channel.json").read_text())
    # ORT's QInt8 symmetric weights: codes in [-127, 127], scale max|w| / 127. AIMET's default (non-strict) also
    # uses -128, which ORT never derives.
    config["defaults"]["strict_symmetric"] = "True"
    path = out / "aimet-strict-per-channel.json"
    path.write_text(json.dumps(config))
    return str(path)


def _like_ort(sim, model) -> int:
    """Disable the quantizers ORT's QDQ quantizer does not place: the Conv/Gemm output consumed only by a Clip
    (ORT quantizes after the Clip and fuses), and the Clip's min/max inputs. Returns how many were disabled."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    disabled = 0
    for node in model.graph.node:
        names = []
        if node.op_type in ("Conv", "Gemm") and [c.op_type for c in consumers.get(node.output[0], [])] == ["Clip"]:
            names.append(node.output[0])
        if node.op_type == "Clip":
            names += [n for n in node.input[1:] if n]
        for name in names:
            quantizer = sim.qc_quantize_op_dict.get(name)
            if quantizer is not None and quantizer.enabled:
                quantizer.enabled = False
                disabled += 1
    return disabled


def _weight_quantizers(sim) -> dict:
    """Enabled quantizers of Conv/Gemm weights (the 4-D / 2-D initializers), by initializer name."""
    inits = {i.name: i for i in sim.model.model.graph.initializer}
    return {name: q for name, q in sim.qc_quantize_op_dict.items()
            if name in sim.param_names and q.enabled and name in inits and len(inits[name].dims) >= 2}


def _fold_weights_to_8bit_container(sim) -> dict:
    """Write every quantized weight as its fake-quantized value (scale * code, exactly what the sim computes) and,
    for sub-8-bit quantizers, re-declare the quantizer as 8-bit with the *same* scale, so `to_onnx_qdq` (which
    accepts only 4/8/16/32 bits) writes int8 codes that stay within the 7-bit range. Returns counts."""
    from aimet_onnx.common import libpymo
    from onnx import numpy_helper as nh

    inits = {i.name: i for i in sim.model.model.graph.initializer}
    widened = folded = 0
    for name, quantizer in _weight_quantizers(sim).items():
        weight = nh.to_array(inits[name]).astype(np.float32)
        snapped = quantizer.quantize_dequantize(weight)
        inits[name].CopyFrom(nh.from_array(snapped.astype(np.float32), name))
        folded += 1
        if quantizer.bitwidth < 8:
            old = quantizer.get_encodings()
            quantizer._is_encoding_frozen = False  # noqa: SLF001  (AdaRound/SeqMSE froze it)
            quantizer.set_bitwidth(8)
            new = []
            for enc in old:
                e = libpymo.TfEncoding()
                e.delta, e.offset, e.bw = enc.delta, -127.0, 8
                e.min, e.max = -127.0 * enc.delta, 127.0 * enc.delta
                new.append(e)
            quantizer.load_encodings(new)
            quantizer.freeze_encodings()
            widened += 1
    sim._rebuild_session()  # noqa: SLF001
    return {"weights_folded": folded, "widened_to_int8_container": widened}


def worker(spec: dict) -> None:
    import onnx

    import aimet_onnx
    from aimet_onnx.quantsim import QuantizationSimModel

    logging.getLogger().setLevel(logging.WARNING)
    for name in ("Quant", "AdaRound", "SeqMse", "Utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    out = Path(spec["out"])
    calib = np.load(spec["calib"])
    bits = spec["bits"]
    info: dict = {"aimet_onnx": aimet_onnx.__version__, "bits": bits}
    timings: dict = {}
    started = time.perf_counter()
    model = onnx.load(spec["fp32"])
    input_name = model.graph.input[0].name
    if spec["cle"]:
        from aimet_onnx.cross_layer_equalization import equalize_model

        t = time.perf_counter()
        clips = sum(n.op_type == "Clip" for n in model.graph.node)
        equalize_model(model)
        info["cle"] = {"clip_before": clips, "clip_after": sum(n.op_type == "Clip" for n in model.graph.node),
                       "relu_after": sum(n.op_type == "Relu" for n in model.graph.node)}
        onnx.save(model, spec["cle_fp32"])
        timings["cle_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    graph = onnx.ModelProto()
    graph.CopyFrom(model)  # the sim rewrites `model` in place (QcQuantizeOp nodes); keep the float graph's wiring
    sim = QuantizationSimModel(model, param_type="int8", activation_type="int8", quant_scheme="min_max",
                               config_file=_strict_config(out), providers=["CPUExecutionProvider"],
                               session_options_kwargs={"intra_op_num_threads": 2, "inter_op_num_threads": 1})
    info["quantizers_disabled_like_ort"] = _like_ort(sim, graph)
    weights = _weight_quantizers(sim)
    if bits != 8:
        for quantizer in weights.values():
            quantizer.set_bitwidth(bits)
    info["weight_quantizers"] = len(weights)
    batch = spec["batch"]
    calib_inputs = [{input_name: calib[i:i + batch]} for i in range(0, len(calib), batch)]
    sim.compute_encodings(calib_inputs)
    timings["sim_and_calibration_s"] = round(time.perf_counter() - t, 1)
    opt = calib[:spec["opt_images"]]
    opt_inputs = [{input_name: opt[i:i + batch]} for i in range(0, len(opt), batch)]
    logging.getLogger("Quant").setLevel(logging.INFO)  # AdaRound/SeqMSE say which layer they are on
    for step in spec["steps"]:
        t = time.perf_counter()
        if step == "adaround":
            aimet_onnx.apply_adaround(sim, opt_inputs, num_iterations=spec["adaround_iterations"])
            info["adaround"] = {"iterations": spec["adaround_iterations"], "images": len(opt)}
        elif step == "seqmse":
            aimet_onnx.apply_seq_mse(sim, opt_inputs, num_candidates=spec["seqmse_candidates"])
            info["seqmse"] = {"candidates": spec["seqmse_candidates"], "images": len(opt)}
        else:
            raise SystemExit(f"unknown step {step}")
        timings[f"{step}_s"] = round(time.perf_counter() - t, 1)
        print(f"{spec['label']}: {step} done in {timings[f'{step}_s']} s", file=sys.stderr, flush=True)
    logging.getLogger("Quant").setLevel(logging.WARNING)
    if spec["steps"]:
        # activation ranges again, now with the optimised (frozen) weight encodings
        t = time.perf_counter()
        sim.compute_encodings(calib_inputs)
        timings["recalibration_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    info.update(_fold_weights_to_8bit_container(sim))
    qdq = sim.to_onnx_qdq(export_int32_bias=True, prequantize_constants=True)
    onnx.save(qdq, spec["qdq"])
    timings["export_s"] = round(time.perf_counter() - t, 1)
    timings["total_s"] = round(time.perf_counter() - started, 1)
    info["timings"] = timings
    Path(spec["qdq"] + ".json").write_text(json.dumps(info))
    print(json.dumps(info))


# ===================================================================================== main (project env)
def weight_codes(qdq_path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{float weight name: (int codes, per-channel scale)} of a QDQ ONNX whose weights are int8 initializers."""
    import onnx
    from onnx import numpy_helper as nh

    model = onnx.load(str(qdq_path))
    inits = {i.name: i for i in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        codes = nh.to_array(inits[node.input[0]])
        if codes.dtype != np.int8 or codes.ndim < 2:
            continue
        scale = nh.to_array(inits[node.input[1]]).astype(np.float32)
        base = node.input[0]
        for suffix in ("_quantized", "_q"):
            base = base.removesuffix(suffix)
        found[base] = (codes.astype(np.int32), scale)
    return found


def write_snapped_fp32(prep_fp32: Path, aimet_qdq: Path, out: Path) -> int:
    """The fp32 graph ORT's quantizer reads, with every weight replaced by AIMET's scale * code."""
    import onnx
    from onnx import numpy_helper as nh

    codes = weight_codes(aimet_qdq)
    model = onnx.load(str(prep_fp32))
    replaced = 0
    for init in model.graph.initializer:
        if init.name in codes:
            q, s = codes[init.name]
            shape = [-1] + [1] * (q.ndim - 1)
            value = (q * s.reshape(shape)).astype(np.float32)
            if value.shape == tuple(init.dims):
                init.CopyFrom(nh.from_array(value, init.name))
                replaced += 1
    onnx.save(model, str(out))
    return replaced


def compare_codes(a_qdq: Path, b_qdq: Path) -> dict:
    """How many weight codes and per-channel scales two QDQ models share (AIMET's vs ORT-requantized)."""
    a, b = weight_codes(a_qdq), weight_codes(b_qdq)
    total = same = channels = same_scale = tiny = 0
    worst = 0
    for name, (qa, sa) in a.items():
        if name not in b:
            continue
        qb, sb = b[name]
        total += qa.size
        same += int(np.count_nonzero(qa == qb))
        worst = max(worst, int(np.abs(qa - qb).max()))
        channels += sa.size
        close = np.isclose(sa, sb, rtol=1e-5, atol=0)
        same_scale += int(np.count_nonzero(close))
        # channels whose max|code| is not 127 in AIMET's file: there ORT derives another scale by construction
        tiny += int(np.count_nonzero(np.abs(qa).reshape(qa.shape[0], -1).max(1) != 127))
    return {"weights_compared": len(set(a) & set(b)), "codes": total, "codes_equal": same,
            "codes_equal_pct": round(100 * same / max(total, 1), 4), "max_code_diff": worst, "channels": channels,
            "channel_scales_equal": same_scale, "aimet_channels_without_code_127": tiny}


def score(ref: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> dict:
    return {"agreement_pct": round(100 * float(np.mean(ref.argmax(1) == logits.argmax(1))), 1),
            "top1_pct": round(100 * float(np.mean(logits.argmax(1) == labels)), 1)}


def run_model(name: str, args, results: dict, save) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgecnn.backends.onnxruntime.int8 import float_logits
    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8

    out = Path(args.out)
    size = im.MODELS[name]
    paths, labels = im.photo_paths()
    parts = im.split_indices(len(paths))
    data = {}
    for part in ("calib", "report"):
        cached = out / f"{name}-{part}.npy"
        if not cached.exists():
            np.save(cached, im.preprocess([paths[i] for i in parts[part]], size))
        data[part] = np.load(cached)
    fp32 = im.export_fp32(name, size, out, data["calib"])
    prep = out / f"{name}-prep.onnx"
    if not prep.exists():
        quant_pre_process(str(fp32), str(prep), skip_symbolic_shape=False)
    ref = im.run_logits(fp32, data["report"])
    lab = labels[parts["report"]]
    entry = results.setdefault(name, {"input": size, "variants": {}})
    entry["fp32_top1_pct"] = round(100 * float(np.mean(ref.argmax(1) == lab)), 1)
    if "fp32_p50_ms" not in entry:
        entry["fp32_p50_ms"] = round(im.p50_ms(fp32, data["report"]), 2)
    save()

    def evaluate(path: Path, bits: int) -> dict:
        row = {"weight_bits": bits, "emul": score(ref, im.run_logits(path, data["report"], emulate=True), lab)}
        row["emul"]["drop_pts"] = round(entry["fp32_top1_pct"] - row["emul"]["top1_pct"], 1)
        if bits == 7 or args.int8_for_8bit:
            row["int8"] = score(ref, im.run_logits(path, data["report"]), lab)
            row["int8"]["drop_pts"] = round(entry["fp32_top1_pct"] - row["int8"]["top1_pct"], 1)
        row["p50_ms_int8_kernels"] = round(im.p50_ms(path, data["report"]), 2)
        return row

    def record(label: str, row: dict) -> None:
        entry["variants"][label] = row
        save()
        print(name, label, json.dumps(row), flush=True)

    wanted = [w.strip() for w in args.variants.split(",")] if args.variants else None
    for bits in args.bits:
        label = f"baseline ORT minmax, {bits}-bit"
        if label not in entry["variants"] and (not wanted or "baseline" in wanted):
            path = out / f"{name}-ort{bits}.onnx"
            t = time.perf_counter()
            quantize_onnx_int8(fp32, path, data["calib"], reduce_range=bits == 7)
            float_logits(path)
            seconds = round(time.perf_counter() - t, 1)
            record(label, {**evaluate(path, bits), "quantize_s": seconds})
        for variant, recipe in VARIANTS.items():
            label = f"{variant}, {bits}-bit"
            if wanted and variant not in wanted:
                continue
            if label in entry["variants"] and "error" not in entry["variants"][label]:
                continue
            tag = variant.replace(" + ", "-").replace(" ", "").lower()
            qdq = out / f"{name}-{tag}{bits}.onnx"
            spec = {"label": f"{name} {label}", "out": str(out), "fp32": str(prep), "calib": str(out / f"{name}-calib.npy"),
                    "qdq": str(qdq), "cle_fp32": str(out / f"{name}-cle-fp32.onnx"), "bits": bits, "batch": args.batch,
                    "cle": recipe["cle"], "steps": recipe["steps"], "opt_images": args.opt_images,
                    "adaround_iterations": args.adaround_iterations, "seqmse_candidates": args.seqmse_candidates}
            t = time.perf_counter()
            log = out / f"{name}-{tag}{bits}.log"
            made = Path(str(qdq) + ".json")
            if made.exists() and not args.redo:  # a worker run that finished before (its wall time is in it)
                info = json.loads(made.read_text())
                wall = info["timings"]["total_s"]
            else:
                info, wall = None, None
            if info is None:
                with open(log, "w") as stderr:
                    done = subprocess.run([args.aimet_python, __file__, "--worker", json.dumps(spec)], stdout=subprocess.PIPE,
                                          stderr=stderr, text=True, env={**os.environ, "PYTHONPATH": str(im.ROOT)})
                wall = round(time.perf_counter() - t, 1)
                if done.returncode:
                    tail = [line for line in log.read_text().strip().splitlines() if line.strip()][-3:]
                    record(label, {"weight_bits": bits, "error": " | ".join(tail)[-600:], "wall_s": wall})
                    continue
                info = json.loads(done.stdout.strip().splitlines()[-1])
            float_logits(qdq)
            row = {**evaluate(qdq, bits), "quantize_wall_s": wall, **info}
            if recipe["cle"]:
                cle_logits = im.run_logits(out / f"{name}-cle-fp32.onnx", data["report"])
                row["cle"]["fp32_after_cle_vs_fp32"] = score(ref, cle_logits, lab)
            if bits == 8 and recipe["steps"] and not recipe["cle"]:
                # snap once, serve every runtime: AIMET's codes as float weights, re-quantized by our ORT path
                snapped = out / f"{name}-{tag}{bits}-snapped-fp32.onnx"
                requant = out / f"{name}-{tag}{bits}-snapped-ort.onnx"
                replaced = write_snapped_fp32(prep, qdq, snapped)
                quantize_onnx_int8(snapped, requant, data["calib"], reduce_range=False)
                float_logits(requant)
                row["snap_to_ort"] = {"weights_replaced": replaced, **compare_codes(qdq, requant),
                                      "requantized_by_ort": evaluate(requant, bits)}
            record(label, row)


def markdown(results: dict) -> str:
    lines = []
    for name in im.MODELS:
        if name not in results:
            continue
        entry = results[name]
        lines += [f"### {name} (input {entry['input']}; fp32 top-1 {entry['fp32_top1_pct']:.0f} % on the report photos, "
                  f"fp32 p50 {entry['fp32_p50_ms']} ms)", "",
                  "| variant | w bits | agree emul | top-1 emul | drop emul | agree int8 | top-1 int8 | drop int8 "
                  "| p50 ms (int8 kernels) | quantization wall s |", "|---|---|---|---|---|---|---|---|---|---|"]
        for label, row in entry["variants"].items():
            if "error" in row:
                lines.append(f"| {label} | {row['weight_bits']} | error: {row['error'][:160]} |||||||")
                continue
            e, i = row["emul"], row.get("int8")
            wall = row.get("quantize_wall_s", row.get("quantize_s"))
            int8 = (f"{i['agreement_pct']:.0f} % | {i['top1_pct']:.0f} % | {i['drop_pts']:+.0f}" if i else "– | – | –")
            lines.append(f"| {label} | {row['weight_bits']} | {e['agreement_pct']:.0f} % | {e['top1_pct']:.0f} % | "
                         f"{e['drop_pts']:+.0f} | {int8} | {row['p50_ms_int8_kernels']} | {wall} |")
            snap = row.get("snap_to_ort")
            if snap:
                r = snap["requantized_by_ort"]["emul"]
                lines.append(f"| ↳ its weights snapped, re-quantized by quantize_onnx_int8 | 8 | {r['agreement_pct']:.0f} % | "
                             f"{r['top1_pct']:.0f} % | {r['drop_pts']:+.0f} | – | – | – | "
                             f"{snap['requantized_by_ort']['p50_ms_int8_kernels']} | codes equal {snap['codes_equal_pct']} % |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lite1,lite2")
    parser.add_argument("--bits", default="8,7", type=lambda s: [int(b) for b in s.split(",")])
    parser.add_argument("--variants", default=None, help="comma-separated variant names (or 'baseline') to run")
    parser.add_argument("--out", default="/work/aimet-out")
    parser.add_argument("--aimet-python", default="/work/aimet-venv/bin/python")
    parser.add_argument("--batch", type=int, default=10, help="images per batch fed to AIMET")
    parser.add_argument("--opt-images", type=int, default=10, help="calibration images AdaRound/SeqMSE optimise on")
    parser.add_argument("--adaround-iterations", type=int, default=50)
    parser.add_argument("--seqmse-candidates", type=int, default=20)
    parser.add_argument("--redo", action="store_true", help="re-run AIMET workers whose output already exists")
    parser.add_argument("--int8-for-8bit", action="store_true", help="also score 8-bit weights on ORT's int8 kernels")
    parser.add_argument("--json", default="benchmarks/int8_aimet.json")
    parser.add_argument("--md-table", action="store_true", help="only print the markdown table of --json")
    args = parser.parse_args()
    json_path = Path(args.json)
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    if args.md_table:
        print(markdown(results))
        return
    Path(args.out).mkdir(parents=True, exist_ok=True)
    results["cpu"] = im.cpu_line()
    results["split"] = {**im.SPLIT, "seed": im.SEED, "scored_on": "report"}
    results.setdefault("runs", []).append({"argv": sys.argv[1:], "loadavg_start": os.getloadavg()})

    def save():
        json_path.write_text(json.dumps(results, indent=1))

    logging.getLogger("onnxruntime.quantization").setLevel(logging.ERROR)
    for name in args.models.split(","):
        run_model(name, args, results, save)
    results["runs"][-1]["loadavg_end"] = os.getloadavg()
    save()
    print(markdown(results))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(json.loads(sys.argv[2]))
    else:
        main()
