"""The accuracy-against-latency plot of `edgecnn compare`: one panel per device.

Takes plain rows (dicts: name, source, precision, top1, p50_ms, size_mb, on_front, chosen, ranked), so it knows nothing of
how they were measured. Marker area is proportional to the file size; the Pareto front is a step line
through its points; the latency budget is a vertical dashed line. A row that was measured but not ranked
(failed verify, or latency from an emulated CPU) is drawn hollow, so it is seen and not mistaken for a choice.
"""

from __future__ import annotations

from typing import Any, Optional

from edgecnn.report.plots import FAIL_COLOR, OTHER_COLOR, PRECISION_COLORS, _figure, png_data_uri

LARGEST_MARKER_AREA = 900.0  # points²: the largest file of a panel; the others in proportion to their size
MIN_MARKER_AREA = 12.0  # a floor so a tiny file stays visible (the only departure from area ∝ size)


def tradeoff_png(panels: list[dict[str, Any]], *, max_latency_ms: Optional[float] = None) -> Optional[str]:
    """panels: [{device, note, rows}] -> one PNG data: URI with a panel per device; None when nothing to draw."""
    panels = [p for p in panels if any(_drawable(r) for r in p["rows"])]
    if not panels:
        return None
    fig = _figure(10.0, 5.2 * len(panels), "the compare report's plot")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, panel in zip(axes, panels):
        _draw_panel(ax, panel, max_latency_ms)
    fig.tight_layout()
    return png_data_uri(fig)


def _drawable(row: dict) -> bool:
    return row.get("top1") is not None and row.get("p50_ms") is not None


def _area(row: dict, largest_mb: float) -> float:
    return max(MIN_MARKER_AREA, LARGEST_MARKER_AREA * float(row.get("size_mb") or 0.0) / largest_mb)


SOURCE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")


def _draw_panel(ax, panel: dict, max_latency_ms: Optional[float]) -> None:
    """Colour: precision; marker shape: the model (legend); area: file size. Only the front and the answer
    are named beside their markers: with a dozen candidates, names on every marker overlap into noise."""
    rows = [r for r in panel["rows"] if _drawable(r)]
    largest_mb = max(float(r.get("size_mb") or 0.0) for r in rows) or 1.0
    sources = list(dict.fromkeys(r.get("source") or r["name"] for r in rows))
    for row in rows:
        color = PRECISION_COLORS.get(row.get("precision") or "", OTHER_COLOR)
        ranked = row.get("ranked", True)
        marker = SOURCE_MARKERS[sources.index(row.get("source") or row["name"]) % len(SOURCE_MARKERS)]
        ax.scatter([row["p50_ms"]], [row["top1"]], s=_area(row, largest_mb), marker=marker,
                   alpha=0.55 if ranked else 1.0, facecolors=color if ranked else "none",
                   edgecolors="black" if row.get("on_front") else (color if ranked else FAIL_COLOR),
                   linewidths=1.4 if row.get("on_front") or not ranked else 0.6, zorder=3)
        if row.get("on_front") or row.get("chosen"):
            ax.annotate(("ship: " if row.get("chosen") else "") + row["name"], (row["p50_ms"], row["top1"]),
                        xytext=(8, -10 if row.get("chosen") else 6), textcoords="offset points", fontsize=7.5,
                        fontweight="bold" if row.get("chosen") else "normal", zorder=4, annotation_clip=False)
    front = sorted((r for r in rows if r.get("on_front")), key=lambda r: r["p50_ms"])
    if front:
        ax.step([r["p50_ms"] for r in front], [r["top1"] for r in front], where="post", color="black",
                linewidth=1.2, linestyle="-", zorder=2, label="Pareto front")
    if max_latency_ms is not None:
        ax.axvline(max_latency_ms, color=FAIL_COLOR, linestyle="--", linewidth=1.2, zorder=1,
                   label=f"budget: p50 <= {max_latency_ms:g} ms")
    latencies = [r["p50_ms"] for r in rows] + ([max_latency_ms] if max_latency_ms else [])
    if latencies and min(latencies) > 0 and max(latencies) / min(latencies) > 30:
        ax.set_xscale("log")
    ax.set_xlabel("p50 latency per image, batch 1 (ms" + (", log scale)" if ax.get_xscale() == "log" else ")")
                  + (" — EMULATED CPU, not the device's speed" if panel.get("note") else ""))
    ax.set_ylabel("top-1 (%)")
    ax.margins(x=0.12, y=0.08)  # room for the labels beside the right-most and top markers
    ax.set_title(f"{panel['device']}: accuracy vs latency (marker area ∝ file size; largest "
                 f"{largest_mb:.3g} MB; black edge: the front)", fontsize=10)
    ax.grid(alpha=0.3, zorder=0)
    ax.spines[["top", "right"]].set_visible(False)
    _legend(ax, rows, sources)


def _legend(ax, rows: list[dict], sources: list[str]) -> None:
    from matplotlib.lines import Line2D

    present = {r.get("precision") for r in rows}
    handles = [Line2D([], [], marker="o", linestyle="", color=c, alpha=0.6, label=p)
               for p, c in PRECISION_COLORS.items() if p in present]
    handles += [Line2D([], [], marker=SOURCE_MARKERS[i % len(SOURCE_MARKERS)], linestyle="", color="#555555",
                       label=source) for i, source in enumerate(sources)]
    if any(not r.get("ranked", True) for r in rows):
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor=FAIL_COLOR,
                              label="not ranked (failed verify / emulated)"))
    line_handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + line_handles, fontsize=7.5, loc="center left", bbox_to_anchor=(1.01, 0.5),
              frameon=False)


__all__ = ["tradeoff_png"]
