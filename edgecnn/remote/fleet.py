"""Many devices at once: one job per device in parallel, their JSON merged into one report.

A device that is unreachable, times out or fails is one line in the summary with the reason; the
others go on. The merged JSON is the command's own JSON with a `device` object in every row, plus
`devices` (how each one went) and `failed` (the names of those that did not finish).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from edgecnn.remote.devices import Device
from edgecnn.remote.job import DeviceRun, RemoteJob, run_on_device
from edgecnn.remote.ssh import SshOptions

_ROW_LISTS = ("artifacts", "skipped")  # the lists of rows in bench and verify JSON


def run_fleet(devices: list[Device], job: RemoteJob, options: SshOptions, *, keep: bool = False,
              note: Callable[[str], None] = lambda message: None) -> list[DeviceRun]:
    """Run `job` on every device in parallel; results in the order the devices were given."""
    with ThreadPoolExecutor(max_workers=max(1, len(devices)), thread_name_prefix="edgecnn-remote") as pool:
        futures = [pool.submit(run_on_device, device, job, options, keep=keep, note=note) for device in devices]
        return [future.result() for future in futures]


def merged_report(runs: list[DeviceRun], job: RemoteJob) -> dict[str, Any]:
    """One JSON for every device: each row gains `device`; per-device metadata stays under `runs`."""
    merged: dict[str, Any] = {"command": job.command, "path": str(job.source), "remote": True,
                              "artifacts": [], "skipped": []}
    per_device = {}
    for run in runs:
        if not run.ok:
            continue
        device = run.device_json()
        for key in _ROW_LISTS:
            merged[key] += [{**row, "device": device} for row in run.payload.get(key) or []]
        per_device[run.device.name] = {k: v for k, v in run.payload.items() if k not in _ROW_LISTS}
    merged["runs"] = per_device
    merged["devices"] = [run.summary() for run in runs]
    merged["failed"] = [run.device.name for run in runs if not run.ok]
    if job.command == "verify":
        merged["failed_checks"] = [run.device.name for run in runs if run.ok and not run.payload.get("passed", True)]
        merged["passed"] = not merged["failed"] and not merged["failed_checks"]
    return merged


def failures(runs: list[DeviceRun]) -> list[str]:
    """One line per device that did not finish (its reason), for the summary."""
    return [run.error or f"{run.device.name}: failed" for run in runs if not run.ok]


def adopt_built_manifest(bundle: Path, run: DeviceRun) -> list[str]:
    """Bring a device build's engine entries (provenance, sha256) into the local manifest; returns their paths.

    The engine files stay on the device unless they were fetched; an entry whose file is not here
    records where it is (`on_device`), so nothing local mistakes it for a file it holds.
    """
    import json

    from edgecnn.atomic import write_bytes_atomic, write_json_atomic
    from edgecnn.bundle import MANIFEST_NAME, file_sha256, load_bundle

    device_manifest = json.loads(run.fetched[MANIFEST_NAME])
    local = load_bundle(bundle)
    engines = {e["path"] for e in (run.payload or {}).get("engines", [])}
    adopted = []
    for entry in device_manifest.get("artifacts", []):
        files = [f["path"] for f in entry.get("files") or [{"path": entry["path"]}]]
        if entry.get("path") not in engines:
            continue
        for relative in files:
            if relative in run.fetched:
                write_bytes_atomic(local.root / relative, run.fetched[relative])
        if all((local.root / f).is_file() for f in files) and file_sha256(local.root / entry["path"]) == entry["sha256"]:
            entry = {k: v for k, v in entry.items() if k != "on_device"}
        else:
            entry = {**entry, "on_device": {**run.device_json(), "folder": run.transfer.get("remote_folder")}}
        local.manifest["artifacts"] = [a for a in local.manifest.get("artifacts", []) if a.get("path") != entry["path"]]
        local.manifest["artifacts"].append(entry)
        adopted.append(entry["path"])
    write_json_atomic(local.root / MANIFEST_NAME, local.manifest)
    return adopted


def adopt_tuning(bundle: Path, run: DeviceRun) -> str | None:
    """Bring a device's `edgecnn tune` result into the local bundle: its tuning/<signature>.json and the
    manifest's record of it (sha256), so bench/verify --on that device, or on the device itself after a later
    copy, use it. Returns the file's bundle path (None when the device reported none).

    The fetched file must match the sha256 the device's manifest records; other devices' records are kept.
    """
    import hashlib
    import json

    from edgecnn.atomic import write_bytes_atomic, write_json_atomic
    from edgecnn.bundle import MANIFEST_NAME, load_bundle
    from edgecnn.remote.ssh import RemoteError

    if not run.created and not any(p.startswith("tuning/") for p in run.fetched):
        return None
    relative = next(p for p in [*run.created, *run.fetched] if p.startswith("tuning/"))
    records = json.loads(run.fetched[MANIFEST_NAME]).get("tuning") or []
    record = next((r for r in records if r.get("path") == relative), None)
    content = run.fetched.get(relative)
    if record is None or content is None or hashlib.sha256(content).hexdigest() != record.get("sha256"):
        raise RemoteError(f"{run.device.name}: the tuning file {relative} did not come back intact")
    local = load_bundle(bundle)
    write_bytes_atomic(local.root / relative, content)
    kept = [r for r in local.manifest.get("tuning") or [] if r.get("path") != relative]
    local.manifest["tuning"] = kept + [record]
    write_json_atomic(local.root / MANIFEST_NAME, local.manifest)
    return relative
