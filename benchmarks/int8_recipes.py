"""INT8 recipes measured one by one on a real model: what export's recipe order is based on.

Give it an fp32 bundle exported with a golden set (`--target x86` for the OpenVINO/NNCF recipes, `--target
onnx` for ONNX Runtime's and NNCF's ONNX backend) and a folder of other photos to calibrate on. Each recipe
is quantized from the bundle's fp32 file and scored against the bundle's golden PyTorch logits (agreement,
top-1, drop), and timed at batch 1 against the fp32 file in this process (interleaved rounds, median of
per-round medians, each round >= 1 s after 3 warm-up runs).

    python benchmarks/int8_recipes.py --bundle dist/lite1-x86 --calib CALIB_PHOTOS
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def calibration(folder: Path, spec, limit: int) -> np.ndarray:
    """The photos preprocessed as the bundle's golden set was (resize shorter side, centre crop, normalise)."""
    from PIL import Image

    from edgecnn.data.photos import center_crop

    mean, std = np.array(spec.mean)[:, None, None], np.array(spec.std)[:, None, None]
    images = []
    for path in sorted(p for p in folder.glob("*/*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))[:limit]:
        with Image.open(path) as image:
            pixels = center_crop(image, size=spec.size, shorter=spec.resize_shorter, channels=spec.channels,
                                 resize=spec.resize)
        images.append(((pixels.astype(np.float32).transpose(2, 0, 1) / 255 - mean) / std).astype(np.float32))
    return np.stack(images)


def openvino_recipes(fp32: Path, calib: np.ndarray, out: Path) -> dict:
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedSmoothQuantParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    from edgecnn.backends.openvino.quantize import quantize_openvino_int8

    def nncf_ir(name, **options):
        return lambda: quantize_openvino_int8(fp32, out / f"{name}.xml", calib, **options).xml_path

    return {
        "NNCF performance, 7-bit weights": nncf_ir("perf7", preset="performance", reduce_range=True),
        "NNCF performance, 8-bit weights": nncf_ir("perf8", preset="performance", reduce_range=False),
        "NNCF mixed, 7-bit weights": nncf_ir("mixed7", preset="mixed", reduce_range=True),
        "NNCF performance + SmoothQuant on convs (0.5)": nncf_ir(
            "sq7", reduce_range=True, advanced={"smooth_quant_alphas": AdvancedSmoothQuantParameters(convolution=0.5)}),
        "NNCF performance + outlier-robust ranges": nncf_ir(
            "robust7", reduce_range=True,
            advanced={"activations_range_estimator_params": RangeEstimatorParametersSet.MEAN_NO_OUTLIERS_MINMAX}),
        "NNCF performance + channel alignment": nncf_ir(
            "ca7", reduce_range=True, advanced={"disable_channel_alignment": False}),
        "_nncf": nncf,
    }


def onnx_recipes(fp32: Path, calib: np.ndarray, out: Path) -> dict:
    import nncf
    import onnx

    from edgecnn.backends.onnxruntime.int8 import float_logits as _float_logits
    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8

    def ort(name, **options):
        def write():
            path = quantize_onnx_int8(fp32, out / f"{name}.onnx", calib, **options).path
            _float_logits(path)
            return path
        return write

    def nncf_onnx(name, preset):
        def write():
            model = onnx.load(str(fp32))
            input_name = model.graph.input[0].name
            dataset = nncf.Dataset(range(len(calib)), lambda i: {input_name: calib[i:i + 1]})
            quantized = nncf.quantize(model, dataset, preset=getattr(nncf.QuantizationPreset, preset.upper()),
                                      subset_size=len(calib), fast_bias_correction=False,
                                      advanced_parameters=nncf.AdvancedQuantizationParameters(
                                          overflow_fix=nncf.OverflowFix.ENABLE))
            path = out / f"{name}.onnx"
            onnx.save(quantized, str(path))
            _float_logits(path)
            return path
        return write

    return {
        "ORT minmax, 7-bit weights": ort("minmax7", method="minmax", reduce_range=True),
        "ORT percentile, 7-bit weights": ort("pct7", method="percentile", reduce_range=True),
        "ORT minmax, 8-bit weights": ort("minmax8", method="minmax", reduce_range=False),
        "NNCF ONNX backend, performance, full bias correction": nncf_onnx("nncf_perf", "performance"),
        "NNCF ONNX backend, mixed, full bias correction": nncf_onnx("nncf_mixed", "mixed"),
    }


def p50s(runtime: str, paths: list[Path], shape: list[int], rounds: int = 3) -> list[float]:
    from edgecnn.bench.measure import time_invokes
    from edgecnn.inference import load_runner

    runners = [load_runner(runtime, p, threads=None, batch=1, options={"input_shape": shape})[0] for p in paths]
    sample = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
    medians: list[list[float]] = [[] for _ in paths]
    for _ in range(rounds):
        for index, runner in enumerate(runners):
            for _ in range(3):
                runner.run(sample)
            times = time_invokes(lambda: runner.run(sample), iters=None, min_time_ns=int(1e9), min_iters=10)
            medians[index].append(float(np.median(times)) / 1e6)
    for runner in runners:
        runner.close()
    return [float(np.median(m)) for m in medians]


def main() -> None:
    from edgecnn.bundle import load_bundle
    from edgecnn.inference import run_logits
    from edgecnn.quantize.gate import Gate, score

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--calib", required=True, help="imagefolder of calibration photos (not the golden set)")
    parser.add_argument("--calib-size", type=int, default=150)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    bundle = load_bundle(args.bundle)
    golden = bundle.load_golden()
    calib = calibration(Path(args.calib), bundle.preprocess, args.calib_size)
    entry = next(a for a in bundle.artifacts if a.precision == "fp32")
    fp32 = bundle.artifact_path(entry)
    out = Path(args.out or Path(args.bundle) / "recipes")
    out.mkdir(parents=True, exist_ok=True)
    recipes = (openvino_recipes if entry.runtime == "openvino" else onnx_recipes)(fp32, calib, out)
    recipes.pop("_nncf", None)
    shape = list(golden["inputs"].shape[1:])
    rows, paths = [], []
    for label, write in recipes.items():
        started = time.perf_counter()
        try:
            path = write()
        except Exception as exc:  # a library's own failure is a result too
            rows.append({"recipe": label, "error": f"{type(exc).__name__}: {str(exc)[:120]}"})
            continue
        seconds = time.perf_counter() - started
        logits, _ = run_logits(entry.runtime, path, golden["inputs"], threads=None, batch=1,
                               options={"input_shape": shape, "precision": "int8"})
        result = score(Gate.for_int8(), golden["logits"], logits, golden["labels"])
        rows.append({"recipe": label, "agreement": round(result.agreement, 4), "top1": round(result.top1, 2),
                     "drop": round(result.drop, 2), "quantize_s": round(seconds, 1)})
        paths.append((len(rows) - 1, path))
    timings = p50s(entry.runtime, [fp32] + [p for _, p in paths], shape)
    for (index, _), p50 in zip(paths, timings[1:]):
        rows[index]["p50_ms"] = round(p50, 2)
    print(json.dumps({"bundle": args.bundle, "runtime": entry.runtime, "fp32_p50_ms": round(timings[0], 2),
                      "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
