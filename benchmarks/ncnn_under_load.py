"""ncnn under load (issue 23): the runner's old and new OpenMP wait, quiet and beside two busy processes.

MobileNet v2 224 fp32 on `arm-ncnn` (random weights: latency is real), 2 threads. Two worker processes
load the same model through edgecnn's ncnn runner, one with the old settings (`openmp_wait=spin`, what
OpenMP does by default and what the runner did before) and one with the new default (`passive`). A
worker is its own process because OpenMP reads its wait policy once, when ncnn is imported.

Both are timed in one run, side by side: quiet first, then with two `python -c "while True: pass"`
processes (bounded by `timeout`, killed at the end). In each phase the workers take turns, round by
round, the order alternating, each round timing `Runner.invoke` alone with bench's `time_invokes`
(perf_counter_ns, gc paused) for at least --round-s seconds and --min-iters runs, after --warmup runs.
The load average is read at the start and end of each phase: on a shared machine "quiet" is only as
quiet as the other work on it. Also measured: CPU time each worker burns in the 100 ms after a run
(a spinning OpenMP worker keeps a core busy for milliseconds; a passive one sleeps at once).

    python benchmarks/ncnn_under_load.py [--bundle DIR] [--rounds 6] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"old (spin)": "spin", "new (passive)": "passive"}
BUSY_CODE = "while True: pass"


def export_model(out: Path) -> Path:
    """MobileNet v2 224 fp32 for arm-ncnn, random weights, exported the way the CLI does it."""
    command = [sys.executable, "-m", "edgecnn", "export", "mobilenet_v2", "--target", "arm-ncnn", "--weights",
               "random", "--calib-data", "noise", "--golden-size", "50", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"export failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return out


def worker(param: str, wait: str, threads: int, warmup: int) -> None:
    """The child: load, warm up, then answer each 'ROUND_S MIN_ITERS' line with that round's samples (ns)."""
    from edgecnn.backends import get_runner
    from edgecnn.bench.measure import time_invokes

    runner = get_runner("ncnn").load(param, threads=threads, openmp_wait=wait)
    runner.bind(np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32))
    for _ in range(warmup):
        runner.invoke()
    idle = []
    for _ in range(10):  # CPU this process burns while it has nothing to run
        runner.invoke()
        cpu = time.process_time()
        time.sleep(0.1)
        idle.append((time.process_time() - cpu) * 1e3)
    print(json.dumps({"applied": runner.applied, "idle_cpu_ms_per_100ms": float(np.median(idle))}), flush=True)
    for line in sys.stdin:
        round_s, min_iters = line.split()
        samples = time_invokes(runner.invoke, iters=None, min_time_ns=int(float(round_s) * 1e9),
                               min_iters=int(min_iters))
        print(json.dumps(samples), flush=True)


def start_workers(param: Path, threads: int, warmup: int) -> tuple[dict[str, subprocess.Popen], dict[str, dict]]:
    """One worker per setting, loaded and warmed up; (processes, what each reported after loading)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    procs, info = {}, {}
    for name, wait in SETTINGS.items():
        procs[name] = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(param), wait, str(threads), str(warmup)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        info[name] = json.loads(procs[name].stdout.readline())
    return procs, info


def run_phase(procs: dict[str, subprocess.Popen], args: argparse.Namespace, busy: int) -> dict:
    """Interleaved rounds of every worker, with `busy` spinning processes beside them; samples in ms."""
    hogs = [subprocess.Popen(["timeout", "300", sys.executable, "-c", BUSY_CODE]) for _ in range(busy)]
    try:
        time.sleep(1.0 if busy else 0.0)  # let the scheduler see them
        load_start = os.getloadavg()
        samples: dict[str, list[float]] = {name: [] for name in procs}
        for index in range(args.rounds):
            order = list(procs) if index % 2 == 0 else list(procs)[::-1]
            for name in order:
                procs[name].stdin.write(f"{args.round_s} {args.min_iters}\n")
                procs[name].stdin.flush()
                samples[name] += [ns / 1e6 for ns in json.loads(procs[name].stdout.readline())]
        load_end = os.getloadavg()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    return {"busy_processes": busy, "loadavg_1min": [round(load_start[0], 2), round(load_end[0], 2)],
            "samples_ms": samples}


def summary(samples: list[float]) -> dict:
    values = np.asarray(samples)
    return {"n": len(values), "p50": float(np.percentile(values, 50)), "p90": float(np.percentile(values, 90)),
            "p99": float(np.percentile(values, 99))}


def cpu_description() -> dict:
    """lscpu's model name and the SIMD flags that decide ncnn's x86 kernels."""
    from edgecnn.bench.environment import cpu_model
    from edgecnn.bench.tuned import cpu_flags

    flags = set(cpu_flags())
    return {"model": cpu_model(), "cores": os.cpu_count(),
            "simd": [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512vnni") if f in flags]}


def print_table(report: dict) -> None:
    cpu, method = report["cpu"], report["method"]
    print(f"CPU: {cpu['model']}, {cpu['cores']} cores, {', '.join(cpu['simd']) or 'no AVX2/AVX-512'}")
    print(f"method: {method}")
    print("\n| machine | load avg (1 min, start-end) | runner setting | runs | p50 ms | p90 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for phase in report["phases"]:
        # "quiet" means none of ours added: the load average says what else the machine was running.
        label = "quiet (none added)" if not phase["busy_processes"] else f"+{phase['busy_processes']} busy processes"
        load = "-".join(f"{v:.1f}" for v in phase["loadavg_1min"])
        for name, stats in phase["latency_ms"].items():
            print(f"| {label} | {load} | {name} | {stats['n']} | {stats['p50']:.1f} | {stats['p90']:.1f} | "
                  f"{stats['p99']:.1f} |")
    for name, info in report["workers"].items():
        applied = info["applied"]
        print(f"{name}: openmp_wait={applied['openmp_wait']}, runtime {applied['openmp_runtime']}, "
              f"threads {applied['num_threads']}; CPU burnt in the 100 ms after a run: "
              f"{info['idle_cpu_ms_per_100ms']:.2f} ms")


def measure(args: argparse.Namespace, bundle: Path) -> dict:
    param = bundle / "ncnn" / "model.fp32.param"
    procs, info = start_workers(param, args.threads, args.warmup)
    try:
        phases = [run_phase(procs, args, busy) for busy in (0, args.busy)]
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait(timeout=60)
    for phase in phases:
        phase["latency_ms"] = {name: summary(values) for name, values in phase.pop("samples_ms").items()}
    method = (f"MobileNet v2 224 fp32 (random weights), edgecnn ncnn runner, {args.threads} threads, "
              f"{args.warmup} warm-up runs, {args.rounds} interleaved rounds per phase of >= {args.round_s:g} s and "
              f">= {args.min_iters} runs each, perf_counter_ns around Runner.invoke")
    return {"cpu": cpu_description(), "method": method, "workers": info, "phases": phases}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        param, wait, threads, warmup = sys.argv[2:6]
        return worker(param, wait, int(threads), int(warmup))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="an arm-ncnn MobileNet v2 bundle (default: export one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--busy", type=int, default=2, help="busy processes in the loaded phase")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--round-s", type=float, default=1.0)
    parser.add_argument("--min-iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ncnn-load-") as tmp:
        bundle = args.bundle or export_model(Path(tmp) / "mnv2-arm-ncnn")
        report = measure(args, bundle)
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
