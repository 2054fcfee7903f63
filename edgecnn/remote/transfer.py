"""Copying a bundle to a device: what there is to send, the tar stream over ssh, and the cleanup line.

The stream goes to `edgecnn device-agent receive` on the device, which writes each file atomically
and answers with the sha256 of what it wrote; any difference from ours is a failed copy.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from edgecnn.remote.ssh import Connection, RemoteError, quote


@dataclass(frozen=True)
class LocalFile:
    relative: str  # POSIX path inside the bundle folder
    path: Path
    sha256: str
    size: int


def local_files(source: Path) -> list[LocalFile]:
    """Every file of a bundle folder (hidden staging files left out), or the one artifact file."""
    from edgecnn.bundle import file_sha256
    from edgecnn.errors import BadInputError

    if source.is_file():
        return [LocalFile(source.name, source, file_sha256(source), source.stat().st_size)]
    if not source.is_dir():
        raise BadInputError(f"{source} does not exist: pass a bundle folder (edgecnn export --out) or an artifact file")
    found = []
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            found.append(LocalFile(relative.as_posix(), path, file_sha256(path), path.stat().st_size))
    return found


def send_files(connection: Connection, files: list[LocalFile], remote_dir: str, timeout_s: float) -> None:
    """Stream `files` as one tar into `remote_dir` on the device and check every sha256 it reports back."""
    device = connection.device
    receiver = connection.popen(quote(*device.command_words, "device-agent", "receive", remote_dir))
    try:
        with tarfile.open(fileobj=receiver.stdin, mode="w|", format=tarfile.PAX_FORMAT) as archive:
            for item in files:
                archive.add(item.path, arcname=item.relative, recursive=False)
    except BrokenPipeError:
        pass  # the device stopped reading: its stderr below says why
    try:
        stdout, stderr = receiver.communicate(timeout=timeout_s)  # closes stdin: the end of the stream
    except subprocess.TimeoutExpired:
        receiver.kill()
        raise RemoteError(f"{device.name}: copying the bundle timed out after {timeout_s:.0f} s", kind="timeout") from None
    if receiver.returncode != 0:
        message = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
        raise RemoteError(f"{device.name}: copying the bundle failed: {message[-1] if message else 'no message'}")
    received = json.loads(stdout.decode().strip().splitlines()[-1]).get("hashes", {})
    wrong = [f.relative for f in files if received.get(f.relative) != f.sha256]
    if wrong:
        raise RemoteError(f"{device.name}: {len(wrong)} file(s) arrived with another sha256 ({', '.join(wrong[:3])}): "
                          "the copy was damaged, run again")


def remove_command(remote_dir: str, sent: list[str], run_dir: str) -> str:
    """A shell line removing the files this job sent, the folders left empty and the run's output folder."""
    parts = [f"rm -rf -- {quote(run_dir)}"]
    if sent:
        parts.append("rm -f -- " + " ".join(quote(f"{remote_dir}/{relative}") for relative in sent))
        parts.append(f"find {quote(remote_dir)} -depth -type d -empty -delete 2>/dev/null")
    return "; ".join(parts) + "; true"
