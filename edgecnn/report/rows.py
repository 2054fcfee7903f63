"""Summary rows (one per target and artifact, the eager baseline first) and what to ship on each target.

Latency is batch 1; speed-up is the baseline's p50 divided by the artifact's; top-1, drop and
agreement come from verify. The sentences and the terminal table are made from the rows alone.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.backends import label
from edgecnn.formatting import (
    format_mb, format_ms, format_percent, format_points, format_share, format_speedup,
)
from edgecnn.backends import baseline_backend
from edgecnn.report.load import (
    PYTORCH_TARGET, BundleInfo, RunData, backend_of, baseline_measurement, batch_one,
    error_text, load_run, match_artifact, rounded,
)

# Why a row has no latency (shown in the latency cells).
BUILT_ON_DEVICE = "built on device"
NOT_BENCHMARKED = "not benchmarked"
BENCH_FAILED = "bench failed"


def summary_rows(run_dir: str | Path | RunData) -> list[dict]:
    """One row per target and artifact, plus the eager baseline row first.

    `passed` is True/False from verify (None: not verified); `fastest` marks the fastest artifact
    that passed verify within its target.
    """
    run = run_dir if isinstance(run_dir, RunData) else load_run(run_dir)
    baseline, _ = baseline_measurement(run)
    base_p50 = _p50(baseline)
    rows = [_baseline_row(run, baseline, base_p50)]
    for bundle in run.bundles:
        target_rows = _bundle_rows(bundle, base_p50)
        passing = [r for r in target_rows if r["passed"] and r["p50_ms"] is not None]
        if passing:
            min(passing, key=lambda r: r["p50_ms"])["fastest"] = True
        rows.extend(target_rows)
    return rows


def _baseline_row(run: RunData, baseline: dict | None, base_p50: float | None) -> dict:
    reference_top1 = next((p.get("reference_top1") for p in run.verify_results
                           if p.get("reference_top1") is not None), None)
    eager = baseline_backend()
    row = _empty_row(PYTORCH_TARGET, eager.name, eager.format, "fp32")
    checkpoint = run.root / "model" / "model.pt"
    if baseline and baseline.get("size_mb") is not None:
        size_mb = rounded(baseline.get("size_mb"), 4)
    else:
        size_mb = rounded(checkpoint.stat().st_size / 1e6, 4) if checkpoint.is_file() else None
    row.update(
        artifact=str(baseline.get("name")) if baseline else "model/model.pt", baseline=True, size_mb=size_mb,
        top1=reference_top1, drop=0.0 if reference_top1 is not None else None,
        agreement=1.0 if reference_top1 is not None else None, status="reference",
    )
    _fill_latency(row, baseline, base_p50)
    if baseline is None:
        row["latency_note"] = NOT_BENCHMARKED
    return row


def _bundle_rows(bundle: BundleInfo, base_p50: float | None) -> list[dict]:
    """The rows of one bundle's artifacts, with verify's verdict and bench's latency."""
    verify_error = error_text(bundle.verify)
    bench_error = error_text(bundle.bench)
    verify_artifacts = (bundle.verify or {}).get("artifacts") or []
    bench_artifacts = batch_one((bundle.bench or {}).get("artifacts") or [])
    rows = []
    for entry in bundle.manifest.get("artifacts") or []:
        if not isinstance(entry, dict):
            continue
        runtime = str(entry.get("runtime", ""))
        row = _empty_row(bundle.target, runtime, str(entry.get("format", "")), str(entry.get("precision", "")))
        row.update(artifact=str(entry.get("path", "")), device_runtime=bundle.device_runtime or runtime,
                   size_mb=rounded(_entry_bytes(entry) / 1e6, 4), purpose=entry.get("purpose"),
                   layers_in_float=int(entry.get("layers_in_float") or 0),
                   int8_sensitivity=(entry.get("int8") or {}).get("sensitivity") or None)
        if verify_error is not None:
            row.update(passed=False, status="FAIL", failed_checks=[f"verify error: {verify_error}"])
        else:
            _fill_verify(row, match_artifact(entry, verify_artifacts))
        measured = match_artifact(entry, bench_artifacts)
        if bundle.built_on_device and (measured is None or measured.get("runtime") != bundle.device_runtime):
            # The engine's sources would run here in another runtime: not the device's numbers.
            row["latency_note"] = BUILT_ON_DEVICE
        elif bench_error is not None:
            row["latency_note"] = BENCH_FAILED
        elif measured is None:
            row["latency_note"] = NOT_BENCHMARKED
        else:
            _fill_latency(row, measured, base_p50)
        rows.append(row)
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
        "fastest": False, "baseline": False, "purpose": None, "compute_precision": None, "precision_label": None,
        "tuned_from": None, "layers_in_float": 0, "int8_sensitivity": None,
    }


def _fill_verify(row: dict, verified: dict | None) -> None:
    if verified is None:
        row.update(passed=None, status="not verified")
        return
    row.update(
        top1=verified.get("top1"), reference_top1=verified.get("reference_top1"),
        drop=verified.get("drop"), agreement=verified.get("agreement"),
        cosine=verified.get("cosine"), max_abs_diff=verified.get("max_abs_diff"),
        passed=bool(verified.get("passed")), failed_checks=list(verified.get("failed_checks") or []),
        samples=verified.get("samples"),
    )
    row["status"] = "pass" if row["passed"] else "FAIL"


def _fill_latency(row: dict, measured: dict | None, base_p50: float | None) -> None:
    if measured is None:
        return
    latency = measured.get("latency_ms") or {}
    row.update(
        p50_ms=rounded(latency.get("p50"), 4), p90_ms=rounded(latency.get("p90"), 4),
        p99_ms=rounded(latency.get("p99"), 4), mean_ms=rounded(latency.get("mean"), 4),
        throughput_ips=rounded(measured.get("throughput_ips"), 2), load_ms=rounded(measured.get("load_ms"), 1),
        peak_rss_mb=rounded(measured.get("peak_rss_mb"), 1), iterations=measured.get("iterations"),
        batch=measured.get("batch"), threads=measured.get("threads"),
        compute_precision=measured.get("compute_precision"), precision_label=measured.get("precision_label"),
        tuned_from=measured.get("tuned_from"),
    )
    p50 = latency.get("p50")
    if base_p50 and p50:
        row["speedup"] = round(base_p50 / p50, 3)


def _p50(row: dict | None) -> float | None:
    if not row:
        return None
    value = (row.get("latency_ms") or {}).get("p50")
    return float(value) if isinstance(value, (int, float)) else None


def _entry_bytes(entry: dict) -> int:
    files = entry.get("files") or []
    total = sum(int(f.get("bytes", 0) or 0) for f in files if isinstance(f, dict))
    return total or int(entry.get("bytes") or 0)


def emulation_note(row: dict) -> str:
    """What the row's latency really measured, when it ran on this machine instead of the device."""
    if row["baseline"] or row["p50_ms"] is None:
        return ""
    backend = backend_of(row["device_runtime"])
    return backend.note_when_emulated if backend else ""


# ---------------------------------------------------------------------------- what to ship


def recommendations(rows: list[dict]) -> list[str]:
    """One plain sentence per target: what to ship there, from the numbers alone."""
    lines = []
    for target in dict.fromkeys(r["target"] for r in rows if not r["baseline"]):
        group = [r for r in rows if r["target"] == target]
        runtime = label(group[0]["device_runtime"])
        fastest = next((r for r in group if r["fastest"]), None)
        passed = [r for r in group if r["passed"]]
        failed = [r for r in group if r["passed"] is False]
        if fastest is not None:
            text = f"{target} ({runtime}): " + _ship_text(fastest, passed)
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


def _ship_text(fastest: dict, passed: list[dict]) -> str:
    """'ship int8 `path` — p50 …, top-1 … .' plus how much slower the runner-up is."""
    text = f"ship {fastest['precision']} `{fastest['artifact']}` — p50 {format_ms(fastest['p50_ms'])} ms"
    if fastest["speedup"] is not None:
        text += f", {format_speedup(fastest['speedup'])} {baseline_backend().label}"
    text += f", {format_mb(fastest['size_mb'])} MB"
    if fastest["top1"] is not None:
        text += f", top-1 {fastest['top1']:.2f} % (drop {format_points(fastest['drop'])} pts)"
    text += "."
    others = [r for r in passed if r is not fastest and r["p50_ms"] is not None]
    if others and fastest["p50_ms"]:
        runner_up = min(others, key=lambda r: r["p50_ms"])
        text += f" {runner_up['precision']} is {runner_up['p50_ms'] / fastest['p50_ms']:.2f}× slower."
    return text


def _failure_text(row: dict) -> str:
    checks = ", ".join(row["failed_checks"]) or "failed"
    measured = []
    if row["drop"] is not None:
        measured.append(f"top-1 drop {format_points(row['drop'])} pts")
    if row["agreement"] is not None:
        measured.append(f"agreement {format_share(row['agreement'])}")
    return f"{row['precision']} (failed {checks}" + (f"; {', '.join(measured)}" if measured else "") + ")"


def overall_line(rows: list[dict]) -> str | None:
    """The fastest artifact that passed verify on this machine, across targets."""
    candidates = [r for r in rows if r["fastest"]]
    if not candidates:
        return None
    best = min(candidates, key=lambda r: r["p50_ms"])
    text = (f"Fastest verified artifact on this machine: {best['target']} "
            f"{label(best['runtime'])} {best['precision']}, p50 {format_ms(best['p50_ms'])} ms")
    if best["speedup"] is not None:
        text += f" ({format_speedup(best['speedup'])} {baseline_backend().label})"
    note = emulation_note(best)
    if note:
        text += f" — {note}"
    return text + "."


def artifact_label(row: dict) -> str:
    """'OpenVINO int8', or for an engine source 'TensorRT int8 (engine source, onnx)'."""
    if row["baseline"]:
        return f"{label(row['runtime'])} {row['precision']}"
    floats = row.get("layers_in_float") or 0
    kept = f" ({floats} layer{'s' if floats != 1 else ''} in float)" if floats else ""
    if row["device_runtime"] != row["runtime"]:
        # A bundle whose device builds its engine from this graph.
        return f"{label(row['device_runtime'])} {row['precision']}{kept} (engine source, {row['format']})"
    # bench's label: 'fp32 IR, bf16 compute' where the runtime computed in another precision
    return f"{label(row['runtime'])} {row.get('precision_label') or row['precision']}{kept}"


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
        latency = [format_ms(row["p50_ms"]), format_ms(row["p90_ms"]), format_ms(row["p99_ms"])]
        speedup = f"[dim]{row['latency_note']}[/]" if row["latency_note"] else format_speedup(row["speedup"])
        if row["status"] == "FAIL":
            verdict = "[bold red]FAIL[/] " + ", ".join(row["failed_checks"])
        elif row["status"] == "pass":
            verdict = "[green]pass[/]" + (" [bold green]★ fastest[/]" if row["fastest"] else "")
        else:
            verdict = f"[dim]{row['status']}[/]"
        style = "bold" if row["fastest"] else ("dim" if row["baseline"] else None)
        table.add_row(
            row["target"] if row["target"] != previous else "", artifact_label(row), format_mb(row["size_mb"]),
            *latency, speedup, format_percent(row["top1"]), format_points(row["drop"]),
            format_share(row["agreement"]), verdict, style=style,
        )
        previous = row["target"]
    console.print(table)
    for line in recommendations(rows):
        console.print(f"• {line}", highlight=False)
