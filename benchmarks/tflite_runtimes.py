"""fp32 vs int8 .tflite latency on ai-edge-litert and on tflite-runtime 2.14 (MobileNet v2 224x224).

    python benchmarks/tflite_runtimes.py                      # fp32, int8 (full-integer)
    python benchmarks/tflite_runtimes.py --all                # + fp16, int8 weight-only
    python benchmarks/tflite_runtimes.py --per-op             # + where the time goes, op by op
    python benchmarks/tflite_runtimes.py --tflite-runtime-python /tmp/tflrt/bin/python

Files come from `edgecnn.backends.tflite.convert.export_tflite` (random weights: speed only; int8
calibrated on 32 upsampled scikit-learn digits), kept in --workdir and reused when present.
tflite-runtime cannot share a process with ai-edge-litert (both register the same TFLite
symbols), so each runtime times the files in its own Python: this one for ai-edge-litert, and
the interpreter of a virtual environment holding `tflite-runtime==2.14.0 "numpy<2"` (default
/tmp/tflrt/bin/python; skipped when absent).

Method: batch 1, `--threads` threads (default 2), default op resolver (XNNPACK applied the way
each runtime applies it by default). Every file gets `--warmup` invocations, then `--rounds`
rounds over all files in turn (0.2 s pause and 3 re-warm runs before each file's round, so one
file's worker threads do not spin against the next), `--iters` timed invocations per file in
all, each timed with perf_counter_ns. Medians over all timed runs. On a shared machine compare
ratios within one run, not absolute numbers across runs.

--per-op cuts each file into one-op models (same tensors, quantization parameters and weights)
and times each one alone on each runtime: it says which ops the runtime's XNNPACK delegate takes
("delegated") and how the time splits by op type. The sum of one-op medians is not the whole
model's latency (no cache sharing, per-invoke overhead), but the split is what matters.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_TFLITE_RUNTIME_PYTHON = "/tmp/tflrt/bin/python"

# Runs inside each runtime's Python (only numpy and the runtime needed): times files or one-op models.
WORKER = r'''
import json, sys, time
import numpy as np
try:
    from ai_edge_litert.interpreter import Interpreter
    from importlib.metadata import version
    runtime = "ai-edge-litert " + version("ai-edge-litert")
except ImportError:
    from tflite_runtime.interpreter import Interpreter
    import tflite_runtime
    runtime = "tflite-runtime " + tflite_runtime.__version__
job = json.loads(sys.argv[1])
rng = np.random.default_rng(0)

def load(path):
    interpreter = Interpreter(model_path=path, num_threads=job["threads"])
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        if detail["dtype"] == np.float32:
            value = rng.standard_normal(detail["shape"]).astype(np.float32)
        else:
            info = np.iinfo(detail["dtype"])
            value = rng.integers(info.min, info.max, detail["shape"]).astype(detail["dtype"])
        interpreter.set_tensor(detail["index"], value)
    delegated = any(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())
    return interpreter, delegated

def timed(interpreter, count):
    out = []
    for _ in range(count):
        start = time.perf_counter_ns()
        interpreter.invoke()
        out.append(time.perf_counter_ns() - start)
    return out

result = {"runtime": runtime, "files": {}}
if job["mode"] == "models":
    loaded = {path: load(path)[0] for path in job["paths"]}
    samples = {path: [] for path in loaded}
    for interpreter in loaded.values():
        timed(interpreter, job["warmup"])
    per_round = max(1, job["iters"] // job["rounds"])
    for _ in range(job["rounds"]):
        for path, interpreter in loaded.items():
            time.sleep(0.2)
            timed(interpreter, 3)
            samples[path] += timed(interpreter, per_round)
    for path, values in samples.items():
        ms = np.asarray(values) / 1e6
        result["files"][path] = {"p50": float(np.median(ms)), "p90": float(np.percentile(ms, 90)),
                                 "min": float(ms.min()), "runs": int(ms.size)}
else:  # one-op models: (op name, delegated, median ms) each
    for path in job["paths"]:
        try:
            interpreter, delegated = load(path)
            timed(interpreter, 2)
            result["files"][path] = [delegated, float(np.median(timed(interpreter, job["iters"]))) / 1e6]
        except Exception as exc:  # e.g. a DEQUANTIZE of a constant has nothing to run alone
            result["files"][path] = [None, None]
print(json.dumps(result))
'''


def digits_images(count: int, size: int) -> np.ndarray:
    """Upsampled scikit-learn digits with ImageNet normalisation (calibration for speed runs)."""
    import torch
    from sklearn.datasets import load_digits

    images = torch.from_numpy(load_digits().images[:count].astype(np.float32) / 16.0)[:, None]
    images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return ((images.repeat(1, 3, 1, 1) - mean) / std).numpy()


def export_files(model_name: str, size: int, variants: list[str], workdir: Path) -> dict[str, Path]:
    """variant -> .tflite path, exported unless already in `workdir`."""
    import torch

    from edgecnn.backends.tflite.convert import export_tflite
    from edgecnn.zoo.registry import build_model

    torch.manual_seed(0)
    model = build_model(model_name, num_classes=1000).eval()
    calibration = digits_images(32, size)
    files = {}
    for variant in variants:
        path = workdir / f"{model_name}_{size}.{variant}.tflite"
        if not path.exists():
            precision, _, scheme = variant.partition("-")
            result = export_tflite(
                model, (3, size, size), path, precision=precision,
                calibration=calibration if variant == "int8" else None,
                int8_scheme="weight-only" if scheme == "wo" else "full-integer",
            )
            print(f"exported {path.name}: {result.bytes / 1e6:.1f} MB in {result.export_s:.0f} s", flush=True)
        files[variant] = path
    return files


def run_worker(python: str, job: dict) -> dict:
    done = subprocess.run(
        [python, "-c", WORKER, json.dumps(job)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{python} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def split_ops(path: Path, folder: Path) -> list[tuple[str, Path]]:
    """One .tflite per operator of `path` (main subgraph): (op name, file) in graph order."""
    import flatbuffers

    from edgecnn.backends.tflite.flatbuffer import enum_names, schema as tflite_schema

    schema = tflite_schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(path.read_bytes(), 0))
    graph = model.subgraphs[0]
    op_names = enum_names(schema.BuiltinOperator)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for index, op in enumerate(graph.operators):
        used = list(dict.fromkeys(int(t) for t in list(op.inputs) + list(op.outputs) if t >= 0))
        remap = {t: j for j, t in enumerate(used)}
        single = schema.ModelT()
        single.version, single.operatorCodes = model.version, model.operatorCodes
        single.buffers = [schema.BufferT()]  # buffer 0: the empty one
        subgraph = schema.SubGraphT()
        subgraph.tensors, constants = [], set()
        for t in used:
            tensor = copy.copy(graph.tensors[t])
            buffer = model.buffers[tensor.buffer]
            if buffer.data is not None and len(buffer.data):
                single.buffers.append(buffer)
                tensor.buffer = len(single.buffers) - 1
                constants.add(t)
            else:
                tensor.buffer = 0
            subgraph.tensors.append(tensor)
        single_op = copy.copy(op)
        single_op.inputs = np.array([remap[t] if t >= 0 else -1 for t in op.inputs], np.int32)
        single_op.outputs = np.array([remap[t] for t in op.outputs], np.int32)
        subgraph.operators = [single_op]
        subgraph.inputs = np.array([remap[t] for t in op.inputs if t >= 0 and t not in constants], np.int32)
        subgraph.outputs = np.array([remap[t] for t in op.outputs], np.int32)
        single.subgraphs = [subgraph]
        code = model.operatorCodes[op.opcodeIndex]
        name = op_names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        builder = flatbuffers.Builder(1 << 20)
        builder.Finish(single.Pack(builder), file_identifier=b"TFL3")
        target = folder / f"{index:03d}_{name}.tflite"
        target.write_bytes(builder.Output())
        out.append((name, target))
    return out


def per_op_report(runtime: str, variant: str, ops: list[tuple[str, Path]], timings: dict) -> dict:
    by_op: dict[str, dict] = {}
    for name, path in ops:
        delegated, ms = timings[str(path)]
        if ms is None:
            continue
        row = by_op.setdefault(name, {"count": 0, "delegated": 0, "ms": 0.0})
        row["count"] += 1
        row["delegated"] += int(bool(delegated))
        row["ms"] += ms
    total = sum(row["ms"] for row in by_op.values())
    skipped = len(ops) - sum(row["count"] for row in by_op.values())
    print(f"\n  {runtime}, {variant}: sum of one-op medians {total:.1f} ms"
          + (f" ({skipped} constant-only ops not runnable alone)" if skipped else ""))
    for name, row in sorted(by_op.items(), key=lambda kv: -kv[1]["ms"]):
        print(f"    {name:20s} x{row['count']:<3d} delegated {row['delegated']:>2d}/{row['count']:<3d}"
              f" {row['ms']:8.2f} ms {100 * row['ms'] / max(total, 1e-9):5.1f} %")
    return {"sum_ms": total, "ops": by_op}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--all", action="store_true", help="also fp16 and int8 weight-only")
    parser.add_argument("--per-op", action="store_true", help="one-op profile of fp32 and int8")
    parser.add_argument("--tflite-runtime-python", default=DEFAULT_TFLITE_RUNTIME_PYTHON)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "edgecnn_tflite_bench")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    variants = ["fp32", "int8"] + (["fp16", "int8-wo"] if args.all else [])
    args.workdir.mkdir(parents=True, exist_ok=True)
    files = export_files(args.model, args.size, variants, args.workdir)
    pythons = {"ai-edge-litert": sys.executable}
    if Path(args.tflite_runtime_python).exists():
        pythons["tflite-runtime"] = args.tflite_runtime_python
    else:
        print(f"no {args.tflite_runtime_python}: tflite-runtime skipped (python -m venv /tmp/tflrt && "
              "/tmp/tflrt/bin/pip install tflite-runtime==2.14.0 'numpy<2')")

    job = {"mode": "models", "paths": [str(files[v]) for v in variants], "threads": args.threads,
           "warmup": args.warmup, "iters": args.iters, "rounds": args.rounds}
    report: dict = {"model": args.model, "size": args.size, "method": {k: job[k] for k in
                    ("threads", "warmup", "iters", "rounds")} | {"batch": 1}, "runtimes": {}}
    print(f"\n{args.model} {args.size}x{args.size}, batch 1, {args.threads} threads, {args.warmup} warm-up, "
          f"{args.iters} timed runs per file in {args.rounds} interleaved rounds; median (p90) ms")
    print(f"  {'runtime':28s}" + "".join(f"{v:>18s}" for v in variants) + "   int8 / fp32")
    for label, python in pythons.items():
        result = run_worker(python, job)
        stats = {v: result["files"][str(files[v])] for v in variants}
        report["runtimes"][result["runtime"]] = stats
        ratio = stats["int8"]["p50"] / stats["fp32"]["p50"]
        print(f"  {result['runtime']:28s}" + "".join(
            f"{stats[v]['p50']:10.2f} ({stats[v]['p90']:5.1f})" for v in variants) + f"   {ratio:8.2f}x")
    report["sizes_mb"] = {v: files[v].stat().st_size / 1e6 for v in variants}
    print("  file size MB: " + ", ".join(f"{v} {mb:.1f}" for v, mb in report["sizes_mb"].items()))

    if args.per_op:
        print("\nper op (one-op models, default resolver; 'delegated': the XNNPACK delegate took it)")
        report["per_op"] = {}
        for variant in ("fp32", "int8"):
            ops = split_ops(files[variant], args.workdir / f"ops_{variant}")
            for label, python in pythons.items():
                result = run_worker(python, {"mode": "ops", "paths": [str(p) for _, p in ops],
                                             "threads": args.threads, "iters": 10})
                report["per_op"][f"{result['runtime']} {variant}"] = per_op_report(
                    result["runtime"], variant, ops, result["files"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
