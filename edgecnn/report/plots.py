"""The plots: the one latency plot (bench's --plot and the report's) and the training curve.

`plot_latency` takes `edgecnn bench` rows (name, runtime, precision, batch, threads,
latency_ms {p50, p90, p99}, speedup, speedup_vs) and draws p50 bars with p90–p99 whiskers, on a log
axis when the values span decades. The report passes the same rows with a few optional keys more:
`label` (the tick text), `baseline` (drawn grey, its p50 as a dashed line), `passed` (False: hatched,
red) and `fastest` (bold). Figures are built outside pyplot: no global state, no backend switch in
the caller's process. matplotlib is imported lazily (the `report` extra).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from edgecnn.atomic import write_bytes_atomic
from edgecnn.backends import label
from edgecnn.errors import BadInputError
from edgecnn.formatting import format_ms, format_speedup

PRECISION_COLORS = {"fp32": "#4C78A8", "fp16": "#9467BD", "int8": "#F58518"}
OTHER_COLOR = "#54A24B"
BASELINE_COLOR = "#8C8C8C"
FAIL_COLOR = "#D62728"
BATCH_COLORS = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D")


def _figure(width: float, height: float, purpose: str):
    from edgecnn.errors import require

    require("matplotlib", "report", purpose)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110)


def _png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    # No Software metadata: a report page should carry no URL at all, not even inside an image.
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def png_data_uri(fig) -> str:
    return "data:image/png;base64," + base64.b64encode(_png_bytes(fig)).decode("ascii")


# ------------------------------------------------------------------------------------ latency


def plot_latency(rows: list[dict[str, Any]], path: str | Path, *, title: str | None = None) -> Path:
    """p50 bars with p90–p99 whiskers, per artifact and batch size, written (atomically) as a PNG."""
    fig = latency_figure(rows, title=title, purpose="--plot")
    data = _png_bytes(fig)
    return write_bytes_atomic(path, data)


def latency_figure(rows: list[dict[str, Any]], *, title: str | None = None, purpose: str = "--plot"):
    """The latency plot as a matplotlib Figure; title None: the default, "": none."""
    bars = [_bar(row) for row in rows if _p(row, "p50") is not None]
    if not bars:
        raise BadInputError("nothing to plot: no benchmark results")
    batches = sorted({b["batch"] for b in bars})
    if len(batches) > 1:  # one colour per batch size, the size in each label
        for bar in bars:
            bar["color"] = BATCH_COLORS[batches.index(bar["batch"]) % len(BATCH_COLORS)]
            bar["label"] += f" · batch {bar['batch']}"
    if title is None:
        threads = sorted({r["threads"] for r in rows if r.get("threads") is not None})
        title = (f"edgecnn bench: p50 latency (bars), p90–p99 (whiskers), {', '.join(map(str, threads))} "
                 f"thread{'s' if threads != [1] else ''}")
    fig = _figure(10.0, 0.9 + 0.42 * len(bars) + (0.35 if title else 0.0), purpose)
    ax = fig.subplots()
    ys = list(range(len(bars)))[::-1]  # first row at the top
    for y, bar in zip(ys, bars):
        _draw_bar(ax, y, bar)
    ax.set_yticks(ys, [b["label"] for b in bars], fontsize=9)
    for tick, bar in zip(ax.get_yticklabels(), bars):
        if bar["fastest"]:
            tick.set_fontweight("bold")
    log_scale = _set_scale(ax, bars)
    base = next((b for b in bars if b["baseline"]), None)
    if base is not None:
        ax.axvline(base["p50"], color=BASELINE_COLOR, linestyle="--", linewidth=1, zorder=1)
    what = f"latency, batch {batches[0]}" if len(batches) == 1 else "latency per batch"
    ax.set_xlabel(f"{what} (ms" + (", log scale)" if log_scale else ")"))
    ax.grid(axis="x", alpha=0.3, zorder=0)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    handles = _legend_handles(bars, batches)
    ax.legend(handles=handles, fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=len(handles),
              frameon=False)
    if title:
        ax.set_title(title, fontsize=10, pad=22)
    fig.tight_layout()
    return fig


def _p(row: dict, key: str) -> float | None:
    value = (row.get("latency_ms") or {}).get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _bar(row: dict) -> dict:
    """What one bar shows: its label, values, colour and the text beside it."""
    baseline, failed = bool(row.get("baseline")), row.get("passed") is False
    precision = row.get("precision") or ""
    text = f"{format_ms(_p(row, 'p50'))} ms"
    speedup = row.get("speedup")
    if speedup is not None and not baseline and row.get("speedup_vs") != row.get("name"):
        text += f"  ({format_speedup(speedup)})"
    if failed:
        text += "  FAIL"
    return {
        "label": row.get("label") or f"{row.get('name')} · {label(str(row.get('runtime')))} {precision}".rstrip(),
        "p50": _p(row, "p50"), "p90": _p(row, "p90"), "p99": _p(row, "p99"), "batch": int(row.get("batch") or 1),
        "precision": precision, "baseline": baseline, "failed": failed, "fastest": bool(row.get("fastest")),
        "runtime": str(row.get("runtime")), "text": text,
        "color": BASELINE_COLOR if baseline else PRECISION_COLORS.get(precision, OTHER_COLOR),
    }


def _draw_bar(ax, y: float, bar: dict) -> None:
    color, failed = bar["color"], bar["failed"]
    ax.barh(y, bar["p50"], height=0.62, color=color, alpha=0.45 if failed else 1.0,
            hatch="//" if failed else None, edgecolor=FAIL_COLOR if failed else color, zorder=2)
    if bar["p90"] is not None and bar["p99"] is not None:
        # A faint line from the bar to its whisker, so the eye joins the two.
        ax.hlines(y, bar["p50"], bar["p90"], color="#999999", linewidth=0.8, linestyle=":", zorder=3)
        ax.hlines(y, bar["p90"], bar["p99"], color="black", linewidth=1.3, zorder=3)
        ax.vlines([bar["p90"], bar["p99"]], y - 0.13, y + 0.13, color="black", linewidth=1.3, zorder=3)
    end = max(v for v in (bar["p50"], bar["p99"]) if v is not None)
    ax.annotate(bar["text"], (end, y), xytext=(5, 0), textcoords="offset points", va="center", fontsize=8,
                color=FAIL_COLOR if failed else "black", fontweight="bold" if bar["fastest"] else "normal")


def _set_scale(ax, bars: list[dict]) -> bool:
    """A log axis when the values span decades (fast runtimes next to slow ones, noisy tails)."""
    low = min(b["p50"] for b in bars)
    high = max(max(b["p50"], b["p99"] or 0) for b in bars)
    log_scale = low > 0 and high / low > 30
    if log_scale:
        ax.set_xscale("log")
        ax.set_xlim(low / 2, high * 6)  # room on the right for the labels
    else:
        ax.set_xlim(0, high * 1.3)
    return log_scale


def _legend_handles(bars: list[dict], batches: list[int]) -> list:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = []
    base = next((b for b in bars if b["baseline"]), None)
    if base is not None:
        handles.append(Patch(color=BASELINE_COLOR, label=f"{label(base['runtime'])} (dashed line: its p50)"))
    if len(batches) > 1:
        handles += [Patch(color=BATCH_COLORS[i % len(BATCH_COLORS)], label=f"batch {b}: p50")
                    for i, b in enumerate(batches)]
    else:
        present = {b["precision"] for b in bars if not b["baseline"]}
        handles += [Patch(color=color, label=p) for p, color in PRECISION_COLORS.items() if p in present]
        if any(p not in PRECISION_COLORS for p in present):
            handles.append(Patch(color=OTHER_COLOR, label="other"))
    handles.append(Line2D([], [], color="black", linewidth=1.3, label="p90–p99"))
    if any(b["failed"] for b in bars):
        handles.append(Patch(facecolor="white", edgecolor=FAIL_COLOR, hatch="//", label="failed verify"))
    return handles


def latency_png(rows: list[dict]) -> str | None:
    """The report's latency plot (summary rows, batch 1, baseline included) as a data: URI."""
    measured = [r for r in rows if r["p50_ms"] is not None]
    if not measured:
        return None
    plot_rows = [{
        "name": r["artifact"], "runtime": r["runtime"], "precision": r["precision"], "batch": r["batch"] or 1,
        "threads": r["threads"], "latency_ms": {"p50": r["p50_ms"], "p90": r["p90_ms"], "p99": r["p99_ms"]},
        "speedup": r["speedup"], "baseline": r["baseline"], "passed": r["passed"], "fastest": r["fastest"],
        "label": (f"{label(r['runtime'])}" if r["baseline"] else f"{r['target']} · {label(r['runtime'])}")
        + f" {r['precision']}",
    } for r in measured]
    return png_data_uri(latency_figure(plot_rows, title="", purpose="the report's plots"))


# ------------------------------------------------------------------------------- int8 layers


def sensitivity_png(layers: list[dict], *, title: str) -> str | None:
    """Horizontal bars, costliest int8 layer on top: the logit-error share gone when it alone runs in float
    (where measured), else its SQNR in dB; as a data: URI. None when there is nothing to draw."""
    gains = [x for x in layers if x.get("gain") is not None]
    shown = gains or [x for x in layers if x.get("sqnr_db") is not None]
    if not shown:
        return None
    shown = shown[:10][::-1]
    values = [100 * x["gain"] if gains else x["sqnr_db"] for x in shown]
    fig = _figure(7.5, 0.9 + 0.32 * len(shown), "the report's plots")
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(range(len(shown)), values, color=PRECISION_COLORS["int8"])
    ax.set_yticks(range(len(shown)), [f"{x['user_name']} ({x['op']})" for x in shown], fontsize=8)
    ax.set_xlabel("logit error removed when only this layer runs in float (%)" if gains
                  else "SQNR of the layer's int8 output vs fp32 (dB; lower is worse)", fontsize=8)
    ax.set_title(title, fontsize=9)
    for y, (value, layer) in enumerate(zip(values, shown)):
        sqnr = layer.get("sqnr_db")
        ax.text(value, y, f" {value:.1f}" + (f"  ({sqnr:.1f} dB)" if gains and sqnr is not None else ""),
                va="center", fontsize=7)
    fig.tight_layout()
    return png_data_uri(fig)


# ----------------------------------------------------------------------------------- training


def training_curve_png(metrics: dict | None) -> str | None:
    """Loss and top-1 per epoch (two panels) as a data: URI; None without a history."""
    history = [h for h in (metrics or {}).get("history") or [] if isinstance(h, dict) and "epoch" in h]
    if not history:
        return None
    epochs = [h["epoch"] for h in history]
    fig = _figure(10.0, 3.2, "the report's plots")
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
    return png_data_uri(fig)
