"""OUT/report.html of a compare run: the answer per device, the accuracy-vs-latency plot, the full table.

Self-contained like `edgecnn report`'s page (its report.css inline, the plot as a data: URI, no script),
so it opens offline, attached to a CI run or mailed.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from edgecnn.atomic import write_text_atomic
from edgecnn.compare_models.results import CandidateResult, CompareResult
from edgecnn.formatting import format_mb, format_ms, format_percent, format_points, format_share, human_count

COLUMNS = ("candidate (runtime; why it failed)", "device", "result", "top-1", "drop", "agreement", "p50 ms",
           "p90 ms", "peak RSS MB", "size MB", "params", "MACs")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _css() -> str:
    return resources.files("edgecnn.report").joinpath("report.css").read_text(encoding="utf-8")


def plot_panels(result: CompareResult) -> list[dict[str, Any]]:
    """The plot's input: one panel per device, each row with its place on the front and whether it is chosen."""
    panels = []
    for answer in result.answers:
        rows = [row for row in result.candidates if row.device == answer.device]
        panels.append({"device": answer.device, "note": answer.emulated, "rows": [{
            "name": f"{row.source} {row.target} {row.precision}", "source": row.source,
            "precision": row.precision, "top1": row.top1,
            "p50_ms": row.p50_ms, "size_mb": row.size_mb, "ranked": row.rankable,
            "on_front": row.name in answer.front, "chosen": row.name == answer.choice} for row in rows]})
    return panels


def _row_html(row: CandidateResult, result: CompareResult) -> str:
    answer = next((a for a in result.answers if a.device == row.device), None)
    chosen = answer is not None and answer.choice == row.name
    front = answer is not None and row.name in answer.front
    verdict = "ship" if chosen else ("front" if front else ("measured" if row.measured else "failed"))
    note = row.reason or (f"emulated: {row.emulated}" if row.emulated else "")
    cls = "best" if chosen else ("fail" if not row.measured else "")
    # The reason sits under the name, wrapping: a column of its own squeezed the numbers off the page.
    cells = [f'<td class="l" style="white-space:normal;max-width:420px">{_e(row.name)}<span class="path">'
             f'{_e("; ".join(part for part in (_runtime_text(row), note) if part))}</span></td>',
             f'<td class="l">{_e(row.device)}</td>', f'<td class="l">{_e(verdict)}</td>',
             f"<td>{_e(format_percent(row.top1))}</td>", f"<td>{_e(format_points(row.drop))}</td>",
             f"<td>{_e(format_share(row.agreement))}</td>",
             f"<td>{_e(format_ms(row.p50_ms))}{' (emulated)' if row.emulated and row.p50_ms else ''}</td>",
             f"<td>{_e(format_ms(row.p90_ms))}</td>", f"<td>{_e(format_mb(row.peak_rss_mb))}</td>",
             f"<td>{_e(format_mb(row.size_mb))}</td>", f"<td>{_e(human_count(row.params))}</td>",
             f"<td>{_e(human_count(row.macs))}</td>"]
    return f'<tr class="{cls}">' + "".join(cells) + "</tr>"


def _runtime_text(row: CandidateResult) -> str:
    return f"{row.runtime}, {row.threads} threads" if row.runtime and row.threads else (row.runtime or "")


def table_html(result: CompareResult) -> str:
    """Every candidate on every device: the chosen one green, failed ones red, the reason in the last column."""
    order = {answer.device: i for i, answer in enumerate(result.answers)}
    rows = sorted(result.candidates, key=lambda r: (order.get(r.device, 99), not r.measured,
                                                    -(r.top1 or 0.0), r.p50_ms or float("inf")))
    head = "".join(f'<th class="{"l" if i < 3 else ""}">{_e(c)}</th>'
                   for i, c in enumerate(COLUMNS))
    return ('<div style="overflow-x:auto"><table class="results"><thead><tr>' + head + "</tr></thead><tbody>"
            + "".join(_row_html(row, result) for row in rows) + "</tbody></table></div>")


def render(result: CompareResult) -> str:
    """The whole page as one string."""
    from edgecnn.report.tradeoff import tradeoff_png

    settings = result.settings
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    image = tradeoff_png(plot_panels(result), max_latency_ms=settings.get("max_latency_ms"))
    answer_items = "".join(f"<li><b>{_e(a.device)}</b>: {_e(a.line)}"
                           + (f"<br><small>Pareto front (fastest first): {_e(', '.join(a.front))}</small>"
                              if a.front else "") + "</li>" for a in result.answers)
    counts = result.to_dict()["counts"]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>edgecnn compare: which model to ship</title>", f"<style>\n{_css()}</style></head><body><main>",
        "<h1>edgecnn compare: which model to ship</h1>",
        f'<p class="sub">{counts["candidates"]} candidates ({counts["measured"]} measured, {counts["failed"]} '
        f"failed) from {_e(', '.join(settings.get('sources') or []) or '')}{_e(' zoo ' + settings['zoo'] if settings.get('zoo') else '')}"
        f" × {_e(', '.join(settings.get('targets') or []))} × {_e(', '.join(settings.get('precisions') or []))}, "
        f"verified on {_e(settings.get('data'))}. Built {created}.</p>",
        "<h2>The answer</h2>", f"<ul>{answer_items}</ul>",
        "<h2>Accuracy against latency</h2>",
        f'<img class="plot" alt="top-1 against p50 latency per device" src="{image}">' if image
        else "<p>Nothing was measured on both accuracy and latency: no plot.</p>",
        '<p class="caption">Each marker is one candidate; its area is proportional to the file size. The black '
        "step line is the Pareto front (no other candidate both more accurate and faster); the red dashed line "
        "is the latency budget. Hollow red markers were measured but are not ranked (failed verify, or latency "
        "from an emulated CPU).</p>",
        "<h2>Every candidate</h2>", table_html(result),
        "<h2>Method</h2>", f"<p>{_e(result.method)}</p>",
        "<ul>" + "".join(f"<li>{_e(line)}</li>" for line in result.environment()) + "</ul>",
        "<footer>Every number and every reason is in <code>compare.json</code> beside this page; rerun "
        "<code>edgecnn compare</code> with the same --out to continue or to re-answer with another budget.</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_page(result: CompareResult, path: Path) -> Path:
    return write_text_atomic(path, render(result))


__all__ = ["plot_panels", "render", "table_html", "write_page"]
