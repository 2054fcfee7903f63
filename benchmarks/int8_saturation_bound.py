"""8-bit weights wherever x86's int16 pair sums cannot saturate, 7-bit elsewhere: per output channel (issue 22).

On x86 with AVX2 but no VNNI, ONNX Runtime's u8*s8 GEMM adds two adjacent products (activation code a in 0..255
times weight code w in -127..127) in int16 before widening (vpmaddubsw), so a pair of same-sign products above
32767 saturates. edgecnn's `onnx` profile for such CPUs therefore quantizes every weight to 7 bits (|w| <= 64),
which costs accuracy in exact arithmetic (Lite1 97 %, Lite2 98 % agreement against 99 % at 8 bits).

But a pair can only saturate where both activations reach high codes *and* both weights are large with the same
sign. Activation scales are per tensor, so most channels never come near code 255; weight scales are per
output channel. This method bounds, for every output channel of every conv, the largest pair sum its 8-bit codes
can make with the largest activation code each input channel reached on the calibration photos (times a
margin), and gives that channel 8-bit codes where the bound is below 32767, 7-bit codes where not. It starts
from ONNX Runtime's own 7-bit QDQ graph and changes only weight codes and scales (and the int32 bias scale).
The method is edgecnn's (edgecnn/backends/onnxruntime/pair_bound.py); measured with and without its rule that
depthwise convs take 8 bits throughout (ORT's depthwise kernel accumulates in int32).

Pairs: a 1x1 conv's K dimension is its input channels, and both parities of adjacent channels are checked (the
kernel's packing pairs one of them); any other conv (the stem, depthwise) is bounded without adjacency: the
largest activation code of its group times the two largest |w| of the channel.

Scored on the report part of benchmarks/int8_methods.py's split (100/100/100, seed 0) in this host's int8
kernels (the arithmetic of an AVX2 device: does it hold?) and in the exact Q/DQ emulation (does it keep the
8-bit accuracy?), p50 side by side with fp32.

    PYTHONPATH=. nice -n 10 python benchmarks/int8_saturation_bound.py --out /tmp/wr [--models lite1,lite2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_methods import MODELS, cpu_line, export_fp32, load_parts, run_logits  # noqa: E402
from int8_weight_ranges import score_variants  # noqa: E402

from edgecnn.backends.onnxruntime.pair_bound import activation_code_max, widen_weights  # noqa: E402

def run_model(name: str, size: int, out: Path, results: dict, margins: list[float]) -> None:
    from edgecnn.backends.onnxruntime.int8 import float_logits
    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8

    data, labels, parts = load_parts(name, size, out)
    fp32 = export_fp32(name, size, out, data["calib"])
    base = out / f"{name}-minmax7.onnx"
    if not base.exists():
        quantize_onnx_int8(fp32, base, data["calib"], reduce_range=True)
        float_logits(base)
    ref, lab = run_logits(fp32, data["report"]), labels[parts["report"]]
    acts = activation_code_max(base, data["calib"])
    entry = results.setdefault(name, {"variants": {}})
    variants = {"minmax 7-bit (edgecnn today)": (base, {})}
    for margin in margins:
        for depthwise in (False, True):
            path = out / f"{name}-bound{margin:g}{'-dw' if depthwise else ''}.onnx"
            path.write_bytes(base.read_bytes())
            label = (f"8-bit where the pair bound allows (margin {margin:g})"
                     f"{', depthwise convs all 8-bit' if depthwise else ''}, else 7-bit")
            variants[label] = (path, {"margin": margin, **widen_weights(path, fp32, acts, margin=margin,
                                                                        depthwise_8bit=depthwise)})
    score_variants(name, variants, fp32, data["report"], ref, lab, entry)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", default="lite1,lite2")
    parser.add_argument("--margins", default="1,1.25")
    parser.add_argument("--json", type=Path, default=Path(__file__).with_name("int8_saturation_bound.json"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"cpu": cpu_line(), "split": "100 calibrate / 100 search / 100 report (seed 0)", "models": {}}
    for name in args.models.split(","):
        run_model(name, MODELS[name], args.out, results["models"], [float(m) for m in args.margins.split(",")])
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
