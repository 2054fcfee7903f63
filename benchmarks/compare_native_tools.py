"""Does `edgecnn bench` agree with the runtimes' own benchmark tools?

On the same file, threads and batch, in one run, this compares edgecnn's p50 with

* OpenVINO's `benchmark_app` (openvino wheel) median, `-hint latency`, on an OpenVINO IR, with the
  thread count and inference precision edgecnn applied (benchmark_app refuses `-nthreads` next to
  `-hint latency`, so they go in through `-load_config`);
* `litert-benchmark` (ai-edge-litert wheel) median, `--num_threads`, on a `.tflite`.

The model is MobileNet v2 at 224x224 with random weights (latency does not depend on them):
torch -> ONNX -> OpenVINO IR (fp32, uncompressed), and torch -> litert-torch -> .tflite. The
artifacts are cached in --workdir. Tools run alternately for --rounds rounds so that a noisy
neighbour hits both sides alike; the verdict uses the median over rounds. Run it on a quiet machine:

    python benchmarks/compare_native_tools.py --threads 2 --seconds 10 --rounds 3

Exit status 1 when a pair differs by more than --tolerance percent.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgecnn.bench import BenchSettings, BenchTarget, artifact_size_bytes, environment, measure_in_child  # noqa: E402
from edgecnn.runtimes.base import physical_cores  # noqa: E402


def build_artifacts(workdir: Path, size: int) -> tuple[Path, Path]:
    """MobileNet v2 as an fp32 OpenVINO IR and a .tflite (cached)."""
    xml = workdir / f"mobilenet_v2_{size}.xml"
    tflite = workdir / f"mobilenet_v2_{size}.tflite"
    if xml.is_file() and xml.with_suffix(".bin").is_file() and tflite.is_file():
        return xml, tflite
    import torch
    import torchvision

    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(weights=None).eval()
    sample = torch.randn(1, 3, size, size)
    onnx_path = workdir / f"mobilenet_v2_{size}.onnx"
    torch.onnx.export(
        model, (sample,), str(onnx_path), dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    import litert_torch

    litert_torch.convert(model, (sample,)).export(str(tflite))
    return xml, tflite


def edgecnn_p50(path: Path, runtime: str, threads: int, batch: int, seconds: float, warmup: int,
                **options) -> dict:
    target = BenchTarget(name=path.name, path=path, runtime=runtime, precision="fp32",
                         size_bytes=artifact_size_bytes(path), options={"precision": "fp32", **options})
    settings = BenchSettings(threads=threads, batches=(batch,), warmup=warmup, min_time_s=seconds)
    result = measure_in_child(target, batch, settings)
    return {"p50_ms": result["latency_ms"]["p50"], "iterations": result["iterations"],
            "applied": result["applied"]}


def benchmark_app_median(xml: Path, threads: int, batch: int, seconds: float, precision: str,
                         workdir: Path) -> dict:
    exe = shutil.which("benchmark_app")
    if exe is None:
        raise SystemExit("benchmark_app not found: pip install openvino")
    config = workdir / f"benchmark_app_{threads}t_{precision}.json"
    config.write_text(json.dumps({"CPU": {"INFERENCE_NUM_THREADS": str(threads),
                                          "INFERENCE_PRECISION_HINT": precision}}))
    command = [exe, "-m", str(xml), "-d", "CPU", "-hint", "latency", "-api", "sync",
               "-load_config", str(config), "-shape", f"[{batch},3,{_hw(xml)}]", "-t", f"{seconds:g}"]
    out = subprocess.run(command, capture_output=True, text=True)
    text = out.stdout + out.stderr
    median = re.search(r"Median:\s+([0-9.]+)\s*ms", text)
    if out.returncode != 0 or median is None:
        raise SystemExit(f"benchmark_app failed ({out.returncode}):\n{text[-2000:]}")
    reported = dict(re.findall(r"\[ INFO \]\s+(INFERENCE_NUM_THREADS|INFERENCE_PRECISION_HINT|"
                               r"PERFORMANCE_HINT|NUM_STREAMS):\s+(.+)", text))
    count = re.search(r"Count:\s+(\d+)", text)
    return {"median_ms": float(median.group(1)), "iterations": int(count.group(1)) if count else None,
            "reported": reported, "command": " ".join(command)}


def litert_median(tflite: Path, threads: int, runs: int, warmup: int, workdir: Path) -> dict:
    exe = shutil.which("litert-benchmark")
    command = [exe] if exe else [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model"]
    result_json = workdir / "litert_benchmark.json"
    command += ["--model", str(tflite), "--num_threads", str(threads), "--num_runs", str(runs),
                "--warmup_runs", str(warmup), "--result_json", str(result_json)]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0 or not result_json.is_file():
        raise SystemExit(f"litert-benchmark failed ({out.returncode}):\n{(out.stdout + out.stderr)[-2000:]}")
    data = json.loads(result_json.read_text())
    result_json.unlink()
    return {"median_ms": float(data["latency"]["median_ms"]), "iterations": data["latency"]["num_runs"],
            "reported": {"num_threads": data.get("num_threads"), "accelerators": data.get("accelerators")},
            "command": " ".join(command)}


def _hw(xml: Path) -> str:
    size = re.search(r"_(\d+)\.xml$", xml.name)
    side = size.group(1) if size else "224"
    return f"{side},{side}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--batch", type=int, default=1, help="OpenVINO batch (the .tflite runs its own, 1)")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per tool per round")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--tolerance", type=float, default=10.0, help="percent")
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "edgecnn-native-compare")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args()

    xml, tflite = build_artifacts(args.workdir, args.size)
    env = environment()
    print(f"{env['cpu_model']}, {env['physical_cores']} physical cores, threads={args.threads}, "
          f"batch={args.batch}, load average {os.getloadavg()[0]:.2f}")

    rounds: list[dict] = []
    for index in range(args.rounds):
        # Each pair runs back to back, edgecnn first in even rounds and second in odd ones, so a
        # noisy neighbour hits both sides alike. litert-benchmark takes a run count, not a time:
        # it gets the count edgecnn's timed runs reached in the same round (or the last one).
        tflite_runs = rounds[-1]["tflite_edgecnn"]["iterations"] if rounds else None
        row: dict = {}
        steps = {
            "openvino_edgecnn": lambda: edgecnn_p50(xml, "openvino", args.threads, args.batch,
                                                    args.seconds, args.warmup),
            "openvino_native": lambda: benchmark_app_median(xml, args.threads, args.batch, args.seconds,
                                                            "f32", args.workdir),
            "tflite_edgecnn": lambda: edgecnn_p50(tflite, "tflite", args.threads, 1, args.seconds, args.warmup),
            "tflite_compiled_edgecnn": lambda: edgecnn_p50(tflite, "tflite", args.threads, 1, args.seconds,
                                                           args.warmup, api="compiled_model"),
            "tflite_native": lambda: litert_median(
                tflite, args.threads,
                tflite_runs or row.get("tflite_edgecnn", {}).get("iterations") or 200,
                args.warmup, args.workdir),
        }
        order = list(steps) if index % 2 == 0 else [
            "openvino_native", "openvino_edgecnn", "tflite_native", "tflite_compiled_edgecnn", "tflite_edgecnn"]
        for name in order:
            row[name] = steps[name]()
        row["loadavg"] = os.getloadavg()[0]
        rounds.append(row)
        print(
            f"round {index + 1}: OpenVINO edgecnn p50 {row['openvino_edgecnn']['p50_ms']:.2f} ms vs "
            f"benchmark_app median {row['openvino_native']['median_ms']:.2f} ms | TFLite edgecnn p50 "
            f"{row['tflite_edgecnn']['p50_ms']:.2f} ms (CompiledModel {row['tflite_compiled_edgecnn']['p50_ms']:.2f} ms)"
            " vs litert-benchmark median "
            f"{row['tflite_native']['median_ms']:.2f} ms | load {row['loadavg']:.2f}",
            flush=True,
        )

    failed = False
    summary = {}
    print()
    print(f"{'runtime':<16} {'edgecnn p50':>12} {'native median':>14} {'diff':>8}  native tool")
    pairs = (
        ("openvino", "benchmark_app -hint latency"),
        ("tflite", "litert-benchmark (edgecnn default: Interpreter API)"),
        ("tflite_compiled", "litert-benchmark (edgecnn api=compiled_model, the tool's own API)"),
    )
    for key, tool in pairs:
        ours = statistics.median(r[f"{key}_edgecnn"]["p50_ms"] for r in rounds)
        native_key = key.split("_")[0] + "_native"
        theirs = statistics.median(r[native_key]["median_ms"] for r in rounds)
        diff = (ours - theirs) / theirs * 100.0
        ok = abs(diff) <= args.tolerance
        failed |= not ok
        summary[key] = {"edgecnn_p50_ms": ours, "native_median_ms": theirs, "diff_percent": diff,
                        "within_tolerance": ok, "tool": tool}
        print(f"{key:<16} {ours:>10.2f}ms {theirs:>12.2f}ms {diff:>+7.1f}%  {tool}"
              f"{'' if ok else f'  (outside {args.tolerance:g} %)'}")
    print(f"applied by edgecnn: openvino {rounds[0]['openvino_edgecnn']['applied']}")
    print(f"reported by benchmark_app: {rounds[0]['openvino_native']['reported']}")
    print(f"applied by edgecnn: tflite {rounds[0]['tflite_edgecnn']['applied']}")

    if args.json:
        args.json.write_text(json.dumps({
            "environment": env, "threads": args.threads, "batch": args.batch, "seconds": args.seconds,
            "rounds": rounds, "summary": summary, "tolerance_percent": args.tolerance,
            "files": {"openvino": str(xml), "tflite": str(tflite)},
        }, indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
