"""Runs on your devices in the report: latency per device side by side, and what to ship on each.

The inputs are the JSON files `edgecnn bench|verify BUNDLE --on ... --json RUN_DIR/devices/NAME.json`
writes (one row per artifact with a `device` object). Rows are matched across devices by artifact
name, runtime and precision at batch 1; a device's "what to ship" is its fastest artifact that passed
verify there. A device whose CPU is emulated (qemu) has no meaningful latency: it is named, never
ranked on speed.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Iterable

from edgecnn.atomic import read_json
from edgecnn.errors import BadInputError

DEVICES_FOLDER = "devices"


def load_device_runs(paths: Iterable[Path]) -> list[dict]:
    """The merged --on payloads among `paths` (each a JSON file `bench|verify --on --json` wrote)."""
    payloads = []
    for path in sorted(paths):
        payload = read_json(path, what="device run", hint="write it with edgecnn bench|verify --on ... --json",
                            expect=dict)
        if not payload.get("remote") or payload.get("command") not in ("bench", "verify"):
            raise BadInputError(f"{path} is not the --json of edgecnn bench|verify --on/--fleet")
        payloads.append(payload)
    return payloads


def add_device_runs(run_dir: str | Path, paths: Iterable[Path]) -> list[Path]:
    """Copy device-run JSON files into RUN_DIR/devices/ (checked first), so the report rebuilds from the folder alone."""
    from edgecnn.atomic import write_bytes_atomic

    paths = list(paths)
    load_device_runs(paths)
    return [write_bytes_atomic(Path(run_dir) / DEVICES_FOLDER / Path(p).name, Path(p).read_bytes()) for p in paths]


def device_table(payloads: list[dict]) -> dict[str, Any]:
    """{devices: [device objects], rows: [{artifact, runtime, precision, per_device: {name: {p50, passed, ...}}}]}."""
    devices: dict[str, dict] = {}
    rows: dict[tuple, dict] = {}
    for payload in payloads:
        bench = payload["command"] == "bench"
        smallest = min((int(r.get("batch") or 1) for r in payload.get("artifacts") or []), default=1)
        for row in payload.get("artifacts") or []:
            if bench and int(row.get("batch") or 1) != smallest:
                continue
            device = row["device"]
            devices.setdefault(device["name"], device)
            key = (row.get("name"), row.get("runtime"), row.get("precision"))
            cell = rows.setdefault(key, {"artifact": key[0], "runtime": key[1], "precision": key[2],
                                         "per_device": {}})["per_device"].setdefault(device["name"], {})
            if bench:
                cell.update(p50_ms=row["latency_ms"]["p50"], p99_ms=row["latency_ms"]["p99"], batch=row.get("batch"),
                            threads=row.get("threads"))
            else:
                cell.update(passed=row.get("passed"), top1=row.get("top1"), agreement=row.get("agreement"))
    return {"devices": list(devices.values()), "rows": list(rows.values())}


def device_recommendations(table: dict[str, Any]) -> dict[str, str]:
    """Per device: the fastest artifact that passed verify there (or why there is none)."""
    advice = {}
    for device in table["devices"]:
        name = device["name"]
        cells = [(row, row["per_device"].get(name) or {}) for row in table["rows"]]
        measured = [(row, cell) for row, cell in cells if cell.get("p50_ms") is not None]
        passed = [(row, cell) for row, cell in cells if cell.get("passed")]
        if device.get("emulated"):
            names = ", ".join(row["artifact"] for row, _ in passed) or "nothing verified here"
            advice[name] = f"emulated CPU (latency not meaningful); passed verify: {names}"
            continue
        verified = [(row, cell) for row, cell in measured if cell.get("passed")]
        pool = verified or ([] if passed or any("passed" in c for _, c in cells) else measured)
        if not pool:
            advice[name] = "no artifact both benchmarked and verified here"
            continue
        row, cell = min(pool, key=lambda item: item[1]["p50_ms"])
        why = "fastest that passed verify here" if verified else "fastest measured (not verified on this device)"
        advice[name] = f"{row['artifact']} ({row['runtime']} {row['precision']}), p50 {cell['p50_ms']:.2f} ms: {why}"
    return advice


def device_section_html(table: dict[str, Any]) -> str:
    """The report's "On your devices" section ('' when there are no device runs)."""
    if not table["rows"]:
        return ""
    e = html.escape
    names = [d["name"] for d in table["devices"]]
    head = "".join(f"<th>{e(d['name'])}<br><small>{e(str(d.get('machine')))}, {e(str(d.get('cpu')))}"
                   f"{' (emulated)' if d.get('emulated') else ''}</small></th>" for d in table["devices"])
    body = []
    for row in table["rows"]:
        cells = "".join(f"<td>{_cell_text(row['per_device'].get(name) or {})}</td>" for name in names)
        body.append(f"<tr><td>{e(str(row['artifact']))}<br><small>{e(str(row['runtime']))} "
                    f"{e(str(row['precision'] or ''))}</small></td>{cells}</tr>")
    advice = "".join(f"<li><b>{e(name)}</b>: {e(text)}</li>" for name, text in device_recommendations(table).items())
    return ("<h2>On your devices</h2>"
            f"<table><thead><tr><th>artifact</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            '<p class="caption">p50 latency per image at the smallest batch, ms, timed on each device by its own '
            "edgecnn bench (the network is outside the timed region); pass/FAIL: edgecnn verify on that device.</p>"
            f"<h3>What to ship, per device</h3><ul>{advice}</ul>")


def _cell_text(cell: dict) -> str:
    parts = []
    if cell.get("p50_ms") is not None:
        parts.append(f"{cell['p50_ms']:.2f} ms")
    if "passed" in cell:
        agreement = cell.get("agreement")
        share = f" {agreement * 100:.1f} %" if isinstance(agreement, (int, float)) else ""
        parts.append(("pass" if cell["passed"] else "FAIL") + share)
    return "<br>".join(parts) or "-"
