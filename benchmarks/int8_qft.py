"""INT8 distillation (edgecnn.quantize.distill) measured alone on EfficientNet-Lite1/Lite2 (issue 22).

For each model and arithmetic (`ort`: uint8 asymmetric activations, as ONNX Runtime's default; `trt`: int8
symmetric, as TensorRT's Q/DQ), both with 8-bit per-channel weights: the fp32 model is quantized by edgecnn's
`quantize_onnx_int8` (minmax calibration) as it is (baseline) and after `distilled_copy` tuned its weights on the
calibration photos; each file is scored against the *original* fp32 ONNX in exact Q/DQ arithmetic (ONNX Runtime,
graph optimizations off: the arithmetic of TensorRT and of a VNNI CPU).

Photos: the seeded split of int8_methods.py (100 calibration / 100 search / 100 report). One photo is one point
there, so each file is also scored on ten views of each of the 200 search and report photos (4 corners + centre
at the model's preprocessing scale, and their mirrors: 2,000 inputs, labels not needed for agreement), with the
mean KL divergence of the softmax and the mean squared logit error against fp32.

    PYTHONPATH=.:benchmarks python benchmarks/int8_qft.py --models lite1,lite2 --out /tmp/qft --json benchmarks/int8_qft.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from int8_methods import MEAN, MODELS, STD, cpu_line, export_fp32, load_parts, photo_paths, run_logits, score, \
    split_indices, torch_model


def main() -> None:
    from edgecnn.backends.onnxruntime.int8 import float_logits
    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8
    from edgecnn.export.onnx import export_onnx
    from edgecnn.quantize.distill import MAX_STEPS, WEIGHT_RATE, Grid, distilled_copy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lite1,lite2")
    parser.add_argument("--schemes", default="ort,trt")
    parser.add_argument("--steps", type=int, default=MAX_STEPS)
    parser.add_argument("--weight-rate", type=float, default=WEIGHT_RATE)
    parser.add_argument("--out", default="/tmp/qft")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"cpu": cpu_line(), "torch_threads": torch.get_num_threads(), "args": vars(args), "rows": []}
    if args.json and Path(args.json).exists():
        results["rows"] = json.loads(Path(args.json).read_text()).get("rows", [])
    for name in args.models.split(","):
        size = MODELS[name]
        data, labels, parts = load_parts(name, size, out)
        fp32 = export_fp32(name, size, out, data["calib"])
        ref = {p: run_logits(fp32, data[p]) for p in ("search", "report")}
        views_path = out / f"{name}-views.npy"
        if not views_path.exists():
            np.save(views_path, np.concatenate([ten_crops("search", size), ten_crops("report", size)]))
        views = np.load(views_path)
        ref_views = run_logits(fp32, views)
        for scheme in args.schemes.split(","):
            grid = Grid("symmetric" if scheme == "trt" else "asymmetric", 127)
            tag = f"{name}-{scheme}-s{args.steps}-r{args.weight_rate:g}"
            tuned_onnx = out / f"{tag}-fp32.onnx"
            row = {"model": name, "scheme": scheme, "grid": grid.words()}
            started = time.perf_counter()
            tuned, row["distill"] = distilled_copy(torch_model(name), data["calib"], grid, seconds=1e9,
                                                   max_steps=args.steps, weight_rate=args.weight_rate,
                                                   stage=lambda msg: print(msg, flush=True))
            export_onnx(tuned, (3, size, size), tuned_onnx, opset=17, sample=data["calib"][:2])
            row["distill_wall_s"] = round(time.perf_counter() - started, 1)
            for variant, source in (("baseline", fp32), ("distilled", tuned_onnx), ("distilled fp32", None)):
                if source is None:  # the tuned model itself in float: how far the tuning moved it
                    qdq = tuned_onnx
                else:
                    qdq = out / (f"{name}-{scheme}-baseline.onnx" if variant == "baseline" else f"{tag}-int8.onnx")
                    if not qdq.exists() or variant != "baseline":
                        quantize_onnx_int8(source, qdq, data["calib"], symmetric=grid.activations == "symmetric",
                                           reduce_range=False)
                        float_logits(qdq)
                row[variant] = {part: score(ref[part], run_logits(qdq, data[part], emulate=True), labels[parts[part]])
                                for part in ("search", "report")}
                row[variant]["views"] = fine_score(ref_views, run_logits(qdq, views, emulate=True))
            print(json.dumps(row), flush=True)
            results["rows"].append(row)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=2))


def ten_crops(part: str, size: int) -> np.ndarray:
    """Ten views of each photo of a part (4 corners + centre, and their mirrors) at the model's preprocessing
    scale: label-free agreement with fp32 on 10x the inputs, so 1 view is 0.1 point instead of 1."""
    from PIL import Image

    paths, _ = photo_paths()
    idx = split_indices(len(paths))[part]
    shorter = int(round(size / 0.875))
    views = []
    for i in idx:
        with Image.open(paths[i]) as image:
            image = image.convert("RGB")
            w, h = image.size
            scale = shorter / min(w, h)
            image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
            arr = ((np.asarray(image, np.float32).transpose(2, 0, 1) / 255 - MEAN) / STD).astype(np.float32)
        H, W = arr.shape[1:]
        for y, x in ((0, 0), (0, W - size), (H - size, 0), (H - size, W - size), ((H - size) // 2, (W - size) // 2)):
            crop = arr[:, y:y + size, x:x + size]
            views += [crop, crop[:, :, ::-1]]
    return np.ascontiguousarray(np.stack(views))


def fine_score(ref: np.ndarray, got: np.ndarray) -> dict:
    """Agreement and the mean KL(fp32 || int8) of the softmax, and the mean squared logit error."""
    p = ref - ref.max(1, keepdims=True)
    p = np.exp(p) / np.exp(p).sum(1, keepdims=True)
    lq = got - got.max(1, keepdims=True)
    lq = lq - np.log(np.exp(lq).sum(1, keepdims=True))
    lp = np.log(np.clip(p, 1e-30, None))
    return {"views": len(ref), "agreement": round(float(np.mean(ref.argmax(1) == got.argmax(1))), 4),
            "kl": float(np.mean((p * (lp - lq)).sum(1))), "logit_mse": float(np.mean((ref - got) ** 2))}


if __name__ == "__main__":
    main()
