"""Latency statistics over any Runner, each artifact measured in its own process.

The method, stated in every report:

* one child process per artifact and batch size (`python -m edgecnn.bench_worker`), so load time
  and peak resident memory belong to that artifact alone, and the child imports only the runtime
  it runs (torch only for the PyTorch reference);
* the input is prepared and bound before timing; `time.perf_counter_ns` wraps the runtime call
  alone (`Runner.invoke`), with the garbage collector paused;
* `warmup` untimed runs, then `iters` timed runs, or as many as fit in `min_time_s` (at least
  `min_iters`);
* percentiles p50/p90/p99 by linear interpolation, plus mean, std, min, max; throughput is
  batch / mean latency.

This module imports only the standard library and numpy at the top: `bench` runs on a device
without torch.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

import edgecnn
from edgecnn.bundle import checkpoint_of, default_threads_for  # noqa: F401 (default_threads_for: public here too)
from edgecnn.errors import BadInputError, EdgecnnError
from edgecnn.backends import resolve_runtime, runtime_for_path
from edgecnn.backends.runner import FixedBatchError, physical_cores

SCHEMA = "edgecnn.bench/1"
DEFAULT_WARMUP = 10
DEFAULT_MIN_TIME_S = 3.0  # when neither --iters nor --min-time is given
DEFAULT_MIN_ITERS = 30  # a floor under --min-time, so p90/p99 rest on some samples
MAX_ITERS = 1_000_000

LATENCY_KEYS = ("p50", "p90", "p99", "mean", "std", "min", "max")


class BenchWorkerError(EdgecnnError):
    """An error raised in a benchmark child process, re-raised here with its exit code."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class BenchTarget:
    """One artifact to benchmark."""

    name: str
    path: Path
    runtime: str
    precision: str | None = None
    size_bytes: int = 0
    #: passed to Runner.load: input_shape, layout, precision (from the manifest), runner options
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchSettings:
    """How to measure: the same for every artifact of a run."""

    threads: int
    batches: tuple[int, ...] = (1,)
    warmup: int = DEFAULT_WARMUP
    iters: int | None = None
    min_time_s: float | None = None
    min_iters: int = DEFAULT_MIN_ITERS
    timeout_s: float | None = None  # per child process

    def __post_init__(self) -> None:
        if self.iters is not None and self.min_time_s is not None:
            raise BadInputError("give --iters or --min-time, not both")
        if self.iters is None and self.min_time_s is None:
            self.min_time_s = DEFAULT_MIN_TIME_S
        if self.iters is not None and self.iters < 1:
            raise BadInputError(f"--iters must be at least 1, got {self.iters}")
        if self.min_time_s is not None and self.min_time_s <= 0:
            raise BadInputError(f"--min-time must be positive, got {self.min_time_s}")
        if self.warmup < 0:
            raise BadInputError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.threads < 1:
            raise BadInputError(f"--threads must be at least 1, got {self.threads}")
        if not self.batches or any(b < 1 for b in self.batches):
            raise BadInputError(f"batch sizes must be positive, got {list(self.batches)}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "batches": list(self.batches),
            "warmup": self.warmup,
            "iters": self.iters,
            "min_time_s": self.min_time_s,
            "min_iters": self.min_iters if self.iters is None else None,
            "timer": "time.perf_counter_ns around the runtime call alone (input bound beforehand, gc paused)",
            "percentiles": "linear interpolation (numpy.percentile)",
            "isolation": "one child process per artifact and batch size",
            "load_ms": "Runner.load in a fresh process, importing the runtime's SDK included (a cold start)",
            "first_inference_ms": "the first runtime call after load, before warm-up",
            "peak_rss_mb": "the child's peak resident memory (ru_maxrss), interpreter and numpy included; "
                           "python_baseline_rss_mb is the part before loading",
        }

    def describe(self) -> str:
        """One sentence for people, printed under the table."""
        runs = (
            f"{self.iters} timed runs" if self.iters is not None
            else f"timed runs for at least {self.min_time_s:g} s (and {self.min_iters} runs)"
        )
        return (
            f"Method: {self.warmup} warm-up runs, then {runs} per artifact and batch, "
            f"{self.threads} threads, each artifact in its own process; perf_counter_ns around the "
            "runtime call alone; p50/p90/p99 by linear interpolation; throughput = batch / mean."
        )


def parse_batches(text: str | Iterable[int]) -> tuple[int, ...]:
    """'1,8' -> (1, 8); BadInputError for anything else."""
    if not isinstance(text, str):
        values = list(text)
    else:
        try:
            values = [int(part) for part in text.replace(" ", "").split(",") if part]
        except ValueError:
            raise BadInputError(f"--batch takes positive integers separated by commas, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise BadInputError(f"--batch takes positive integers separated by commas, got {text!r}")
    return tuple(dict.fromkeys(values))  # keep order, drop repeats


# --------------------------------------------------------------------------- what to benchmark


def artifact_size_bytes(path: Path) -> int:
    """Bytes on disk of an artifact, with the weights file next to an OpenVINO IR."""
    size = path.stat().st_size
    if path.suffix.lower() == ".xml" and path.with_suffix(".bin").is_file():
        size += path.with_suffix(".bin").stat().st_size
    return size


def is_bundle_path(path: Path) -> bool:
    """A bundle folder or its manifest.json (anything else is one artifact file)."""
    return path.is_dir() or path.name == "manifest.json"


def targets_from_path(path: str | Path, runtime: str | None = None):
    """(targets, bundle or None) for a bundle dir, its manifest.json, or one artifact file.

    Every bundle artifact is checked against the manifest's sha256 first (BundleIntegrityError,
    exit 2, on a mismatch or a missing file).
    """
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"not found: {path}")
    wanted = resolve_runtime(runtime) if runtime else None
    if is_bundle_path(path):
        from edgecnn.bundle import load_bundle

        bundle = load_bundle(path)
        if wanted == "torch":  # a bundle holds no torch artifact: its checkpoint is the torch run
            return [torch_reference_target(bundle)], bundle
        entries = [e for e in bundle.artifacts if wanted is None or resolve_runtime(e.runtime) == wanted]
        if not entries:
            present = sorted({e.runtime for e in bundle.artifacts}) or ["none"]
            raise BadInputError(
                f"the bundle at {bundle.root} has no {wanted} artifact (it has: {', '.join(present)})"
            )
        targets = []
        for entry in entries:
            bundle.check_integrity(entry)
            artifact = bundle.artifact_path(entry)
            size = sum(int(f.get("bytes", 0)) for f in (entry.files or [])) or int(entry.bytes or 0)
            input_spec = entry.input or {}
            options: dict[str, Any] = {"precision": entry.precision}
            if input_spec.get("shape"):
                options["input_shape"] = list(input_spec["shape"])
            if input_spec.get("layout"):
                options["layout"] = input_spec["layout"]
            targets.append(BenchTarget(
                name=str(entry.path), path=artifact, runtime=resolve_runtime(entry.runtime),
                precision=entry.precision, size_bytes=size or artifact_size_bytes(artifact),
                options=options,
            ))
        return targets, bundle
    if not path.is_file():
        raise BadInputError(f"not a file: {path}")
    chosen = wanted or runtime_for_path(path)
    return [BenchTarget(name=path.name, path=path, runtime=chosen, size_bytes=artifact_size_bytes(path))], None


def torch_reference_target(bundle, targets: Iterable[BenchTarget] = ()) -> BenchTarget:
    """The PyTorch eager run of the bundle's checkpoint, as a baseline target."""
    if bundle is None:
        raise BadInputError(
            "the PyTorch baseline runs the checkpoint recorded in a bundle's manifest: bench the bundle, "
            "or bench the checkpoint file itself (edgecnn bench model.pt)"
        )
    checkpoint = checkpoint_of(bundle)
    if checkpoint is None:
        recorded = (bundle.manifest.get("model") or {}).get("checkpoint")
        why = f"{recorded} no longer exists" if recorded else "the manifest records none"
        raise BadInputError(
            f"the PyTorch baseline runs the checkpoint the bundle was exported from, and {why}: "
            "bench the checkpoint file itself (edgecnn bench model.pt) or drop --baseline torch"
        )
    shape = list(bundle.input_shape or []) or next(
        (t.options.get("input_shape") for t in targets if t.options.get("input_shape")), None)
    options = {"precision": "fp32", **({"input_shape": shape} if shape else {})}
    return BenchTarget(name=f"{checkpoint.name} (eager)", path=checkpoint, runtime="torch", precision="fp32",
                       size_bytes=checkpoint.stat().st_size, options=options)


def is_torch_baseline(baseline: str | None) -> bool:
    """Whether `--baseline` asks for the PyTorch eager run ('torch', 'pytorch', 'eager')."""
    if not baseline:
        return False
    try:
        return resolve_runtime(baseline) == "torch"
    except BadInputError:
        return False


def resolve_baseline(targets: list[BenchTarget], baseline: str | None) -> str | None:
    """The target name `--baseline` means: a name, or a runtime held by exactly one target."""
    if baseline is None:
        return None
    names = [t.name for t in targets]
    if baseline in names:
        return baseline
    try:
        runtime = resolve_runtime(baseline)
    except BadInputError:
        runtime = None
    matches = [t.name for t in targets if runtime is not None and t.runtime == runtime]
    if len(matches) == 1:
        return matches[0]
    raise BadInputError(
        f"--baseline {baseline!r} matches {'several' if matches else 'no'} artifact(s): "
        f"use one of {', '.join(names)}"
    )


# ----------------------------------------------------------------------------- measuring


def latency_stats(samples_ns: Iterable[int]) -> dict[str, float]:
    """p50/p90/p99/mean/std/min/max in milliseconds."""
    ms = np.asarray(list(samples_ns), dtype=np.float64) / 1e6
    if ms.size == 0:
        raise ValueError("no samples")
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(ms.mean()),
        "std": float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        "min": float(ms.min()),
        "max": float(ms.max()),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Load one artifact and time it, in this process (the child's side of `measure_in_child`)."""
    from edgecnn.backends import get_runner

    baseline_rss = peak_rss_mb()
    batch = int(spec["batch"])
    runner = get_runner(spec["runtime"])
    start = time.perf_counter_ns()
    runner.load(spec["path"], threads=spec["threads"], batch=batch, **spec.get("options", {}))
    load_ns = time.perf_counter_ns() - start

    shape = runner.input_shape
    if shape is None:
        raise BadInputError(
            f"cannot tell the input shape of {spec['path']}: bench it from its bundle (the manifest "
            "records the input shape)"
        )
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((batch, *shape), dtype=np.float32)
    runner.bind(inputs)

    start = time.perf_counter_ns()
    runner.invoke()
    first_ns = time.perf_counter_ns() - start
    output = runner.fetch()
    if output.shape[0] != batch or not np.all(np.isfinite(output)):
        raise BadInputError(
            f"{spec['path']} returned {'non-finite values' if output.shape[0] == batch else f'shape {list(output.shape)}'}"
            f" for a batch of {batch}"
        )

    for _ in range(int(spec["warmup"])):
        runner.invoke()

    iters = spec.get("iters")
    min_time_ns = int(float(spec.get("min_time_s") or 0) * 1e9)
    min_iters = int(spec.get("min_iters") or 1)
    samples: list[int] = []
    clock = time.perf_counter_ns
    invoke = runner.invoke
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if iters is not None:
            for _ in range(int(iters)):
                t0 = clock()
                invoke()
                samples.append(clock() - t0)
        else:
            total = 0
            while (total < min_time_ns or len(samples) < min_iters) and len(samples) < MAX_ITERS:
                t0 = clock()
                invoke()
                elapsed = clock() - t0
                samples.append(elapsed)
                total += elapsed
    finally:
        if gc_was_enabled:
            gc.enable()

    latency = latency_stats(samples)
    result = {
        "runtime": runner.runtime,
        "runtime_version": runner.version,
        "batch": batch,
        "threads": spec["threads"],
        "latency_ms": latency,
        "throughput_ips": batch * 1000.0 / latency["mean"] if latency["mean"] > 0 else None,
        "load_ms": load_ns / 1e6,
        "first_inference_ms": first_ns / 1e6,
        "peak_rss_mb": peak_rss_mb(),
        "python_baseline_rss_mb": baseline_rss,
        "iterations": len(samples),
        "input_shape": [batch, *shape],
        "output_shape": list(output.shape),
        "applied": runner.applied,
        "torch_imported": "torch" in sys.modules,
    }
    runner.close()
    return result


def measure_in_child(target: BenchTarget, batch: int, settings: BenchSettings) -> dict[str, Any]:
    """Run `measure` for one artifact and batch in a fresh Python process; returns its result."""
    spec = {
        "path": str(target.path),
        "runtime": target.runtime,
        "batch": batch,
        "threads": settings.threads,
        "warmup": settings.warmup,
        "iters": settings.iters,
        "min_time_s": settings.min_time_s,
        "min_iters": settings.min_iters,
        "options": target.options,
    }
    with tempfile.TemporaryDirectory(prefix="edgecnn-bench-") as tmp:
        spec_file = Path(tmp) / "spec.json"
        result_file = Path(tmp) / "result.json"
        spec_file.write_text(json.dumps(spec))
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "edgecnn.bench_worker", str(spec_file), str(result_file)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                timeout=settings.timeout_s, env=_child_env(),
            )
        except subprocess.TimeoutExpired:
            raise BenchWorkerError(
                f"benchmark of {target.name} (batch {batch}) took longer than {settings.timeout_s:g} s"
            ) from None
        if not result_file.is_file():
            tail = "\n".join((proc.stderr or "").strip().splitlines()[-5:])
            raise BenchWorkerError(
                f"benchmark of {target.name} (batch {batch}) crashed (exit {proc.returncode}): {tail}"
            )
        payload = json.loads(result_file.read_text())
    if payload.get("ok"):
        return payload["result"]
    error = payload.get("error", {})
    if error.get("type") == FixedBatchError.__name__:
        raise FixedBatchError(error.get("message", "fixed batch"))
    message = error.get("message", "unknown error")
    if error.get("exit_code", 1) != 2 and error.get("type"):
        message = f"benchmark of {target.name} (batch {batch}) failed: {error['type']}: {message}"
    if os.environ.get("EDGECNN_DEBUG") and error.get("traceback"):
        message += "\n" + error["traceback"]
    raise BenchWorkerError(message, int(error.get("exit_code", 1)))


def _child_env() -> dict[str, str]:
    """The child's environment: ours, with edgecnn importable from wherever it was imported."""
    env = dict(os.environ)
    package_root = str(Path(edgecnn.__file__).resolve().parent.parent)
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_root not in parts:
        parts.append(package_root)
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def run_benchmark(
    targets: list[BenchTarget],
    settings: BenchSettings,
    *,
    baseline: str | None = None,
    on_result: Callable[[BenchTarget, int, dict[str, Any] | None], None] | None = None,
) -> dict[str, Any]:
    """Benchmark every target at every batch size, each in its own process; the full report."""
    baseline = resolve_baseline(targets, baseline)
    load_before = _loadavg()
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for target in targets:
        for batch in settings.batches:
            try:
                result = measure_in_child(target, batch, settings)
            except FixedBatchError as exc:
                skipped.append({"name": target.name, "batch": batch, "reason": str(exc)})
                if on_result:
                    on_result(target, batch, None)
                continue
            row = {
                "name": target.name,
                "path": str(target.path),
                "runtime": target.runtime,
                "runtime_version": result["runtime_version"],
                "precision": target.precision or target.options.get("precision"),  # None: a bare file
                "batch": batch,
                "threads": settings.threads,
                "latency_ms": result["latency_ms"],
                "throughput_ips": result["throughput_ips"],
                "load_ms": result["load_ms"],
                "first_inference_ms": result["first_inference_ms"],
                "peak_rss_mb": result["peak_rss_mb"],
                "python_baseline_rss_mb": result["python_baseline_rss_mb"],
                "size_mb": target.size_bytes / 1e6,
                "iterations": result["iterations"],
                "warmup": settings.warmup,
                "input_shape": result["input_shape"],
                "applied": result["applied"],
                "torch_imported": result["torch_imported"],
            }
            rows.append(row)
            if on_result:
                on_result(target, batch, row)
    add_speedups(rows, baseline)
    env = environment()
    env["loadavg_before"] = load_before
    env["loadavg_after"] = _loadavg()
    env["runtime_versions"] = {r["runtime"]: r["runtime_version"] for r in rows}
    # What each runner really configured (read back from the runtime), per artifact.
    env["runtime_options"] = {}
    for row in rows:
        env["runtime_options"].setdefault(row["name"], row["applied"])
    return {
        "schema": SCHEMA,
        "edgecnn_version": edgecnn.__version__,
        "settings": settings.as_dict(),
        "baseline": baseline,
        "environment": env,
        "artifacts": rows,
        "skipped": skipped,
    }


def add_speedups(rows: list[dict[str, Any]], baseline: str | None) -> None:
    """speedup = reference p50 / p50, per batch size; the reference is the baseline or the slowest."""
    for batch in sorted({r["batch"] for r in rows}):
        group = [r for r in rows if r["batch"] == batch]
        reference = next((r for r in group if r["name"] == baseline), None) if baseline else None
        if reference is None:
            reference = max(group, key=lambda r: r["latency_ms"]["p50"])
        for row in group:
            row["speedup"] = reference["latency_ms"]["p50"] / row["latency_ms"]["p50"]
            row["speedup_vs"] = reference["name"]


# ---------------------------------------------------------------------------- environment


def cpu_model() -> str:
    """The CPU's marketing name (x86), or the board's model (ARM), or what platform knows."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    try:
        model = Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00\n ")
        if model:
            return model
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Where the numbers were taken."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    return {
        "cpu_model": cpu_model(),
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "machine": platform.machine(),
        "system": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "edgecnn": edgecnn.__version__,
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


# ---------------------------------------------------------------------------------- plot


def plot_latency(rows: list[dict[str, Any]], path: str | Path, *, title: str | None = None) -> Path:
    """p50 bars with p90–p99 whiskers, per artifact and batch size, written as a PNG."""
    from edgecnn.errors import require

    matplotlib = require("matplotlib", "report", "--plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise BadInputError("nothing to plot: no benchmark results")
    names = list(dict.fromkeys(r["name"] for r in rows))
    batches = sorted({r["batch"] for r in rows})
    by_key = {(r["name"], r["batch"]): r for r in rows}
    width = 0.8 / len(batches)
    fig_width = min(16.0, max(6.5, 1.3 * len(names) * len(batches) + 2.5))
    fig, ax = plt.subplots(figsize=(fig_width, 5.0), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels_at: list[tuple[float, float, float]] = []  # (x, p50, p99) of each bar, labelled below
    for j, batch in enumerate(batches):
        xs, p50s, p90s, p99s = [], [], [], []
        for i, name in enumerate(names):
            row = by_key.get((name, batch))
            if row is None:  # e.g. a fixed-batch artifact skipped at this batch size
                continue
            xs.append(i + (j - (len(batches) - 1) / 2) * width)
            p50s.append(row["latency_ms"]["p50"])
            p90s.append(row["latency_ms"]["p90"])
            p99s.append(row["latency_ms"]["p99"])
        if not xs:
            continue
        ax.bar(xs, p50s, width * 0.9, color=colors[j % len(colors)], label=f"batch {batch}: p50", zorder=2)
        cap = width * 0.15
        ax.vlines(xs, p90s, p99s, color="black", linewidth=1.4, zorder=3)
        ax.hlines(p90s + p99s, [x - cap for x in xs] * 2, [x + cap for x in xs] * 2,
                  color="black", linewidth=1.4, zorder=3)
        labels_at.extend(zip(xs, p50s, p99s))
    ticks = []
    for name in names:
        row = next(r for r in rows if r["name"] == name)
        ticks.append(f"{name}\n{row['runtime']} {row['precision'] or ''}".rstrip())
    ax.set_xticks(range(len(names)), ticks, fontsize=8)
    ax.set_xlim(-0.6, len(names) - 0.4)
    low = min(r["latency_ms"]["p50"] for r in rows)
    high = max(r["latency_ms"]["p99"] for r in rows)
    # Fast runtimes and the tails of a noisy machine can differ by orders of magnitude: a log
    # axis keeps the small bars readable then.
    log_scale = low > 0 and high / low > 30
    if log_scale:
        ax.set_yscale("log")
        ax.set_ylim(low / 2, high * 3)
    else:
        ax.set_ylim(0, high * 1.15)
    # Each bar's p50 is written inside its top when the bar is tall enough to hold the text,
    # else above its whisker, so the number never sits on the whisker.
    fig.canvas.draw()
    to_pixels = ax.transData.transform
    bottom = ax.get_ylim()[0]
    for x, p50, p99 in labels_at:
        text = f"{p50:,.0f}" if p50 >= 100 else f"{p50:.3g}"  # 1,099 rather than 1.1e+03
        bar_pixels = to_pixels((x, p50))[1] - to_pixels((x, bottom))[1]
        if bar_pixels > 18:
            ax.annotate(text, (x, p50), xytext=(0, -3), textcoords="offset points", ha="center", va="top",
                        fontsize=8, color="white", fontweight="bold", zorder=4)
        else:
            ax.annotate(text, (x, max(p50, p99)), xytext=(0, 3), textcoords="offset points", ha="center",
                        va="bottom", fontsize=8, zorder=4)
    ax.set_ylabel("latency per batch (ms)" + (", log scale" if log_scale else ""))
    threads = sorted({r["threads"] for r in rows})
    ax.set_title(title or f"edgecnn bench: p50 latency (bars, value in the bar), p90–p99 (whiskers), "
                          f"{', '.join(map(str, threads))} thread{'s' if threads != [1] else ''}",
                 fontsize=10, pad=22)
    ax.plot([], [], color="black", linewidth=1.4, label="p90–p99")
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=len(batches) + 1, frameon=False)
    ax.grid(axis="y", alpha=0.3, zorder=0)
    ax.set_axisbelow(True)
    fig.tight_layout()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return path
