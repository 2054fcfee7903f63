"""The run report: one table and one self-contained HTML page from a quickstart run folder.

A run folder (what `edgecnn quickstart` writes; `edgecnn report RUN_DIR` rebuilds from it alone):

    RUN_DIR/model_card.json              name, family, params, macs, input_size, num_classes, data
    RUN_DIR/model/metrics.json           training history (optional: no curve without it)
    RUN_DIR/bundles/<target>/manifest.json
    RUN_DIR/verify.json                  {"results": [one `edgecnn verify --json` payload per bundle]}
    RUN_DIR/bench.json                   {"results": [one `edgecnn bench --json` payload per bundle,
                                                      and one for the PyTorch eager baseline]}

`summary_rows` merges them into one row per target and artifact (plus the PyTorch row);
`write_report` writes RUN_DIR/summary.json and RUN_DIR/report.html. The page has no external
reference at all (inline CSS, PNGs as data: URIs, no scripts), so it can be mailed, attached to
a CI run or opened offline. This module imports the standard library and matplotlib (lazily, the
`report` extra) only: no torch, so a report can be rebuilt anywhere.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from edgecnn.atomic import write_text_atomic
from edgecnn.errors import BadInputError

SCHEMA = "edgecnn.summary/1"
SUMMARY_NAME = "summary.json"
REPORT_NAME = "report.html"
REQUIRED = ("model_card.json", "bundles/<target>/manifest.json", "verify.json", "bench.json")

# Table order: the host-side targets first, the device-built one last.
TARGET_ORDER = ("onnx", "x86", "arm", "rpi4", "rpi5", "jetson", "jetson-orin-nano", "jetson-nano", "cuda")
RUNTIME_LABELS = {
    "onnxruntime": "ONNX Runtime",
    "openvino": "OpenVINO",
    "tflite": "TFLite / LiteRT",
    "tensorrt": "TensorRT",
    "torch": "PyTorch eager",
}
PRECISION_COLORS = {"fp32": "#4C78A8", "fp16": "#9467BD", "int8": "#F58518"}
BASELINE_COLOR = "#8C8C8C"
PYTORCH_TARGET = "pytorch"
ARM_TARGETS = ("arm", "rpi4", "rpi5")  # timed here on the host CPU, not on the board

# Why a row has no latency (shown in the latency cells).
BUILT_ON_DEVICE = "built on device"
NOT_BENCHMARKED = "not benchmarked"
BENCH_FAILED = "bench failed"


# ----------------------------------------------------------------------------------- reading


@dataclass
class BundleInfo:
    """One bundle of the run, with the verify and bench payloads that belong to it."""

    target: str
    root: Path
    manifest: dict
    verify: dict | None = None
    bench: dict | None = None

    @property
    def device_runtime(self) -> str:
        """The runtime the target device runs (tensorrt for jetson), from the device profile."""
        profile = self.manifest.get("profile") or {}
        return str(profile.get("runtime") or "")

    @property
    def built_on_device(self) -> bool:
        return self.device_runtime == "tensorrt"


@dataclass
class RunData:
    """Everything a run folder holds, parsed."""

    root: Path
    card: dict
    metrics: dict | None
    bundles: list[BundleInfo]
    verify_results: list[dict]
    bench_results: list[dict]
    notes: list[str] = field(default_factory=list)


def load_run(run_dir: str | Path) -> RunData:
    """Read a run folder; BadInputError naming every missing or unreadable file."""
    root = Path(run_dir)
    if not root.is_dir():
        raise BadInputError(f"{root} is not a folder: pass the run folder `edgecnn quickstart` wrote")
    manifests = sorted((root / "bundles").glob("*/manifest.json"))
    missing = [name for name, present in (
        ("model_card.json", (root / "model_card.json").is_file()),
        ("bundles/<target>/manifest.json", bool(manifests)),
        ("verify.json", (root / "verify.json").is_file()),
        ("bench.json", (root / "bench.json").is_file()),
    ) if not present]
    if missing:
        raise BadInputError(f"{root} is not a complete quickstart run: missing {', '.join(missing)} "
                            "(make one with edgecnn quickstart --out DIR)")
    card = _read_json(root / "model_card.json")
    metrics_path = root / "model" / "metrics.json"
    metrics = _read_json(metrics_path) if metrics_path.is_file() else None
    verify_results = _results(root / "verify.json")
    bench_results = _results(root / "bench.json")
    bundles = []
    for manifest_path in manifests:
        manifest = _read_json(manifest_path)
        target = str(manifest.get("target") or manifest_path.parent.name)
        bundles.append(BundleInfo(target=target, root=manifest_path.parent, manifest=manifest))
    bundles.sort(key=lambda b: (_target_rank(b.target), b.target))
    run = RunData(root=root, card=card, metrics=metrics, bundles=bundles, verify_results=verify_results,
                  bench_results=bench_results)
    for bundle in bundles:
        bundle.verify = _payload_for(bundle, verify_results)
        bundle.bench = _payload_for(bundle, [p for p in bench_results if not _is_torch_payload(p)])
    return run


def _read_json(path: Path) -> Any:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path} is not valid JSON ({exc}): re-run edgecnn quickstart") from None
    if not isinstance(payload, dict):
        raise BadInputError(f"{path} must hold a JSON object")
    return payload


def _results(path: Path) -> list[dict]:
    payload = _read_json(path)
    results = payload.get("results")
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise BadInputError(f"{path}: 'results' must be a list of objects")
    return results


def _target_rank(target: str) -> int:
    return TARGET_ORDER.index(target) if target in TARGET_ORDER else len(TARGET_ORDER)


def _payload_target(payload: dict) -> str | None:
    """The target a verify or bench payload belongs to: its `target`, else its bundle's."""
    bundle = payload.get("bundle")
    if payload.get("target"):
        return str(payload["target"])
    if isinstance(bundle, dict) and bundle.get("target"):
        return str(bundle["target"])
    return None


def _payload_root(payload: dict) -> str | None:
    bundle = payload.get("bundle")
    if isinstance(bundle, dict):
        bundle = bundle.get("root")
    return str(bundle) if bundle else (str(payload["path"]) if payload.get("path") else None)


def _payload_for(bundle: BundleInfo, payloads: Iterable[dict]) -> dict | None:
    """The payload that measured this bundle: same folder, else same folder name, else same target."""
    payloads = list(payloads)
    try:
        resolved = bundle.root.resolve()
    except OSError:
        resolved = bundle.root
    for payload in payloads:
        root = _payload_root(payload)
        if root and Path(root).expanduser().resolve() in (resolved, resolved / "manifest.json"):
            return payload
    # The run folder may have been moved (a CI artifact): fall back on names.
    for payload in payloads:
        root = _payload_root(payload)
        if root and Path(root).name == bundle.root.name:
            return payload
    for payload in payloads:
        if _payload_target(payload) in (bundle.target, bundle.root.name):
            return payload
    return None


def _is_torch_payload(payload: dict) -> bool:
    artifacts = [a for a in payload.get("artifacts") or [] if isinstance(a, dict)]
    if _payload_target(payload) == PYTORCH_TARGET:
        return True
    return bool(artifacts) and all(a.get("runtime") == "torch" for a in artifacts)


def _batch_one(artifacts: Iterable[dict]) -> list[dict]:
    """The batch-1 rows (or, when a payload has no batch 1, its smallest batch)."""
    artifacts = [a for a in artifacts if isinstance(a, dict) and isinstance(a.get("latency_ms"), dict)]
    if not artifacts:
        return []
    smallest = min(int(a.get("batch") or 1) for a in artifacts)
    return [a for a in artifacts if int(a.get("batch") or 1) == smallest]


def _torch_baseline(run: RunData) -> tuple[dict | None, dict | None]:
    """(bench row, payload) of the PyTorch eager baseline: a dedicated payload first."""
    ordered = sorted(run.bench_results, key=lambda p: not _is_torch_payload(p))
    for payload in ordered:
        for row in _batch_one(payload.get("artifacts") or []):
            if row.get("runtime") == "torch":
                return row, payload
    return None, None


def _match_artifact(entry: dict, artifacts: Iterable[dict]) -> dict | None:
    """The payload row for a manifest entry: by bundle-relative path, else runtime + precision."""
    artifacts = [a for a in artifacts if isinstance(a, dict)]
    path = str(entry.get("path", ""))
    for artifact in artifacts:
        if artifact.get("name") == path or str(artifact.get("path", "")).endswith("/" + path):
            return artifact
    same = [a for a in artifacts if a.get("runtime") == entry.get("runtime")
            and a.get("precision") == entry.get("precision")]
    return same[0] if len(same) == 1 else None


def _error_text(payload: dict | None) -> str | None:
    """The error a failed command left in its payload, if any."""
    if not payload or "error" not in payload:
        return None
    error = payload["error"]
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or "error")
    return str(error)


# ------------------------------------------------------------------------------------- rows


def summary_rows(run_dir: str | Path | RunData) -> list[dict]:
    """One row per target and artifact, plus the PyTorch eager baseline row first.

    Latency is batch 1; speed-up is the PyTorch eager p50 divided by the artifact's p50; top-1,
    drop and agreement come from verify. `passed` is True/False from verify (None: not verified);
    `fastest` marks the fastest artifact that passed verify within its target.
    """
    run = run_dir if isinstance(run_dir, RunData) else load_run(run_dir)
    baseline, _ = _torch_baseline(run)
    base_p50 = _p(baseline, "p50")
    reference_top1 = next((p.get("reference_top1") for p in run.verify_results
                           if p.get("reference_top1") is not None), None)
    rows: list[dict] = []
    torch_row = _empty_row(PYTORCH_TARGET, "torch", "pytorch", "fp32")
    checkpoint = run.root / "model" / "model.pt"
    torch_row.update(
        artifact=str(baseline.get("name")) if baseline else "model/model.pt",
        baseline=True,
        size_mb=_round(baseline.get("size_mb"), 4) if baseline and baseline.get("size_mb") is not None
        else (_round(checkpoint.stat().st_size / 1e6, 4) if checkpoint.is_file() else None),
        top1=reference_top1, drop=0.0 if reference_top1 is not None else None,
        agreement=1.0 if reference_top1 is not None else None, status="reference",
    )
    _fill_latency(torch_row, baseline, base_p50)
    if baseline is None:
        torch_row["latency_note"] = NOT_BENCHMARKED
    rows.append(torch_row)

    for bundle in run.bundles:
        verify_error = _error_text(bundle.verify)
        bench_error = _error_text(bundle.bench)
        verify_artifacts = (bundle.verify or {}).get("artifacts") or []
        bench_artifacts = _batch_one((bundle.bench or {}).get("artifacts") or [])
        target_rows = []
        for entry in bundle.manifest.get("artifacts") or []:
            if not isinstance(entry, dict):
                continue
            runtime = str(entry.get("runtime", ""))
            row = _empty_row(bundle.target, runtime, str(entry.get("format", "")), str(entry.get("precision", "")))
            row["artifact"] = str(entry.get("path", ""))
            row["device_runtime"] = bundle.device_runtime or runtime
            row["size_mb"] = _round(_entry_bytes(entry) / 1e6, 4)
            row["purpose"] = entry.get("purpose")

            verified = _match_artifact(entry, verify_artifacts)
            if verify_error is not None:
                row.update(passed=False, status="FAIL", failed_checks=[f"verify error: {verify_error}"])
            elif verified is None:
                row.update(passed=None, status="not verified")
            else:
                row.update(
                    top1=verified.get("top1"), reference_top1=verified.get("reference_top1"),
                    drop=verified.get("drop"), agreement=verified.get("agreement"),
                    cosine=verified.get("cosine"), max_abs_diff=verified.get("max_abs_diff"),
                    passed=bool(verified.get("passed")), failed_checks=list(verified.get("failed_checks") or []),
                    samples=verified.get("samples"),
                )
                row["status"] = "pass" if row["passed"] else "FAIL"

            measured = _match_artifact(entry, bench_artifacts)
            if bundle.built_on_device and (measured is None or measured.get("runtime") != "tensorrt"):
                # The engine sources would run here in ONNX Runtime: not the device's numbers.
                row["latency_note"] = BUILT_ON_DEVICE
            elif bench_error is not None:
                row["latency_note"] = BENCH_FAILED
            elif measured is None:
                row["latency_note"] = NOT_BENCHMARKED
            else:
                _fill_latency(row, measured, base_p50)
            target_rows.append(row)
        passing = [r for r in target_rows if r["passed"] and r["p50_ms"] is not None]
        if passing:
            min(passing, key=lambda r: r["p50_ms"])["fastest"] = True
        rows.extend(target_rows)
    return rows


def _empty_row(target: str, runtime: str, format: str, precision: str) -> dict:
    return {
        "target": target, "runtime": runtime, "format": format, "precision": precision, "artifact": "",
        "device_runtime": runtime, "size_mb": None,
        "p50_ms": None, "p90_ms": None, "p99_ms": None, "mean_ms": None, "throughput_ips": None,
        "load_ms": None, "peak_rss_mb": None, "iterations": None, "batch": None, "threads": None,
        "speedup": None, "latency_note": None,
        "top1": None, "reference_top1": None, "drop": None, "agreement": None, "cosine": None,
        "max_abs_diff": None, "samples": None, "passed": None, "failed_checks": [], "status": "not verified",
        "fastest": False, "baseline": False, "purpose": None,
    }


def _fill_latency(row: dict, measured: dict | None, base_p50: float | None) -> None:
    if measured is None:
        return
    latency = measured.get("latency_ms") or {}
    row.update(
        p50_ms=_round(latency.get("p50"), 4), p90_ms=_round(latency.get("p90"), 4),
        p99_ms=_round(latency.get("p99"), 4), mean_ms=_round(latency.get("mean"), 4),
        throughput_ips=_round(measured.get("throughput_ips"), 2), load_ms=_round(measured.get("load_ms"), 1),
        peak_rss_mb=_round(measured.get("peak_rss_mb"), 1), iterations=measured.get("iterations"),
        batch=measured.get("batch"), threads=measured.get("threads"),
    )
    p50 = latency.get("p50")
    if base_p50 and p50:
        row["speedup"] = round(base_p50 / p50, 3)


def _p(row: dict | None, key: str) -> float | None:
    if not row:
        return None
    value = (row.get("latency_ms") or {}).get(key)
    return float(value) if isinstance(value, (int, float)) else None


def _entry_bytes(entry: dict) -> int:
    files = entry.get("files") or []
    total = sum(int(f.get("bytes", 0) or 0) for f in files if isinstance(f, dict))
    return total or int(entry.get("bytes") or 0)


def _round(value: Any, digits: int) -> float | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return round(float(value), digits)


# ---------------------------------------------------------------------------- recommendation


def recommendations(rows: list[dict]) -> list[str]:
    """One plain sentence per target: what to ship there, from the numbers alone."""
    lines = []
    for target in dict.fromkeys(r["target"] for r in rows if not r["baseline"]):
        group = [r for r in rows if r["target"] == target]
        runtime = RUNTIME_LABELS.get(group[0]["device_runtime"], group[0]["device_runtime"])
        fastest = next((r for r in group if r["fastest"]), None)
        passed = [r for r in group if r["passed"]]
        failed = [r for r in group if r["passed"] is False]
        if fastest is not None:
            text = (f"{target} ({runtime}): ship {fastest['precision']} `{fastest['artifact']}` — "
                    f"p50 {_fmt_ms(fastest['p50_ms'])} ms")
            if fastest["speedup"] is not None:
                text += f", {_fmt_speedup(fastest['speedup'])} PyTorch eager"
            text += f", {_fmt_mb(fastest['size_mb'])} MB"
            if fastest["top1"] is not None:
                text += f", top-1 {fastest['top1']:.2f} % (drop {_fmt_drop(fastest['drop'])} pts)"
            text += "."
            others = [r for r in passed if r is not fastest and r["p50_ms"] is not None]
            if others:
                runner_up = min(others, key=lambda r: r["p50_ms"])
                ratio = runner_up["p50_ms"] / fastest["p50_ms"] if fastest["p50_ms"] else None
                if ratio is not None:
                    text += f" {runner_up['precision']} is {ratio:.2f}× slower."
        elif passed and all(r["latency_note"] == BUILT_ON_DEVICE for r in group):
            precisions = ", ".join(dict.fromkeys(r["precision"] for r in passed))
            text = (f"{target} ({runtime}): the engine is built on the device; its sources ({precisions}) passed "
                    "verify here. No latency was measured on this machine: run edgecnn bench there.")
        elif passed:
            text = f"{target} ({runtime}): {len(passed)} artifact(s) passed verify, none was benchmarked."
        else:
            text = f"{target} ({runtime}): do not ship — no artifact passed verify."
        if failed:
            text += " Failed verify: " + "; ".join(_failure_text(r) for r in failed) + "."
        lines.append(text)
    return lines


def _failure_text(row: dict) -> str:
    checks = ", ".join(row["failed_checks"]) or "failed"
    measured = []
    if row["drop"] is not None:
        measured.append(f"top-1 drop {_fmt_drop(row['drop'])} pts")
    if row["agreement"] is not None:
        measured.append(f"agreement {_fmt_agreement(row['agreement'])}")
    return f"{row['precision']} (failed {checks}" + (f"; {', '.join(measured)}" if measured else "") + ")"


def overall_line(rows: list[dict]) -> str | None:
    """The fastest artifact that passed verify on this machine, across targets."""
    candidates = [r for r in rows if r["fastest"]]
    if not candidates:
        return None
    best = min(candidates, key=lambda r: r["p50_ms"])
    text = (f"Fastest verified artifact on this machine: {best['target']} "
            f"{RUNTIME_LABELS.get(best['runtime'], best['runtime'])} {best['precision']}, "
            f"p50 {_fmt_ms(best['p50_ms'])} ms")
    if best["speedup"] is not None:
        text += f" ({_fmt_speedup(best['speedup'])} PyTorch eager)"
    if best["target"] in ARM_TARGETS:
        text += " — this machine's CPU running the .tflite file, not an ARM board"
    return text + "."


# ------------------------------------------------------------------------------- formatting


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _fmt_speedup(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}×" if value >= 10 else f"{value:.2f}×"


def _fmt_mb(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _fmt_pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} %"


def _fmt_drop(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"


def _fmt_agreement(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def human_count(value: float | None) -> str:
    """4_231_976 -> '4.23 M'."""
    if value is None:
        return "–"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f}"


def _artifact_label(row: dict) -> str:
    if row["baseline"]:
        return "PyTorch eager fp32"
    if row["device_runtime"] != row["runtime"]:
        # A Jetson bundle's ONNX graph: what the device builds its engine from.
        device = RUNTIME_LABELS.get(row["device_runtime"], row["device_runtime"])
        return f"{device} {row['precision']} (engine source, {row['format']})"
    return f"{RUNTIME_LABELS.get(row['runtime'], row['runtime'])} {row['precision']}"


# ----------------------------------------------------------------------------------- terminal


def print_summary(rows: list[dict], console) -> None:
    """The rows as a rich table (fastest passing artifact per target in green, failures in red)."""
    from rich import box
    from rich.table import Table

    table = Table(title="edgecnn quickstart: what to ship", title_justify="left", box=box.SIMPLE_HEAD,
                  caption="latency: batch 1, ms; speed-up: PyTorch eager p50 / p50; drop: top-1 points lost vs "
                          "PyTorch fp32; ★ fastest artifact that passed verify on its target",
                  caption_justify="left")
    for header, justify in (("target", "left"), ("artifact", "left"), ("size MB", "right"), ("p50", "right"),
                            ("p90", "right"), ("p99", "right"), ("speed-up", "right"), ("top-1", "right"),
                            ("drop", "right"), ("agree", "right"), ("verify", "left")):
        table.add_column(header, justify=justify, no_wrap=header != "artifact")
    previous = None
    for row in rows:
        if previous is not None and row["target"] != previous:
            table.add_section()
        latency = [_fmt_ms(row["p50_ms"]), _fmt_ms(row["p90_ms"]), _fmt_ms(row["p99_ms"])]
        speedup = f"[dim]{row['latency_note']}[/]" if row["latency_note"] else _fmt_speedup(row["speedup"])
        if row["status"] == "FAIL":
            verdict = "[bold red]FAIL[/] " + ", ".join(row["failed_checks"])
        elif row["status"] == "pass":
            verdict = "[green]pass[/]" + (" [bold green]★ fastest[/]" if row["fastest"] else "")
        else:
            verdict = f"[dim]{row['status']}[/]"
        style = "bold" if row["fastest"] else ("dim" if row["baseline"] else None)
        table.add_row(
            row["target"] if row["target"] != previous else "", _artifact_label(row), _fmt_mb(row["size_mb"]),
            *latency, speedup, _fmt_pct(row["top1"]), _fmt_drop(row["drop"]),
            _fmt_agreement(row["agreement"]), verdict, style=style,
        )
        previous = row["target"]
    console.print(table)
    for line in recommendations(rows):
        console.print(f"• {line}", highlight=False)


# -------------------------------------------------------------------------------------- plots


def _figure(width: float, height: float):
    """A matplotlib Figure outside pyplot: no global state, no backend switch in the caller's process."""
    from edgecnn.errors import require

    require("matplotlib", "report", "the report's plots")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110)


def _png_data_uri(fig) -> str:
    buffer = io.BytesIO()
    # No Software metadata: the page should carry no URL at all, not even inside an image.
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def training_curve_png(metrics: dict | None) -> str | None:
    """Loss and top-1 per epoch (two panels) as a data: URI; None without a history."""
    history = [h for h in (metrics or {}).get("history") or [] if isinstance(h, dict) and "epoch" in h]
    if not history:
        return None
    epochs = [h["epoch"] for h in history]
    fig = _figure(10.0, 3.2)
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [h.get("train_loss") for h in history], marker="o", markersize=3, color="#4C78A8",
                 label="train loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss (label-smoothed CE)")
    loss_ax.set_title("training loss", fontsize=10)
    acc_ax.plot(epochs, [h.get("train_top1") for h in history], marker="o", markersize=3, color="#BBBBBB",
                label="train top-1 (augmented)")
    acc_ax.plot(epochs, [h.get("val_top1") for h in history], marker="o", markersize=3, color="#F58518",
                label="validation top-1")
    best = (metrics or {}).get("best_epoch")
    best_row = next((h for h in history if h["epoch"] == best), None)
    if best_row is not None and best_row.get("val_top1") is not None:
        acc_ax.scatter([best], [best_row["val_top1"]], s=80, facecolors="none", edgecolors="#2CA02C", zorder=3,
                       linewidths=1.6, label=f"kept: epoch {best} ({best_row['val_top1']:.1f} %)")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("top-1 (%)")
    acc_ax.set_ylim(0, 101)
    acc_ax.set_title("accuracy", fontsize=10)
    acc_ax.legend(fontsize=8, loc="lower right")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
    fig.tight_layout()
    return _png_data_uri(fig)


def latency_png(rows: list[dict]) -> str | None:
    """Horizontal p50 bars with p90–p99 whiskers, PyTorch included, as a data: URI."""
    measured = [r for r in rows if r["p50_ms"] is not None]
    if not measured:
        return None
    fig = _figure(10.0, 0.9 + 0.42 * len(measured))
    ax = fig.subplots()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    labels = [("PyTorch eager" if r["baseline"] else
               f"{r['target']} · {RUNTIME_LABELS.get(r['runtime'], r['runtime'])}") + f" {r['precision']}"
              for r in measured]
    ys = list(range(len(measured)))[::-1]  # first row at the top
    for y, row in zip(ys, measured):
        color = BASELINE_COLOR if row["baseline"] else PRECISION_COLORS.get(row["precision"], "#54A24B")
        failed = row["passed"] is False
        ax.barh(y, row["p50_ms"], height=0.62, color=color, alpha=0.45 if failed else 1.0,
                hatch="//" if failed else None, edgecolor="#D62728" if failed else color, zorder=2)
        if row["p90_ms"] is not None and row["p99_ms"] is not None:
            # A faint line from the bar to its whisker, so the eye joins the two.
            ax.hlines(y, row["p50_ms"], row["p90_ms"], color="#999999", linewidth=0.8, linestyle=":", zorder=3)
            ax.hlines(y, row["p90_ms"], row["p99_ms"], color="black", linewidth=1.3, zorder=3)
            ax.vlines([row["p90_ms"], row["p99_ms"]], y - 0.13, y + 0.13, color="black", linewidth=1.3, zorder=3)
        end = max(v for v in (row["p50_ms"], row["p99_ms"]) if v is not None)
        text = f"{_fmt_ms(row['p50_ms'])} ms"
        if row["speedup"] is not None and not row["baseline"]:
            text += f"  ({_fmt_speedup(row['speedup'])})"
        if failed:
            text += "  FAIL"
        ax.annotate(text, (end, y), xytext=(5, 0), textcoords="offset points", va="center", fontsize=8,
                    color="#D62728" if failed else "black", fontweight="bold" if row["fastest"] else "normal")
    ax.set_yticks(ys, labels, fontsize=9)
    for tick, row in zip(ax.get_yticklabels(), measured):
        if row["fastest"]:
            tick.set_fontweight("bold")
    low = min(r["p50_ms"] for r in measured)
    high = max(max(r["p50_ms"], r["p99_ms"] or 0) for r in measured)
    log_scale = low > 0 and high / low > 30
    if log_scale:
        ax.set_xscale("log")
        ax.set_xlim(low / 2, high * 6)
    else:
        ax.set_xlim(0, high * 1.3)
    base = next((r for r in measured if r["baseline"]), None)
    if base is not None:
        ax.axvline(base["p50_ms"], color=BASELINE_COLOR, linestyle="--", linewidth=1, zorder=1)
    ax.set_xlabel("latency, batch 1 (ms" + (", log scale)" if log_scale else ")"))
    ax.grid(axis="x", alpha=0.3, zorder=0)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    precisions = [p for p in PRECISION_COLORS if any(r["precision"] == p and not r["baseline"] for r in measured)]
    handles = [Patch(color=BASELINE_COLOR, label="PyTorch eager (dashed line: its p50)")]
    handles += [Patch(color=PRECISION_COLORS[p], label=p) for p in precisions]
    handles.append(Line2D([], [], color="black", linewidth=1.3, label="p90–p99"))
    if any(r["passed"] is False for r in measured):
        handles.append(Patch(facecolor="white", edgecolor="#D62728", hatch="//", label="failed verify"))
    ax.legend(handles=handles, fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=len(handles),
              frameon=False)
    fig.tight_layout()
    return _png_data_uri(fig)


# --------------------------------------------------------------------------------------- HTML


_CSS = """
:root { --ink:#1f2328; --muted:#59636e; --line:#d1d9e0; --soft:#f6f8fa; --good:#1a7f37; --goodbg:#dafbe1;
        --bad:#cf222e; --badbg:#ffebe9; --accent:#0969da; }
* { box-sizing: border-box; }
body { margin:0; background:#eef1f4; color:var(--ink);
       font:14px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width:1180px; margin:24px auto; padding:28px 36px; background:#fff; border-radius:10px;
       box-shadow:0 1px 3px rgba(0,0,0,.08); }
h1 { font-size:24px; margin:0 0 2px; }
h2 { font-size:17px; margin:30px 0 10px; padding-bottom:4px; border-bottom:1px solid var(--line); }
.sub { color:var(--muted); margin:0 0 18px; }
.verdict { border-left:5px solid var(--good); background:var(--goodbg); padding:12px 18px; border-radius:6px; }
.verdict.warn { border-left-color:#bf8700; background:#fff8c5; }
.verdict.bad { border-left-color:var(--bad); background:var(--badbg); }
.verdict h2 { border:0; margin:0 0 6px; padding:0; font-size:16px; }
.verdict ul { margin:6px 0 0; padding-left:20px; }
.verdict li { margin:3px 0; }
.verdict .overall { font-weight:600; margin:0; }
code { font:12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background:var(--soft);
       padding:1px 4px; border-radius:4px; }
.cards { display:grid; grid-template-columns:repeat(4, 1fr); gap:10px; }
.card { border:1px solid var(--line); border-radius:8px; padding:8px 12px; }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.03em; }
.card .v { font-size:18px; font-weight:600; }
.card .d { color:var(--muted); font-size:12px; }
table.results { border-collapse:collapse; width:100%; font-size:13px; font-variant-numeric:tabular-nums; }
table.results th { text-align:right; font-weight:600; color:var(--muted); border-bottom:2px solid var(--line);
                   padding:6px 8px; white-space:nowrap; }
table.results td { text-align:right; padding:6px 8px; border-bottom:1px solid #eaeef2; white-space:nowrap; }
table.results th.l, table.results td.l { text-align:left; }
table.results td.target { font-weight:600; vertical-align:top; border-right:1px solid #eaeef2;
                          background:#fff; }
table.results tr.group td { border-top:2px solid var(--line); }
table.results tr.best td:not(.target) { background:var(--goodbg); }
table.results tr.fail td:not(.target) { background:var(--badbg); }
table.results tr.baseline td { color:var(--muted); background:var(--soft); }
td .path { display:block; color:var(--muted); font-size:11px; }
.badge { display:inline-block; padding:0 7px; border-radius:10px; font-size:12px; font-weight:600; }
.badge.pass { color:var(--good); border:1px solid var(--good); }
.badge.fail { color:#fff; background:var(--bad); }
.badge.best { color:#fff; background:var(--good); margin-left:4px; }
.badge.muted { color:var(--muted); border:1px solid var(--line); }
.why { display:block; color:var(--bad); font-size:11px; white-space:normal; text-align:left; }
.na { color:var(--muted); font-style:italic; }
.caption { color:var(--muted); font-size:12px; margin:6px 0 0; }
img.plot { display:block; max-width:100%; height:auto; margin:6px auto; }
dl.env { display:grid; grid-template-columns:210px 1fr; gap:4px 16px; margin:0; }
dl.env dt { color:var(--muted); }
dl.env dd { margin:0; }
.notes li { color:var(--muted); }
footer { color:var(--muted); font-size:12px; margin-top:28px; }
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _code_spans(text: str) -> str:
    """Escape `text`, turning `backticked` parts into <code>."""
    parts = str(text).split("`")
    return "".join(f"<code>{_e(p)}</code>" if i % 2 else _e(p) for i, p in enumerate(parts))


def _card(key: str, value: str, detail: str = "", title: str = "") -> str:
    tip = f' title="{_e(title)}"' if title else ""
    return (f'<div class="card"{tip}><div class="k">{_e(key)}</div><div class="v">{_e(value)}</div>'
            f'<div class="d">{_e(detail)}</div></div>')


def _model_card_html(run: RunData) -> str:
    card, metrics = run.card, run.metrics or {}
    shape = card.get("input_size") or (metrics.get("preprocess") or {}).get("input_shape") or []
    summary = metrics.get("data_summary") or {}
    split = ", ".join(f"{summary[k]} {k}" for k in ("train", "val", "test") if k in summary)
    test_top1 = card.get("test_top1", metrics.get("test_top1"))
    config = metrics.get("config") or {}
    epochs = metrics.get("epochs_completed") or config.get("epochs")
    seconds = metrics.get("train_seconds")
    trained = f"{epochs} epochs" if epochs else "–"
    threads = metrics.get("threads")
    where = f"{metrics.get('device', '')} × {threads} thread{'s' if threads != 1 else ''}" if threads else ""
    detail = ", ".join(x for x in (f"{seconds:.0f} s" if isinstance(seconds, (int, float)) else "", where) if x)
    params, macs = card.get("params"), card.get("macs")
    best = metrics.get("best_epoch")
    tiles = [
        _card("model", str(card.get("name", "?")), str(card.get("family", ""))),
        _card("parameters", human_count(params), f"{params:,}" if isinstance(params, int) else "",
              "trainable and frozen parameters"),
        _card("multiply-adds", human_count(macs), "per image, conv + linear",
              f"{macs:,}" if isinstance(macs, int) else ""),
        _card("input", "×".join(str(v) for v in shape) or "–", "C×H×W, float32 NCHW"),
        _card("classes", str(card.get("num_classes", "–"))),
        _card("data", str(card.get("data") or metrics.get("data") or "–"), split),
        _card("test top-1", _fmt_pct(test_top1), f"PyTorch fp32, best epoch {best}" if best else "PyTorch fp32"),
        _card("training", trained, detail),
    ]
    return '<div class="cards">' + "".join(tiles) + "</div>"


def _results_table_html(rows: list[dict]) -> str:
    head = ("<tr><th class='l'>target</th><th class='l'>artifact</th><th>size MB</th><th>p50 ms</th>"
            "<th>p90 ms</th><th>p99 ms</th><th>speed-up</th><th>top-1</th><th>drop</th><th>agreement</th>"
            "<th class='l'>verify</th></tr>")
    body = []
    spans: dict[str, int] = {}
    for row in rows:
        spans[row["target"]] = spans.get(row["target"], 0) + 1
    previous = None
    for row in rows:
        classes = []
        if row["target"] != previous:
            classes.append("group")
        if row["fastest"]:
            classes.append("best")
        if row["status"] == "FAIL":
            classes.append("fail")
        if row["baseline"]:
            classes.append("baseline")
        cells = []
        if row["target"] != previous:
            label = "PyTorch" if row["baseline"] else row["target"]
            runtime = "" if row["baseline"] else RUNTIME_LABELS.get(row["device_runtime"], row["device_runtime"])
            cells.append(f'<td class="l target" rowspan="{spans[row["target"]]}">{_e(label)}'
                         f'<span class="path">{_e(runtime)}</span></td>')
        cells.append(f'<td class="l">{_e(_artifact_label(row))}<span class="path">{_e(row["artifact"])}</span></td>')
        cells.append(f"<td>{_fmt_mb(row['size_mb'])}</td>")
        if row["latency_note"]:
            cells.append(f'<td colspan="3" class="na">{_e(row["latency_note"])}</td>')
        else:
            cells.extend(f"<td>{_fmt_ms(row[k])}</td>" for k in ("p50_ms", "p90_ms", "p99_ms"))
        speedup = "1.00× (baseline)" if row["baseline"] and row["p50_ms"] is not None else _fmt_speedup(row["speedup"])
        cells.append(f"<td>{_e(speedup)}</td>")
        cells.append(f"<td>{_fmt_pct(row['top1'])}</td>")
        cells.append(f"<td>{_e(_fmt_drop(row['drop']))}</td>")
        cells.append(f"<td>{_fmt_agreement(row['agreement'])}</td>")
        if row["status"] == "FAIL":
            verdict = ('<span class="badge fail">FAIL</span>'
                       f'<span class="why">{_e(", ".join(row["failed_checks"]))}</span>')
        elif row["status"] == "pass":
            verdict = '<span class="badge pass">pass</span>' + (
                '<span class="badge best">★ fastest</span>' if row["fastest"] else "")
        else:
            verdict = f'<span class="badge muted">{_e(row["status"])}</span>'
        cells.append(f'<td class="l">{verdict}</td>')
        body.append(f'<tr class="{" ".join(classes)}">' + "".join(cells) + "</tr>")
        previous = row["target"]
    return f'<table class="results"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


def _environment(run: RunData, rows: list[dict]) -> list[tuple[str, str]]:
    """(label, value) pairs: where and how the numbers were taken."""
    payloads = [p for p in run.bench_results if isinstance(p.get("environment"), dict)]
    env = next((p["environment"] for p in payloads), {})
    settings = next((p["settings"] for p in payloads if isinstance(p.get("settings"), dict)), {})
    items: list[tuple[str, str]] = []
    if env:
        items.append(("CPU", str(env.get("cpu_model", "?"))))
        items.append(("cores", f"{env.get('physical_cores', '?')} physical, {env.get('logical_cpus', '?')} logical, "
                               f"{env.get('usable_cpus', '?')} usable by this process"))
        items.append(("system", f"{env.get('system', '?')}, Python {env.get('python', '?')}, "
                                f"numpy {env.get('numpy', '?')}, edgecnn {env.get('edgecnn', '?')}"))
        loads = [p["environment"].get("loadavg_before") for p in payloads if p["environment"].get("loadavg_before")]
        loads += [p["environment"].get("loadavg_after") for p in payloads if p["environment"].get("loadavg_after")]
        if loads:
            peak = max(v[0] for v in loads)
            busy = isinstance(env.get("usable_cpus"), int) and peak > env["usable_cpus"]
            items.append(("load average (1 min)", f"{min(v[0] for v in loads):.2f} – {peak:.2f} during the benchmarks"
                          + (" — the machine was busy: compare ratios, not absolute numbers" if busy else "")))
    threads = sorted({r["threads"] for r in rows if r["threads"] is not None})
    if threads:
        items.append(("threads used", ", ".join(map(str, threads)) + " per runtime (intra-op), batch 1"))
    versions: dict[str, str] = {}
    for payload in payloads:
        for name, version in (payload["environment"].get("runtime_versions") or {}).items():
            versions.setdefault(RUNTIME_LABELS.get(name, name), str(version).split("-")[0])
    if versions:
        items.append(("runtime versions (bench)", ", ".join(f"{k} {v}" for k, v in versions.items())))
    tools = next((b.manifest.get("tools") for b in run.bundles if isinstance(b.manifest.get("tools"), dict)), None)
    if tools:
        items.append(("export tools", ", ".join(f"{k} {v}" for k, v in tools.items() if v)))
    if settings:
        if settings.get("iters") is not None:
            runs = f"{settings['iters']} timed runs"
        else:
            runs = (f"timed runs for at least {settings.get('min_time_s', '?')} s "
                    f"(and at least {settings.get('min_iters', '?')} runs)")
        counts = [r["iterations"] for r in rows if isinstance(r["iterations"], int)]
        if counts:
            runs += f"; {min(counts):,}–{max(counts):,} runs per artifact"
        items.append(("timing method", f"{settings.get('warmup', '?')} warm-up runs, then {runs}; "
                                       f"{settings.get('timer', 'perf_counter_ns')}"))
        items.append(("percentiles", f"p50 / p90 / p99, {settings.get('percentiles', 'numpy.percentile')}"))
        items.append(("isolation", str(settings.get("isolation", "one child process per artifact"))))
    verify = next((p for p in run.verify_results if p.get("samples")), None)
    if verify:
        source = "PyTorch fp32 re-run live" if verify.get("reference_source") == "pytorch-live" else \
            "PyTorch fp32 logits stored at export"
        used = sorted({(a.get("precision"), json.dumps(a.get("thresholds"), sort_keys=True))
                       for p in run.verify_results for a in p.get("artifacts") or [] if isinstance(a, dict)})
        limits = "; ".join(f"{precision}: {_describe_limits(json.loads(t))}" for precision, t in used if t != "null")
        items.append(("accuracy check", f"{verify['samples']} samples ({verify.get('samples_source', '?')}); "
                                        f"reference: {source}" + (f"; limits — {limits}" if limits else "")))
    return items


def _describe_limits(thresholds: dict | None) -> str:
    if not thresholds:
        return "none"
    parts = []
    for name, value in thresholds.items():
        if value is None:
            continue
        if name == "min_agreement":
            parts.append(f"agreement ≥ {value * 100:g} %")
        elif name == "max_drop":
            parts.append(f"drop ≤ {value:g} pts")
        elif name == "min_cosine":
            parts.append(f"cosine ≥ {value:g}")
        else:
            parts.append(f"{name.replace('_', ' ')} {value:g}")
    return ", ".join(parts) or "none"


def _notes(run: RunData, rows: list[dict]) -> list[str]:
    notes = []
    if any(r["target"] in ARM_TARGETS and r["p50_ms"] is not None for r in rows):
        notes.append("The arm latencies are this machine's CPU running the .tflite files, not a Raspberry Pi: "
                     "copy the bundle to the board and run `edgecnn bench` there for its numbers.")
    for bundle in run.bundles:
        for line in bundle.manifest.get("next_steps") or []:
            notes.append(f"{bundle.target}: {line}")
        for line in bundle.manifest.get("warnings") or []:
            notes.append(f"{bundle.target} (warning): {line}")
        for payload in (bundle.verify, bundle.bench):
            for line in (payload or {}).get("notes") or []:
                notes.append(f"{bundle.target}: {line}")
            error = _error_text(payload)
            if error:
                notes.append(f"{bundle.target}: {error}")
    return list(dict.fromkeys(notes))


def render_html(run: RunData, rows: list[dict]) -> str:
    """The whole report page as one string (no external reference)."""
    card = run.card
    title = f"{card.get('name', 'model')} on {card.get('data') or (run.metrics or {}).get('data') or '?'}"
    lines = recommendations(rows)
    overall = overall_line(rows)
    failed = [r for r in rows if r["status"] == "FAIL"]
    targets = [r["target"] for r in rows if not r["baseline"]]
    # Red when a target has nothing that passed verify; amber when some artifact failed but every
    # target still has one to ship.
    stranded = [t for t in dict.fromkeys(targets) if not any(r["passed"] for r in rows if r["target"] == t)]
    tone = "bad" if stranded else ("warn" if failed else "")
    if stranded:
        verdict_head = f"What to ship — nothing passed verify for {', '.join(stranded)}"
    elif failed:
        verdict_head = f"What to ship — {len(failed)} artifact(s) failed verify; every target has one that passed"
    else:
        verdict_head = "What to ship — every artifact passed verify"

    recommend = "".join(f"<li>{_code_spans(line)}</li>" for line in lines)
    curve = training_curve_png(run.metrics)
    latency = latency_png(rows)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>edgecnn report: {_e(title)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>edgecnn report: {_e(title)}</h1>",
        f'<p class="sub">Every artifact exported for each target, checked against PyTorch and timed on this '
        f"machine. Built {created} from <code>{_e(run.root)}</code>.</p>",
        f'<section class="verdict {tone}"><h2>{_e(verdict_head)}</h2>',
        f'<p class="overall">{_e(overall)}</p>' if overall else "",
        f"<ul>{recommend}</ul></section>",
        "<h2>Model</h2>",
        _model_card_html(run),
        "<h2>Results per target and precision</h2>",
        _results_table_html(rows),
        '<p class="caption">Latency per image at batch 1, in milliseconds, on this machine. Speed-up: PyTorch '
        "eager p50 ÷ the artifact's p50. top-1 on the held-out test images; drop: points lost against PyTorch "
        "fp32 on the same images (negative: gained); agreement: share of images whose top-1 class matches "
        "PyTorch's. Green: the fastest artifact that passed verify on its target. Red: failed verify.</p>",
        "<h2>Latency</h2>",
        f'<img class="plot" alt="p50 latency per artifact with p90-p99 whiskers" src="{latency}">' if latency
        else '<p class="na">No latency was measured.</p>',
        '<p class="caption">Bars: p50; whiskers: p90 to p99; the label gives p50 and the speed-up over '
        "PyTorch eager. Bold: the fastest artifact that passed verify on its target.</p>",
        "<h2>Training</h2>",
        f'<img class="plot" alt="training loss and accuracy per epoch" src="{curve}">' if curve
        else '<p class="na">No training history (model/metrics.json) in this run.</p>',
        "<h2>Environment and method</h2>",
        '<dl class="env">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in _environment(run, rows))
        + "</dl>",
    ]
    notes = _notes(run, rows)
    if notes:
        parts.append("<h2>Notes</h2><ul class='notes'>" + "".join(f"<li>{_code_spans(n)}</li>" for n in notes)
                     + "</ul>")
    parts.append("<footer>Rebuild this page with <code>edgecnn report "
                 f"{_e(run.root)}</code>; every number is in <code>{SUMMARY_NAME}</code>, "
                 "<code>verify.json</code> and <code>bench.json</code> beside it.</footer>")
    parts.append("</main></body></html>")
    return "\n".join(p for p in parts if p) + "\n"


def write_report(run_dir: str | Path) -> Path:
    """Write RUN_DIR/summary.json and RUN_DIR/report.html (atomically); return the report's path."""
    run = load_run(run_dir)
    rows = summary_rows(run)
    summary = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": run.card,
        "test_top1": run.card.get("test_top1", (run.metrics or {}).get("test_top1")),
        "baseline": next((r for r in rows if r["baseline"]), None),
        "recommendations": recommendations(rows),
        "fastest": overall_line(rows),
        "passed": all(r["passed"] is not False for r in rows),
        "rows": rows,
    }
    page = render_html(run, rows)
    write_text_atomic(run.root / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    return write_text_atomic(run.root / REPORT_NAME, page)




__all__ = ["load_run", "print_summary", "recommendations", "render_html", "summary_rows", "write_report"]
