"""Does `edgecnn bench` agree with the runtimes' own benchmark tools?

On the same file, threads and batch, in one run, this compares edgecnn's p50 with

* OpenVINO's `benchmark_app` (console script of the openvino wheel, else
  `python -m openvino.tools.benchmark.main`) median, `-hint latency -api sync`, on an OpenVINO IR.
  benchmark_app refuses `-nthreads` next to `-hint latency` (a UI rule of the tool), so the thread
  count and the inference precision edgecnn applies (f32) go in through `-load_config`;
* `litert-benchmark` (console script of the ai-edge-litert wheel:
  `ai_edge_litert.tools.benchmark_litert_model`, which times LiteRT's CompiledModel API; the wheel
  ships no C++ benchmark binary) median, `--num_threads`, on a `.tflite`. edgecnn is measured with
  both of its TFLite APIs: the Interpreter (its default, and what tflite-runtime offers) and
  `api=compiled_model` (the tool's own API).

The model is MobileNet v2 at 224x224 with random weights (latency does not depend on them):
torch -> ONNX -> OpenVINO IR (fp32, uncompressed), optionally NNCF INT8 (`--int8`, calibrated on
random images: fine for timing, meaningless for accuracy), and torch -> litert-torch -> .tflite.
Artifacts are cached in --workdir. Every edgecnn measurement goes through `measure_in_child`, the
same child process `edgecnn bench` uses. The tools run alternately for --rounds rounds (the order
flips every round) so that a noisy neighbour hits both sides alike; the verdict is the median over
rounds of each round's paired difference. Run it on a quiet machine:

    python benchmarks/compare_native_tools.py --threads 2 --seconds 10 --rounds 3 [--int8]

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
from edgecnn.backends.runner import physical_cores  # noqa: E402


def build_artifacts(workdir: Path, size: int, int8: bool) -> dict[str, Path]:
    """MobileNet v2 as an fp32 OpenVINO IR, a .tflite and (int8) an NNCF INT8 IR; cached."""
    workdir.mkdir(parents=True, exist_ok=True)
    stem = f"mobilenet_v2_{size}"
    paths = {"onnx": workdir / f"{stem}.onnx", "openvino": workdir / f"{stem}.xml",
             "tflite": workdir / f"{stem}.tflite"}
    if int8:
        paths["openvino_int8"] = workdir / f"{stem}_int8.xml"
    missing = [k for k, p in paths.items() if not p.is_file()]
    if not missing:
        return paths
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(weights=None).eval()
    sample = torch.randn(1, 3, size, size)
    if not paths["onnx"].is_file():
        torch.onnx.export(
            model, (sample,), str(paths["onnx"]), dynamo=False, opset_version=17,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    if not paths["openvino"].is_file():
        import openvino as ov

        ov.save_model(ov.convert_model(str(paths["onnx"])), str(paths["openvino"]), compress_to_fp16=False)
    if not paths["tflite"].is_file():
        import litert_torch

        litert_torch.convert(model, (sample,)).export(str(paths["tflite"]))
    if int8 and not paths["openvino_int8"].is_file():
        import numpy as np

        from edgecnn.backends.openvino.quantize import quantize_openvino_int8

        calibration = np.random.default_rng(0).standard_normal((32, 3, size, size), dtype=np.float32)
        quantize_openvino_int8(paths["openvino"], paths["openvino_int8"], calibration)
    return paths


def edgecnn_p50(path: Path, runtime: str, precision: str, threads: int, batch: int, seconds: float,
                warmup: int, **options) -> dict:
    target = BenchTarget(name=path.name, path=path, runtime=runtime, precision=precision,
                         size_bytes=artifact_size_bytes(path), options={"precision": precision, **options})
    settings = BenchSettings(threads=threads, batches=(batch,), warmup=warmup, min_time_s=seconds)
    result = measure_in_child(target, batch, settings)
    return {"p50_ms": result["latency_ms"]["p50"], "iterations": result["iterations"],
            "applied": result["applied"]}


def _benchmark_app_command() -> list[str]:
    exe = shutil.which("benchmark_app")
    return [exe] if exe else [sys.executable, "-m", "openvino.tools.benchmark.main"]


def benchmark_app_median(xml: Path, threads: int, batch: int, size: int, seconds: float, warmup_dir: Path) -> dict:
    """benchmark_app's median latency (ms) with -hint latency, the threads and f32 precision."""
    config = warmup_dir / f"benchmark_app_{threads}t.json"
    config.write_text(json.dumps({"CPU": {"INFERENCE_NUM_THREADS": str(threads),
                                          "INFERENCE_PRECISION_HINT": "f32"}}))
    command = [*_benchmark_app_command(), "-m", str(xml), "-d", "CPU", "-hint", "latency", "-api", "sync",
               "-load_config", str(config), "-shape", f"[{batch},3,{size},{size}]", "-t", f"{seconds:g}"]
    out = subprocess.run(command, capture_output=True, text=True)
    text = out.stdout + out.stderr
    # It prints the median in ms, or in us for short latencies.
    median = re.search(r"Median:\s+([0-9.]+)\s*(ms|us)", text)
    if out.returncode != 0 or median is None:
        raise SystemExit(f"benchmark_app failed ({out.returncode}):\n{text[-2000:]}")
    value = float(median.group(1)) / (1000.0 if median.group(2) == "us" else 1.0)
    reported = dict(re.findall(r"\[ INFO \]\s+(INFERENCE_NUM_THREADS|INFERENCE_PRECISION_HINT|"
                               r"PERFORMANCE_HINT|NUM_STREAMS):\s+(.+)", text))
    count = re.search(r"Count:\s+(\d+)", text)
    return {"median_ms": value, "iterations": int(count.group(1)) if count else None,
            "reported": reported, "command": " ".join(command)}


def litert_median(tflite: Path, threads: int, runs: int, warmup: int, workdir: Path) -> dict:
    """litert-benchmark's median latency (ms) over `runs` runs on `threads` CPU threads."""
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per tool per round")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--int8", action="store_true", help="also compare an NNCF INT8 IR")
    parser.add_argument("--tolerance", type=float, default=10.0, help="percent")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "edgecnn-native-compare")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args()
    batch = 1  # the comparison is at batch 1: litert-benchmark runs the model's own input shape

    files = build_artifacts(args.workdir, args.size, args.int8)
    env = environment()
    print(f"{env['cpu_model']}, {env['physical_cores']} physical cores, threads={args.threads}, batch={batch}, "
          f"MobileNet v2 {args.size}x{args.size}, load average {os.getloadavg()[0]:.2f}", flush=True)

    # (pair, edgecnn step, native step): each pair is measured back to back.
    pairs: list[tuple[str, str, object, object]] = []

    def openvino_pair(key: str, xml: Path, precision: str) -> None:
        pairs.append((key, "benchmark_app -hint latency",
                      lambda: edgecnn_p50(xml, "openvino", precision, args.threads, batch, args.seconds, args.warmup),
                      lambda: benchmark_app_median(xml, args.threads, batch, args.size, args.seconds, args.workdir)))

    openvino_pair("openvino fp32", files["openvino"], "fp32")
    if args.int8:
        openvino_pair("openvino int8", files["openvino_int8"], "int8")
    rounds: list[dict] = []
    current: dict = {}

    def litert_runs(key: str) -> int:
        # litert-benchmark takes a run count, not a time: as many runs as edgecnn's timed runs of
        # the same pair reached (this round's when edgecnn ran first, else the last round's).
        for source in (current, *reversed(rounds)):
            if "edgecnn" in source.get(key, {}):
                return source[key]["edgecnn"]["iterations"]
        return 200

    for key, api in (("tflite interpreter", "interpreter"), ("tflite compiled_model", "compiled_model")):
        pairs.append((key, "litert-benchmark",
                      lambda api=api: edgecnn_p50(files["tflite"], "tflite", "fp32", args.threads, 1, args.seconds,
                                                  args.warmup, api=api),
                      lambda key=key: litert_median(files["tflite"], args.threads, litert_runs(key), args.warmup,
                                                    args.workdir)))

    for index in range(args.rounds):
        current = {}
        for key, _tool, ours, theirs in pairs:
            current[key] = {}
            # edgecnn first in even rounds, the native tool first in odd ones.
            for side, step in ((("edgecnn", ours), ("native", theirs)) if index % 2 == 0
                               else (("native", theirs), ("edgecnn", ours))):
                current[key][side] = step()
        current["loadavg"] = os.getloadavg()[0]
        rounds.append(current)
        print(f"round {index + 1} (load {current['loadavg']:.2f}): " + " | ".join(
            f"{key} {current[key]['edgecnn']['p50_ms']:.2f} vs {current[key]['native']['median_ms']:.2f} ms"
            for key, *_ in pairs), flush=True)

    failed = False
    summary = {}
    print()
    print(f"{'artifact / API':<24} {'edgecnn p50':>12} {'native median':>14} {'diff':>8} {'paired diff':>12}  "
          "native tool")
    for key, tool, *_ in pairs:
        ours = statistics.median(r[key]["edgecnn"]["p50_ms"] for r in rounds)
        theirs = statistics.median(r[key]["native"]["median_ms"] for r in rounds)
        diff = (ours - theirs) / theirs * 100.0
        # The verdict: the median of each round's difference. The two sides of a round ran back to
        # back, so a load that drifts between rounds (a shared machine) cancels out of the pair.
        paired = statistics.median(
            (r[key]["edgecnn"]["p50_ms"] / r[key]["native"]["median_ms"] - 1.0) * 100.0 for r in rounds)
        ok = abs(paired) <= args.tolerance
        failed |= not ok
        summary[key] = {"edgecnn_p50_ms": ours, "native_median_ms": theirs, "diff_percent": diff,
                        "paired_diff_percent": paired, "within_tolerance": ok, "tool": tool}
        print(f"{key:<24} {ours:>10.2f}ms {theirs:>12.2f}ms {diff:>+7.1f}% {paired:>+11.1f}%  {tool}"
              f"{'' if ok else f'  (outside {args.tolerance:g} %)'}")
    load = max(r["loadavg"] for r in rounds)
    if load > env["physical_cores"]:
        print(f"warning: load average reached {load:.1f} on {env['physical_cores']} cores: other processes "
              "competed for the CPU, so these numbers are noisy; rerun on a quiet machine")
    first = rounds[0]
    print(f"applied by edgecnn (openvino fp32): {first['openvino fp32']['edgecnn']['applied']}")
    print(f"reported by benchmark_app: {first['openvino fp32']['native']['reported']}")
    print(f"applied by edgecnn (tflite): {first['tflite interpreter']['edgecnn']['applied']}")
    print(f"reported by litert-benchmark: {first['tflite interpreter']['native']['reported']}")

    if args.json:
        args.json.write_text(json.dumps({
            "environment": env, "threads": args.threads, "batch": batch, "seconds": args.seconds,
            "rounds": rounds, "summary": summary, "tolerance_percent": args.tolerance,
            "files": {k: str(v) for k, v in files.items()},
        }, indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
