"""INT8 vs fp32 latency of one model in ONNX Runtime and OpenVINO on this CPU.

    python benchmarks/int8_speed.py                  # MobileNet v2, 224x224, batch 1, 2 threads
    python benchmarks/int8_speed.py --variants       # also the ORT INT8 schemes not chosen
    python benchmarks/int8_speed.py --json out.json

Random weights (speed only); calibration on upsampled scikit-learn digits. Every artifact is
timed in interleaved rounds (A B C ... A B C ...), so load from other processes on a shared
machine hits all of them alike; medians over all rounds are reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgecnn.backends import get_runner  # noqa: E402
from edgecnn.export.onnx import export_onnx  # noqa: E402
from edgecnn.backends.openvino.convert import export_openvino  # noqa: E402
from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8  # noqa: E402
from edgecnn.backends.openvino.quantize import quantize_openvino_int8  # noqa: E402


def digits_images(count: int, size: int) -> np.ndarray:
    import torch
    from sklearn.datasets import load_digits

    images = torch.from_numpy(load_digits().images[:count].astype(np.float32) / 16.0)[:, None]
    images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return ((images.repeat(1, 3, 1, 1) - mean) / std).numpy()


def ort_runner(path: Path, threads: int):
    runner = get_runner("onnxruntime").load(path, threads=threads, batch=1)
    return runner.run


def ov_runner(path: Path, threads: int, precision: str | None):
    # precision None: the plugin's own default (bf16 on AMX/AVX-512-bf16 CPUs)
    runner = get_runner("openvino").load(path, threads=threads, batch=1, inference_precision=precision or "auto")
    return runner.run


def time_interleaved(runners: dict, x: np.ndarray, warmup: int, iters: int, rounds: int) -> dict:
    for run in runners.values():
        for _ in range(warmup):
            run(x)
    samples: dict[str, list[int]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            # Let the previous runtime's spinning worker threads go to sleep, then re-warm this
            # one: otherwise on 2 cores each artifact is timed against its predecessor's spinners.
            time.sleep(0.2)
            for _ in range(3):
                run(x)
            for _ in range(iters):
                start = time.perf_counter_ns()
                run(x)
                samples[name].append(time.perf_counter_ns() - start)
    stats = {}
    for name, values in samples.items():
        ms = np.asarray(values) / 1e6
        stats[name] = {
            "p50": float(np.median(ms)),
            "p90": float(np.percentile(ms, 90)),
            "min": float(ms.min()),
            "runs": int(ms.size),
        }
    return stats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calib", type=int, default=32, help="calibration images")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=20, help="runs per artifact per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--variants", action="store_true", help="also time other ORT INT8 schemes")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(args.model, weights=None, num_classes=1000).eval()
    shape = (3, args.size, args.size)
    calibration = digits_images(args.calib, args.size)
    x = calibration[:1].copy()
    build: dict[str, float] = {}

    with tempfile.TemporaryDirectory(prefix="edgecnn-bench-") as workdir:
        work = Path(workdir)
        started = time.perf_counter()
        exported = export_onnx(model, shape, work / "model.onnx")
        build["onnx_export_s"] = time.perf_counter() - started

        ort_int8 = {"ort int8 (default: U8 act, S8 per-ch weights)": {}}
        if args.variants:
            ort_int8.update(
                {
                    "ort int8 S8 act": {"activation_type": "QInt8"},
                    "ort int8 U8 act, U8 weights": {"weight_type": "QUInt8"},
                    "ort int8 reduce_range": {"reduce_range": True},
                    "ort int8 per-tensor weights": {"per_channel": False},
                    "ort int8 symmetric (TensorRT)": {"symmetric": True},
                }
            )
        runners = {"ort fp32": ort_runner(exported.path, args.threads)}
        for index, (label, options) in enumerate(ort_int8.items()):
            started = time.perf_counter()
            quantized = quantize_onnx_int8(
                exported.path, work / f"model.int8.{index}.onnx", calibration, **options
            )
            build[f"{label} quantize_s"] = time.perf_counter() - started
            runners[label] = ort_runner(quantized.path, args.threads)

        started = time.perf_counter()
        ir = export_openvino(exported.path, work / "ov" / "model.xml")
        build["openvino_convert_s"] = time.perf_counter() - started
        started = time.perf_counter()
        ir_int8 = quantize_openvino_int8(exported.path, work / "ov" / "model.int8.xml", calibration)
        build["nncf_quantize_s"] = time.perf_counter() - started
        runners["openvino fp32 (f32 hint)"] = ov_runner(ir.xml_path, args.threads, "f32")
        runners["openvino int8 (NNCF)"] = ov_runner(ir_int8.xml_path, args.threads, None)
        if args.variants:
            runners["openvino fp32 (default hint: bf16)"] = ov_runner(ir.xml_path, args.threads, None)

        stats = time_interleaved(runners, x, args.warmup, args.iters, args.rounds)

    print(
        f"{args.model} {args.size}x{args.size}, batch 1, {args.threads} threads, "
        f"{args.rounds}x{args.iters} runs each (interleaved), calibration {args.calib} images"
    )
    width = max(len(name) for name in stats)
    print(f"{'artifact':<{width}}  {'p50 ms':>7}  {'p90 ms':>7}  {'min ms':>7}")
    for name, row in stats.items():
        print(f"{name:<{width}}  {row['p50']:7.2f}  {row['p90']:7.2f}  {row['min']:7.2f}")
    ort_fp32 = stats["ort fp32"]["p50"]
    ort_q = stats["ort int8 (default: U8 act, S8 per-ch weights)"]["p50"]
    ov_fp32 = stats["openvino fp32 (f32 hint)"]["p50"]
    ov_q = stats["openvino int8 (NNCF)"]["p50"]
    print(f"speed-up int8/fp32: onnxruntime {ort_fp32 / ort_q:.2f}x, openvino {ov_fp32 / ov_q:.2f}x")
    print(f"node counts (onnx, before -> after slim): {exported.node_count_before} -> {exported.node_count_after}")
    if args.json:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "latency_ms": stats,
                        "build_s": build}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
