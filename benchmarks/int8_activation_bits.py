"""Which 7-bit trade keeps int8 exact on x86 without VNNI: 7-bit weights (today's `onnx`/`x86` default) or
7-bit activations with 8-bit weights?

On AVX2 without VNNI, ONNX Runtime's u8*s8 kernels add pairs of products in int16 (vpmaddubsw): 255*127*2
saturates. Either factor at 7 bits avoids it: u8 activations in 0..127 with s8 weights in -127..127 sum to at
most 32258, as do u8 activations in 0..255 with 7-bit weights (-64..63, 32640). This measures which loses
less on EfficientNet-Lite1/Lite2 (ImageNet weights, the photos of ../shared/imagenet-sample split as in
int8_methods.py: 100 calibrate, 100 search, 100 report): agreement with the fp32 ONNX and top-1 on the report
part, in this host's int8 kernels and in the exact emulation (ORT_DISABLE_ALL), and p50 at batch 1.

7-bit activations are made from ONNX Runtime's 8-bit QDQ graph: every uint8 activation scale is multiplied by
255/127 and its zero point scaled to 0..127, so QuantizeLinear emits 0..127 over the same calibrated range.

    PYTHONPATH=. python benchmarks/int8_activation_bits.py --out /tmp/actbits [--models lite1,lite2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_methods import (  # noqa: E402
    MODELS, cpu_line, export_fp32, p50_ms, photo_paths, preprocess, run_logits, split_indices,
)


def seven_bit_activations(qdq: Path, out: Path) -> int:
    """Rescale every uint8 activation Q/DQ pair of `qdq` to 0..127; returns how many were rescaled."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(qdq))
    inits = {init.name: init for init in model.graph.initializer}
    done = set()
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or len(node.input) < 3 or node.input[2] not in inits:
            continue
        scale_name, zp_name = node.input[1], node.input[2]
        zero = numpy_helper.to_array(inits[zp_name])
        if zero.dtype != np.uint8 or zp_name in done:
            continue
        scale = numpy_helper.to_array(inits[scale_name]).astype(np.float32)
        inits[scale_name].CopyFrom(numpy_helper.from_array((scale * 255.0 / 127.0).astype(np.float32), scale_name))
        new_zero = np.clip(np.round(zero.astype(np.float32) * 127.0 / 255.0), 0, 127).astype(np.uint8)
        inits[zp_name].CopyFrom(numpy_helper.from_array(new_zero, zp_name))
        done.add(zp_name)
    onnx.save(model, str(out))
    return len(done)


def scores(path: Path, images: np.ndarray, reference: np.ndarray, labels: np.ndarray, emulate: bool) -> dict:
    logits = run_logits(path, images, emulate=emulate)
    return {"agreement": round(float(np.mean(logits.argmax(1) == reference.argmax(1))), 4),
            "top1": round(float(np.mean(logits.argmax(1) == labels)) * 100, 2)}


def run_model(name: str, size: int, out: Path) -> dict:
    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8

    paths, labels = photo_paths()
    parts = split_indices(len(paths))
    images = {part: preprocess([paths[i] for i in idx], size) for part, idx in parts.items()}
    fp32 = export_fp32(name, size, out, images["calib"])
    report, report_labels = images["report"], labels[parts["report"]]
    reference = run_logits(fp32, report)
    variants = {}
    w7 = quantize_onnx_int8(fp32, out / f"{name}-w7a8.onnx", images["calib"], reduce_range=True).path
    w8 = quantize_onnx_int8(fp32, out / f"{name}-w8a8.onnx", images["calib"], reduce_range=False).path
    a7 = out / f"{name}-w8a7.onnx"
    rescaled = seven_bit_activations(w8, a7)
    for label, path in (("w7a8 (today)", w7), ("w8a7", a7), ("w8a8", w8)):
        variants[label] = {"kernels": scores(path, report, reference, report_labels, False),
                           "emulation": scores(path, report, reference, report_labels, True),
                           "p50_ms": round(p50_ms(path, report[:1]), 3)}
        print(name, label, json.dumps(variants[label]), flush=True)
    variants["fp32"] = {"top1": round(float(np.mean(reference.argmax(1) == report_labels)) * 100, 2),
                        "p50_ms": round(p50_ms(fp32, report[:1]), 3)}
    return {"rescaled_activation_pairs": rescaled, "variants": variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/int8-activation-bits")
    parser.add_argument("--models", default="lite1,lite2")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"cpu": cpu_line(), "models": {}}
    for name in args.models.split(","):
        results["models"][name] = run_model(name, MODELS[name], out)
    print(results["cpu"])
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
