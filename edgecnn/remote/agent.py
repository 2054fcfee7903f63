"""The device side of a remote run: what `edgecnn device-agent ...` does on the device (never imports torch).

    probe     what this device is: machine, CPU, Python, edgecnn, which runtimes import (JSON on stdout)
    lock      hold the device's lock while stdin stays open; say who holds it while waiting
    receive   unpack a tar stream from stdin into a folder, each file atomically; print their sha256

Every answer is one JSON object per line on stdout, so the workstation reads them as they come.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import platform
import re
import socket
import sys
import tarfile
import time
from pathlib import Path, PurePosixPath
from typing import IO, Any, Iterable

LOCK_NAME = "lock"
HOLDER_NAME = "lock.holder.json"
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def emit(payload: dict, out: IO[str] | None = None) -> None:
    out = out or sys.stdout
    out.write(json.dumps(payload) + "\n")
    out.flush()


# --- probe -------------------------------------------------------------------------------------------
def emulation() -> str | None:
    """'qemu-user ...' when this process is most likely another instruction set emulated on this CPU, else None.

    qemu-user hides itself from the emulated process but not from its children: the parent process's
    command line starts with the qemu binary (binfmt_misc puts it there). Its emulated CPUs also
    report an implementer code of 0x00 in /proc/cpuinfo, which no real ARM core has.
    """
    try:
        parent = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        parent = ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        cpuinfo = ""
    if os.path.basename(parent).startswith("qemu-"):
        how = f"qemu-user ({os.path.basename(parent)})"
    elif re.search(r"^CPU implementer\s*:\s*0x00\s*$", cpuinfo, re.MULTILINE):
        how = "qemu (CPU implementer 0x00)"
    else:
        return None
    return (f"{how}: {platform.machine()} code emulated on another CPU; latency measured here says nothing "
            "about the real device, accuracy does")


def runtime_report(wanted: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Per registered runtime: the device extra that brings it, its version if installed, and (for `wanted`)
    whether it really imports here."""
    from edgecnn.backends import backends

    wanted = set(wanted)
    requirements = _extra_requirements()
    deploy = backends(deploy_only=True)
    device_extras = [set(requirements[b.device_extra]) for b in deploy if b.device_extra in requirements]
    common = set.intersection(*device_extras) if device_extras else set()  # pillow: not a runtime
    report = {}
    for backend in deploy:
        extras = [backend.device_extra] + [a for a in backend.aliases if a in requirements]
        entry: dict[str, Any] = {"extra": backend.device_extra, "version": None, "package": None}
        for extra in extras:
            dists = [d for d in requirements.get(extra, []) if d not in common]
            versions = [_installed_version(d) for d in dists]
            if dists and all(versions):  # the runtime's own package comes first in its extra
                entry.update(version=versions[0], package=dists[0])
                break
        if backend.name in wanted and entry["version"]:
            entry["import_error"] = _import_error(entry["package"])
        report[backend.name] = entry
    return report


def _extra_requirements() -> dict[str, list[str]]:
    """edgecnn's extras -> the distributions each requires, in order (from the installed package's metadata)."""
    from importlib import metadata

    found: dict[str, list[str]] = {}
    for requirement in metadata.requires("edgecnn") or ():
        marker = _EXTRA_MARKER.search(requirement)
        name = _NAME.match(requirement)
        if marker and name and not name.group(1).startswith("edgecnn"):
            found.setdefault(marker.group(1), []).append(name.group(1).lower().replace("_", "-"))
    return found


def _installed_version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _import_error(dist: str) -> str | None:
    """None when the distribution's top-level module imports here, else the error in one line."""
    import importlib
    from importlib import metadata

    modules = [m for m, dists in metadata.packages_distributions().items()
               if dist in {d.lower().replace("_", "-") for d in dists} and not m.startswith("_")]
    if not modules:
        return f"{dist} is installed but has no importable module"
    try:
        importlib.import_module(sorted(modules, key=len)[0])
    except Exception as exc:  # noqa: BLE001 - any failure to import is the answer
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
    return None


def probe(wanted: Iterable[str] = ()) -> dict[str, Any]:
    """What the workstation needs to know before sending anything."""
    import edgecnn
    from edgecnn.bench import cpu_model  # the name bench itself reports

    return {
        "machine": platform.machine(), "system": platform.system(), "cpu": cpu_model(),
        "cores": os.cpu_count(), "python": platform.python_version(), "edgecnn": edgecnn.__version__,
        "hostname": socket.gethostname(), "user": getpass.getuser(), "emulated": emulation(),
        "home": str(Path.home()), "runtimes": runtime_report(wanted),
        "torch_loaded": "torch" in sys.modules,
    }


# --- lock ----------------------------------------------------------------------------------------------
def hold_lock(workdir: Path, holder: dict, *, hashes_of: Path | None = None, stdin: IO[bytes] | None = None) -> None:
    """Take the device lock (waiting, and saying who holds it), report, hold it until stdin closes."""
    workdir.mkdir(parents=True, exist_ok=True)
    stdin = stdin or sys.stdin.buffer
    with open(workdir / LOCK_NAME, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            emit({"event": "busy", "holder": _read_holder(workdir)})
            fcntl.flock(handle, fcntl.LOCK_EX)
        holder = {**holder, "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (workdir / HOLDER_NAME).write_text(json.dumps(holder))
        emit({"event": "locked", "hashes": hashes(hashes_of) if hashes_of else {}})
        try:
            while stdin.read(1 << 16):
                pass
        finally:
            (workdir / HOLDER_NAME).unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_holder(workdir: Path) -> dict:
    try:
        return json.loads((workdir / HOLDER_NAME).read_text())
    except (OSError, ValueError):
        return {}


def hashes(root: Path) -> dict[str, str]:
    """sha256 of every file below `root` (relative POSIX paths); {} when it does not exist."""
    from edgecnn.bundle import file_sha256

    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


# --- receive -------------------------------------------------------------------------------------------
def receive(dest: Path, stream: IO[bytes] | None = None) -> dict[str, str]:
    """Unpack a tar stream of regular files into `dest`, each written to a temp name then renamed."""
    from edgecnn.atomic import write_atomic
    from edgecnn.bundle import file_sha256

    dest.mkdir(parents=True, exist_ok=True)
    received = {}
    with tarfile.open(fileobj=stream or sys.stdin.buffer, mode="r|") as archive:
        for member in archive:
            relative = PurePosixPath(member.name)
            if not member.isfile() or relative.is_absolute() or ".." in relative.parts:
                raise ValueError(f"refusing tar member {member.name!r} (only relative regular files)")
            source = archive.extractfile(member)
            target = dest.joinpath(*relative.parts)
            write_atomic(target, lambda tmp: _copy(source, tmp))
            received[relative.as_posix()] = file_sha256(target)
    return received


def _copy(source: IO[bytes], path: str) -> None:
    with open(path, "wb") as out:
        while chunk := source.read(1 << 20):
            out.write(chunk)
