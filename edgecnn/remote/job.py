"""One device's job: check it, lock it, copy what it lacks, run the command there, bring the JSON back, clean up.

The command runs on the device with its own `--json`; the timing in that JSON is the device's own
(the network is never inside a timed region). Files the device already holds with the same sha256
are not sent again; files this job sent are removed afterwards unless `keep`.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import select
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgecnn.remote.devices import Device
from edgecnn.remote.ssh import Connection, RemoteError, SshOptions, quote
from edgecnn.remote.transfer import LocalFile, local_files, remove_command, send_files

AGENT = "device-agent"


@dataclass(frozen=True)
class RemoteJob:
    """What to run on every device: `edgecnn <command> <copied bundle> --json OUT <args>`."""

    command: str  # bench | verify | build
    source: Path  # the local bundle folder, or one artifact file
    args: tuple[str, ...] = ()
    runtimes: tuple[str, ...] = ()  # the runtimes the device must have
    fetch: tuple[str, ...] = ()  # files of the bundle to bring back afterwards (build: the manifest, engines)
    fetch_new: bool = False  # also bring back files the command created (build --fetch-engine)
    # JSON keys of the command's report that name a bundle file it wrote (tune: tuning_file), brought back
    # and, unless --keep, removed from the device with the rest.
    fetch_reported: tuple[str, ...] = ()


@dataclass
class DeviceRun:
    """How one device's job went."""

    device: Device
    info: dict | None = None  # the device's probe
    payload: dict | None = None  # the JSON the command wrote there
    error: str | None = None
    kind: str | None = None
    exit_code: int | None = None
    transfer: dict = field(default_factory=dict)
    fetched: dict[str, bytes] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)  # bundle files the command wrote there (fetch_reported)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.payload is not None

    def device_json(self) -> dict[str, Any]:
        """The `device` object of every JSON row: name, host, machine, cpu, python, edgecnn (+ emulated)."""
        info = self.info or {}
        return {"name": self.device.name, "host": self.device.ssh, "machine": info.get("machine"),
                "cpu": info.get("cpu"), "python": info.get("python"), "edgecnn": info.get("edgecnn"),
                "profile": self.device.profile, "emulated": info.get("emulated")}

    def summary(self) -> dict[str, Any]:
        return {"device": self.device_json(), "ok": self.ok, "error": self.error, "kind": self.kind,
                "exit_code": self.exit_code, "transfer": self.transfer, "seconds": round(self.seconds, 3)}


Note = Callable[[str], None]


def run_on_device(device: Device, job: RemoteJob, options: SshOptions, *, keep: bool = False,
                  note: Note = lambda message: None) -> DeviceRun:
    """The whole job on one device; every failure ends up in the DeviceRun (never raised)."""
    run = DeviceRun(device=device)
    start = time.perf_counter()
    try:
        with Connection(device, options) as connection:
            connection.connect()
            run.info = probe(connection, job.runtimes)
            check_runtimes(device, run.info, job.runtimes)
            _locked_job(connection, job, run, keep=keep, note=note)
    except RemoteError as exc:
        run.error, run.kind = str(exc), exc.kind
    except OSError as exc:
        run.error, run.kind = f"{device.name}: {exc}", "failed"
    run.seconds = time.perf_counter() - start
    return run


def probe(connection: Connection, runtimes: tuple[str, ...]) -> dict:
    """The device's answer to `edgecnn device-agent probe` (a RemoteError naming the fix when it has no edgecnn)."""
    device = connection.device
    wanted = [arg for r in runtimes for arg in ("--runtime", r)]
    done = connection.run(quote(*device.command_words, AGENT, "probe", *wanted), timeout=device.timeout_s, what="probe")
    stderr = done.stderr.decode(errors="replace")
    if done.returncode == 127 or "not found" in stderr.lower() and not done.stdout:
        raise RemoteError(f"{device.name}: {device.command!r} not found there: install edgecnn on the device "
                          "(pip install 'edgecnn[RUNTIME]') or set command = \"/path/to/edgecnn\" in the fleet file",
                          kind="missing")
    if "No such command" in stderr:
        raise RemoteError(f"{device.name}: its edgecnn is too old for remote runs: pip install -U edgecnn there",
                          kind="missing")
    try:
        return json.loads(done.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RemoteError(f"{device.name}: probe failed: {_last_line(stderr)}", kind="failed") from None


def check_runtimes(device: Device, info: dict, runtimes: tuple[str, ...]) -> None:
    """Refuse, naming the exact pip line, when a runtime the job needs is missing or does not import."""
    from edgecnn.backends import label

    for runtime in runtimes:
        entry = (info.get("runtimes") or {}).get(runtime)
        if entry is None:
            continue  # a runtime this device's edgecnn does not know: its own command will say so
        where = f"{device.name} ({info.get('machine')})"
        if not entry.get("version"):
            raise RemoteError(f"{where} has no {label(runtime)}: run pip install 'edgecnn[{entry['extra']}]' there",
                              kind="missing")
        if entry.get("import_error"):
            raise RemoteError(f"{where}: {label(runtime)} is installed but does not import ({entry['import_error']}): "
                              f"pip install --force-reinstall 'edgecnn[{entry['extra']}]' there", kind="missing")


def _locked_job(connection: Connection, job: RemoteJob, run: DeviceRun, *, keep: bool, note: Note) -> None:
    device = connection.device
    files = local_files(job.source)
    bundle_dir = f"{device.workdir}/bundles/{_bundle_folder(job.source, files)}"
    run_dir = f"{device.workdir}/runs/{uuid.uuid4().hex[:12]}"
    holder = {"who": f"{getpass.getuser()}@{socket.gethostname()}", "command": f"edgecnn {job.command} {job.source}"}
    lock = connection.popen(quote(*device.command_words, AGENT, "lock", device.workdir, "--holder", json.dumps(holder),
                                  "--hashes", bundle_dir))
    sent: list[LocalFile] = []
    try:
        remote_hashes = _wait_for_lock(lock, device, note)
        start = time.perf_counter()
        sent = [f for f in files if remote_hashes.get(f.relative) != f.sha256]
        if sent:
            send_files(connection, sent, bundle_dir, device.timeout_s)
        run.transfer = {"files": len(files), "copied": len(sent), "unchanged": len(files) - len(sent),
                        "bytes_copied": sum(f.size for f in sent), "seconds": round(time.perf_counter() - start, 3),
                        "remote_folder": bundle_dir, "kept": keep}
        note(f"{device.name}: copied {len(sent)} file(s), {len(files) - len(sent)} unchanged already there")
        _run_command(connection, job, run, bundle_dir=bundle_dir, run_dir=run_dir)
        _fetch(connection, job, run, bundle_dir=bundle_dir, known={f.relative for f in files})
    finally:
        cleanup = remove_command(bundle_dir, [] if keep else [f.relative for f in sent] + run.created, run_dir)
        connection.run(cleanup, timeout=120, what="cleanup")
        _release(lock)


def _wait_for_lock(lock, device: Device, note: Note) -> dict[str, str]:
    """Read the lock's lines until it is ours; say who holds it while waiting. Returns the bundle's hashes there."""
    deadline = time.monotonic() + device.timeout_s
    while True:
        ready, _, _ = select.select([lock.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise RemoteError(f"{device.name}: still locked after {device.timeout_s:.0f} s (raise timeout_s)", kind="timeout")
        line = lock.stdout.readline()
        if not line:
            lock.wait(timeout=10)
            raise RemoteError(f"{device.name}: the device lock failed: {_last_line(lock.stderr.read().decode(errors='replace'))}")
        event = json.loads(line)
        if event.get("event") == "locked":
            return event.get("hashes") or {}
        holder = event.get("holder") or {}
        note(f"{device.name}: waiting for the device lock, held by {holder.get('who', 'another run')} "
             f"since {holder.get('since', '?')} ({holder.get('command', '?')})")


def _release(lock) -> None:
    try:
        lock.stdin.close()
        lock.wait(timeout=30)
    except Exception:  # noqa: BLE001 - the lock dies with the connection anyway
        lock.kill()


def _run_command(connection: Connection, job: RemoteJob, run: DeviceRun, *, bundle_dir: str, run_dir: str) -> None:
    device = connection.device
    target = bundle_dir if job.source.is_dir() else f"{bundle_dir}/{job.source.name}"
    out = f"{run_dir}/{job.command}.json"
    command = quote(*device.command_words, job.command, target, "--json", out, *job.args)
    done = connection.run(f"mkdir -p {quote(run_dir)} && {command}", timeout=device.timeout_s, what=job.command)
    run.exit_code = done.returncode
    text = connection.run(quote("cat", out), timeout=120, what="fetching the JSON")
    if text.returncode != 0:
        stderr = done.stderr.decode(errors="replace")
        raise RemoteError(f"{device.name}: edgecnn {job.command} failed there (exit {done.returncode}): {_last_line(stderr)}")
    run.payload = json.loads(text.stdout)


def _fetch(connection: Connection, job: RemoteJob, run: DeviceRun, *, bundle_dir: str, known: set[str]) -> None:
    """Bring back the files the job asks for (and, with fetch_new, the files the command created)."""
    wanted = list(job.fetch)
    for key in job.fetch_reported:
        relative = _bundle_relative((run.payload or {}).get(key), bundle_dir)
        if relative is not None and relative not in wanted:
            wanted.append(relative)
            if relative not in known:
                run.created.append(relative)
    if job.fetch_new:
        listing = connection.run(quote("find", bundle_dir, "-type", "f"), timeout=120, what="listing")
        prefix = bundle_dir.rstrip("/") + "/"
        created = [p[len(prefix):] for p in listing.stdout.decode().splitlines() if p.startswith(prefix)]
        wanted += [p for p in created if p not in known and p not in wanted]
    for relative in wanted:
        done = connection.run(quote("cat", f"{bundle_dir}/{relative}"), timeout=connection.device.timeout_s,
                              what=f"fetching {relative}")
        if done.returncode == 0:
            run.fetched[relative] = done.stdout


def _bundle_relative(reported, bundle_dir: str) -> str | None:
    """A path the device's command reported, relative to the copied bundle (None when it is not inside it)."""
    if not isinstance(reported, str):
        return None
    marker = "/" + bundle_dir.rstrip("/").rpartition("/")[2] + "/"  # the bundle folder's own name
    head, found, tail = ("/" + reported).partition(marker)
    return tail if found and tail and ".." not in tail.split("/") else None


def _bundle_folder(source: Path, files: list[LocalFile]) -> str:
    """One folder per workstation and bundle path, so a re-export sends only the files that changed."""
    key = f"{socket.gethostname()}:{source.resolve()}".encode()
    return f"{source.name}-{hashlib.sha256(key).hexdigest()[:10]}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("W0000")]
    return lines[-1] if lines else "no message"
