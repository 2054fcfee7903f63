"""The report for CI: JUnit XML (one test case per artifact) and a Markdown table for $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

import platform
import re
import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import edgecnn
from edgecnn.atomic import write_text_atomic
from edgecnn.verify.results import REFERENCE_LIVE, VerifyReport, format_metric, round_or_none
from edgecnn.thresholds import Thresholds


def junit_xml(report: VerifyReport) -> str:
    """The report as JUnit XML: one testsuite, one testcase per artifact, a failure per failed artifact."""
    failures = len(report.failed)
    suite_name = f"edgecnn verify {report.model}" + (f" ({report.target})" if report.target else "")
    root = ET.Element("testsuites", name="edgecnn verify", tests=str(len(report.artifacts)),
                      failures=str(failures), errors="0", time=f"{report.seconds:.3f}")
    suite = ET.SubElement(
        root, "testsuite", name=suite_name, tests=str(len(report.artifacts)), failures=str(failures),
        errors="0", skipped="0", time=f"{report.seconds:.3f}",
        timestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), hostname=socket.gethostname(),
    )
    properties = ET.SubElement(suite, "properties")
    for key, value in (("model", report.model), ("target", report.target), ("bundle", report.bundle),
                       ("samples", report.samples), ("samples_source", report.samples_source),
                       ("reference_source", report.reference_source),
                       ("reference_top1", round_or_none(report.reference_top1, 3)),
                       ("accuracy_meaningful", report.accuracy_meaningful),
                       ("edgecnn_version", edgecnn.__version__), ("python", platform.python_version())):
        if value is not None:
            ET.SubElement(properties, "property", name=key, value=str(value))
    classname = f"edgecnn.verify.{re.sub(r'[^A-Za-z0-9_]+', '_', report.model)}"
    for result in report.artifacts:
        case = ET.SubElement(suite, "testcase", classname=classname,
                             name=f"{result.name} [{result.runtime} {result.precision}]",
                             time=f"{result.seconds:.3f}")
        details = "\n".join(c.describe() for c in result.checks)
        if not result.passed:
            failure = ET.SubElement(case, "failure", type="CheckFailed",
                                    message=f"failed checks: {', '.join(result.failed_checks)} "
                                            f"({'; '.join(c.describe() for c in result.checks if c.passed is False)})")
            failure.text = details
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join(
            f"{key}: {value}" for key, value in result.to_dict().items()
            if key not in ("checks", "thresholds", "name", "path")
        ) + "\n" + details
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(report: VerifyReport, path: str | Path) -> Path:
    """Write the JUnit XML atomically (temp file in the same folder, then rename)."""
    return write_text_atomic(Path(path), junit_xml(report))


def _md_cell(text: Any) -> str:
    # A pipe would end the cell and a newline the row: both are escaped.
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_summary(report: VerifyReport) -> str:
    """A Markdown heading, one table row per artifact, and the notes (for $GITHUB_STEP_SUMMARY)."""
    status = "all pass" if report.passed else f"{len(report.failed)} of {len(report.artifacts)} failed"
    icon = "✅" if report.passed else "❌"
    where = f" → {report.target}" if report.target else ""
    lines = [
        f"### {icon} edgecnn verify: {_md_cell(report.model)}{_md_cell(where)} — {status}",
        "",
        f"{report.samples} samples ({_md_cell(report.samples_source)}), reference: "
        f"{_md_cell(report.reference_label or ('PyTorch fp32 re-run live' if report.reference_source == REFERENCE_LIVE else 'golden logits'))}, "
        f"reference top-1 {_fmt_pct(report.reference_top1)}.",
        "",
        "| artifact | runtime | precision | top-1 | ref top-1 | drop | agreement | max abs diff | cosine | result |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for a in report.artifacts:
        result = "✅ pass" if a.passed else "❌ fail: " + ", ".join(
            c.describe() for c in a.checks if c.passed is False)
        cells = [f"`{a.name}`", a.runtime, a.precision, _fmt_pct(a.top1), _fmt_pct(a.reference_top1),
                 format_metric("drop", a.drop), format_metric("agreement", a.agreement),
                 format_metric("max_abs_diff", a.max_abs_diff), format_metric("cosine", a.cosine), result]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    lines.append("")
    thresholds = sorted({(a.precision, _describe_thresholds(a.thresholds)) for a in report.artifacts})
    lines.append("Thresholds: " + "; ".join(f"{p}: {t}" for p, t in thresholds) + ".")
    for note in report.notes:
        lines.append("")
        lines.append(f"> {_md_cell(note)}")
    return "\n".join(lines) + "\n\n"


def append_summary(report: VerifyReport, path: str | Path) -> Path:
    """Append the Markdown summary to `path` ($GITHUB_STEP_SUMMARY is appended to, never replaced)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = markdown_summary(report)
    with open(path, "a", encoding="utf-8") as handle:
        # A summary already there may not end with a blank line; a table glued to it would not parse.
        if path.stat().st_size and not _ends_with_blank_line(path):
            handle.write("\n")
        handle.write(text)
    return path


def _ends_with_blank_line(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 2))
        return handle.read().endswith(b"\n\n")


def _describe_thresholds(thresholds: Thresholds) -> str:
    parts = [f"{name.replace('_', ' ')} {format_metric(name, value)}"
             for name, value in thresholds.to_dict().items() if value is not None]
    return ", ".join(parts) or "none"


def _fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} %"


__all__ = ["append_summary", "junit_xml", "markdown_summary", "write_junit"]
