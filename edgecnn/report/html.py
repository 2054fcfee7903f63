"""The self-contained report page, and `write_report` (report.html and summary.json).

The page has no external reference at all (inline CSS from report.css beside this module, PNGs as
data: URIs, no scripts), so it can be mailed, attached to a CI run or opened offline.
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from edgecnn.atomic import write_json_atomic, write_text_atomic
from edgecnn.backends import label
from edgecnn.formatting import (
    format_mb, format_ms, format_percent, format_points, format_share, format_speedup, human_count,
)
from edgecnn.report.devices import device_recommendations, device_section_html, device_table
from edgecnn.report.load import REPORT_NAME, SUMMARY_NAME, RunData, error_text, load_run
from edgecnn.report.plots import latency_png, training_curve_png
from edgecnn.report.rows import artifact_label, emulation_note, overall_line, recommendations, summary_rows

SCHEMA = "edgecnn.summary/1"


def _css() -> str:
    return resources.files(__package__).joinpath("report.css").read_text(encoding="utf-8")


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
        _card("test top-1", format_percent(test_top1),
              f"PyTorch fp32, best epoch {best}" if best else "PyTorch fp32"),
        _card("training", trained, detail),
    ]
    return '<div class="cards">' + "".join(tiles) + "</div>"


def _verdict_cell(row: dict) -> str:
    if row["status"] == "FAIL":
        verdict = ('<span class="badge fail">FAIL</span>'
                   f'<span class="why">{_e(", ".join(row["failed_checks"]))}</span>')
    elif row["status"] == "pass":
        verdict = '<span class="badge pass">pass</span>' + (
            '<span class="badge best">★ fastest</span>' if row["fastest"] else "")
    else:
        verdict = f'<span class="badge muted">{_e(row["status"])}</span>'
    return f'<td class="l">{verdict}</td>'


def _row_cells(row: dict) -> list[str]:
    """Every cell of a table row after the target cell."""
    cells = [f'<td class="l">{_e(artifact_label(row))}<span class="path">{_e(row["artifact"])}</span></td>',
             f"<td>{format_mb(row['size_mb'])}</td>"]
    if row["latency_note"]:
        cells.append(f'<td colspan="3" class="na">{_e(row["latency_note"])}</td>')
    else:
        cells.extend(f"<td>{format_ms(row[k])}</td>" for k in ("p50_ms", "p90_ms", "p99_ms"))
    baseline = row["baseline"] and row["p50_ms"] is not None
    speedup = "1.00× (baseline)" if baseline else format_speedup(row["speedup"])
    cells += [f"<td>{_e(speedup)}</td>", f"<td>{format_percent(row['top1'])}</td>",
              f"<td>{_e(format_points(row['drop']))}</td>", f"<td>{format_share(row['agreement'])}</td>",
              _verdict_cell(row)]
    return cells


def _results_table_html(rows: list[dict]) -> str:
    head = ("<tr><th class='l'>target</th><th class='l'>artifact</th><th>size MB</th><th>p50 ms</th>"
            "<th>p90 ms</th><th>p99 ms</th><th>speed-up</th><th>top-1</th><th>drop</th><th>agreement</th>"
            "<th class='l'>verify</th></tr>")
    spans: dict[str, int] = {}
    for row in rows:
        spans[row["target"]] = spans.get(row["target"], 0) + 1
    body = []
    previous = None
    for row in rows:
        first = row["target"] != previous
        classes = [name for name, on in (("group", first), ("best", row["fastest"]),
                                         ("fail", row["status"] == "FAIL"), ("baseline", row["baseline"])) if on]
        cells = []
        if first:
            target = "PyTorch" if row["baseline"] else row["target"]
            runtime = "" if row["baseline"] else label(row["device_runtime"])
            cells.append(f'<td class="l target" rowspan="{spans[row["target"]]}">{_e(target)}'
                         f'<span class="path">{_e(runtime)}</span></td>')
        body.append(f'<tr class="{" ".join(classes)}">' + "".join(cells + _row_cells(row)) + "</tr>")
        previous = row["target"]
    return f'<table class="results"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


def _host_items(payloads: list[dict]) -> list[tuple[str, str]]:
    """CPU, cores, system and load average from the bench payloads' environment."""
    env = next((p["environment"] for p in payloads), {})
    if not env:
        return []
    items = [
        ("CPU", str(env.get("cpu_model", "?"))),
        ("cores", f"{env.get('physical_cores', '?')} physical, {env.get('logical_cpus', '?')} logical, "
                  f"{env.get('usable_cpus', '?')} usable by this process"),
        ("system", f"{env.get('system', '?')}, Python {env.get('python', '?')}, "
                   f"numpy {env.get('numpy', '?')}, edgecnn {env.get('edgecnn', '?')}"),
    ]
    loads = [p["environment"].get(key) for key in ("loadavg_before", "loadavg_after") for p in payloads
             if p["environment"].get(key)]
    if loads:
        peak = max(v[0] for v in loads)
        busy = isinstance(env.get("usable_cpus"), int) and peak > env["usable_cpus"]
        items.append(("load average (1 min)", f"{min(v[0] for v in loads):.2f} – {peak:.2f} during the benchmarks"
                      + (" — the machine was busy: compare ratios, not absolute numbers" if busy else "")))
    return items


def _method_items(settings: dict, rows: list[dict]) -> list[tuple[str, str]]:
    """How the timings were taken, from the bench settings."""
    if not settings:
        return []
    if settings.get("iters") is not None:
        runs = f"{settings['iters']} timed runs"
    else:
        runs = (f"timed runs for at least {settings.get('min_time_s', '?')} s "
                f"(and at least {settings.get('min_iters', '?')} runs)")
    counts = [r["iterations"] for r in rows if isinstance(r["iterations"], int)]
    if counts:
        runs += f"; {min(counts):,}–{max(counts):,} runs per artifact"
    return [
        ("timing method", f"{settings.get('warmup', '?')} warm-up runs, then {runs}; "
                          f"{settings.get('timer', 'perf_counter_ns')}"),
        ("percentiles", f"p50 / p90 / p99, {settings.get('percentiles', 'numpy.percentile')}"),
        ("isolation", str(settings.get("isolation", "one child process per artifact"))),
    ]


def _accuracy_items(run: RunData) -> list[tuple[str, str]]:
    verify = next((p for p in run.verify_results if p.get("samples")), None)
    if not verify:
        return []
    source = "PyTorch fp32 re-run live" if verify.get("reference_source") == "pytorch-live" else \
        "PyTorch fp32 logits stored at export"
    used = sorted({(a.get("precision"), json.dumps(a.get("thresholds"), sort_keys=True))
                   for p in run.verify_results for a in p.get("artifacts") or [] if isinstance(a, dict)})
    limits = "; ".join(f"{precision}: {_describe_limits(json.loads(t))}" for precision, t in used if t != "null")
    return [("accuracy check", f"{verify['samples']} samples ({verify.get('samples_source', '?')}); "
                               f"reference: {source}" + (f"; limits — {limits}" if limits else ""))]


def _environment(run: RunData, rows: list[dict]) -> list[tuple[str, str]]:
    """(label, value) pairs: where and how the numbers were taken."""
    payloads = [p for p in run.bench_results if isinstance(p.get("environment"), dict)]
    settings = next((p["settings"] for p in payloads if isinstance(p.get("settings"), dict)), {})
    items = _host_items(payloads)
    threads = sorted({r["threads"] for r in rows if r["threads"] is not None})
    if threads:
        items.append(("threads used", ", ".join(map(str, threads)) + " per runtime (intra-op), batch 1"))
    versions: dict[str, str] = {}
    for payload in payloads:
        for name, version in (payload["environment"].get("runtime_versions") or {}).items():
            versions.setdefault(label(name), str(version).split("-")[0])
    if versions:
        items.append(("runtime versions (bench)", ", ".join(f"{k} {v}" for k, v in versions.items())))
    tools = next((b.manifest.get("tools") for b in run.bundles if isinstance(b.manifest.get("tools"), dict)), None)
    if tools:
        items.append(("export tools", ", ".join(f"{k} {v}" for k, v in tools.items() if v)))
    return items + _method_items(settings, rows) + _accuracy_items(run)


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
    emulated: dict[str, list[str]] = {}  # what a latency really measured -> the targets it applies to
    for row in rows:
        note = emulation_note(row)
        if note and row["target"] not in emulated.setdefault(note, []):
            emulated[note].append(row["target"])
    for note, targets in emulated.items():
        notes.append(f"The {', '.join(targets)} latencies are {note}: copy the bundle to the device and run "
                     "`edgecnn bench` there for its numbers.")
    for bundle in run.bundles:
        notes += [f"{bundle.target}: {line}" for line in bundle.manifest.get("next_steps") or []]
        notes += [f"{bundle.target} (warning): {line}" for line in bundle.manifest.get("warnings") or []]
        for payload in (bundle.verify, bundle.bench):
            notes += [f"{bundle.target}: {line}" for line in (payload or {}).get("notes") or []]
            error = error_text(payload)
            if error:
                notes.append(f"{bundle.target}: {error}")
    return list(dict.fromkeys(notes))


def _verdict_html(rows: list[dict]) -> str:
    """The 'What to ship' box: red when a target has nothing that passed, amber when something failed."""
    failed = [r for r in rows if r["status"] == "FAIL"]
    targets = dict.fromkeys(r["target"] for r in rows if not r["baseline"])
    stranded = [t for t in targets if not any(r["passed"] for r in rows if r["target"] == t)]
    tone = "bad" if stranded else ("warn" if failed else "")
    if stranded:
        head = f"What to ship — nothing passed verify for {', '.join(stranded)}"
    elif failed:
        head = f"What to ship — {len(failed)} artifact(s) failed verify; every target has one that passed"
    else:
        head = "What to ship — every artifact passed verify"
    overall = overall_line(rows)
    recommend = "".join(f"<li>{_code_spans(line)}</li>" for line in recommendations(rows))
    return "\n".join(p for p in (
        f'<section class="verdict {tone}"><h2>{_e(head)}</h2>',
        f'<p class="overall">{_e(overall)}</p>' if overall else "",
        f"<ul>{recommend}</ul></section>",
    ) if p)


def _plots_html(run: RunData, rows: list[dict]) -> list[str]:
    latency, curve = latency_png(rows), training_curve_png(run.metrics)
    return [
        "<h2>Latency</h2>",
        f'<img class="plot" alt="p50 latency per artifact with p90-p99 whiskers" src="{latency}">' if latency
        else '<p class="na">No latency was measured.</p>',
        '<p class="caption">Bars: p50; whiskers: p90 to p99; the label gives p50 and the speed-up over '
        "PyTorch eager. Bold: the fastest artifact that passed verify on its target.</p>",
        *_sensitivity_html(rows),
        "<h2>Training</h2>",
        f'<img class="plot" alt="training loss and accuracy per epoch" src="{curve}">' if curve
        else '<p class="na">No training history (model/metrics.json) in this run.</p>',
    ]


def _sensitivity_html(rows: list[dict]) -> list[str]:
    """Per int8 artifact, its costliest layers as export measured them (edgecnn explain has every layer)."""
    from edgecnn.report.plots import sensitivity_png

    images = [(row, sensitivity_png(row["int8_sensitivity"], title=f"{row['target']} · {artifact_label(row)}"))
              for row in rows if row.get("int8_sensitivity")]
    images = [(row, image) for row, image in images if image]
    if not images:
        return []
    return ["<h2>INT8 layers</h2>",
            *(f'<img class="plot" alt="int8 sensitivity of {_e(row["artifact"])}" src="{image}">' for row, image in images),
            '<p class="caption">The costliest quantized layers of each int8 artifact, by PyTorch module name: the share '
            "of the logit error (mean squared difference from PyTorch fp32 on golden images) that goes away when only "
            "that layer runs in float, with its SQNR; where that was not measured, the SQNR of its int8 output. "
            "<code>edgecnn explain BUNDLE</code> lists every layer.</p>"]


def render_html(run: RunData, rows: list[dict]) -> str:
    """The whole report page as one string (no external reference)."""
    card = run.card
    title = f"{card.get('name', 'model')} on {card.get('data') or (run.metrics or {}).get('data') or '?'}"
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>edgecnn report: {_e(title)}</title>",
        f"<style>\n{_css()}</style></head><body><main>",
        f"<h1>edgecnn report: {_e(title)}</h1>",
        f'<p class="sub">Every artifact exported for each target, checked against PyTorch and timed on this '
        f"machine. Built {created} from <code>{_e(run.root)}</code>.</p>",
        _verdict_html(rows),
        "<h2>Model</h2>",
        _model_card_html(run),
        "<h2>Results per target and precision</h2>",
        _results_table_html(rows),
        '<p class="caption">Latency per image at batch 1, in milliseconds, on this machine. Speed-up: PyTorch '
        "eager p50 ÷ the artifact's p50. top-1 on the held-out test images; drop: points lost against PyTorch "
        "fp32 on the same images (negative: gained); agreement: share of images whose top-1 class matches "
        "PyTorch's. Green: the fastest artifact that passed verify on its target. Red: failed verify.</p>",
        *_plots_html(run, rows),
        device_section_html(device_table(run.device_runs)),
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
    if run.device_runs:
        table = device_table(run.device_runs)
        summary["devices"] = {**table, "recommendations": device_recommendations(table)}
    page = render_html(run, rows)
    write_json_atomic(run.root / SUMMARY_NAME, summary)
    return write_text_atomic(run.root / REPORT_NAME, page)
