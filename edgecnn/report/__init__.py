"""The run report: one table and one self-contained HTML page from a quickstart run folder.

`load` reads the run folder's JSON files, `rows` merges them into one row per target and artifact
(plus the eager baseline) and says what to ship, `plots` draws the latency plot (bench's too) and
the training curve, `html` writes RUN_DIR/summary.json and RUN_DIR/report.html. The standard
library and matplotlib (lazily, the `report` extra) only: no torch, so a report can be rebuilt
anywhere.
"""

from edgecnn.report.html import SCHEMA, render_html, write_report
from edgecnn.report.load import REPORT_NAME, REQUIRED, SUMMARY_NAME, BundleInfo, RunData, load_run
from edgecnn.report.plots import latency_png, plot_latency, training_curve_png
from edgecnn.report.rows import (
    BENCH_FAILED, BUILT_ON_DEVICE, NOT_BENCHMARKED, overall_line, print_summary, recommendations, summary_rows,
)

__all__ = ["BENCH_FAILED", "BUILT_ON_DEVICE", "BundleInfo", "NOT_BENCHMARKED", "REPORT_NAME", "REQUIRED", "RunData",
           "SCHEMA", "SUMMARY_NAME", "latency_png", "load_run", "overall_line", "plot_latency", "print_summary",
           "recommendations", "render_html", "summary_rows", "training_curve_png", "write_report"]
