"""Atomic file writes: a temp file in the destination folder, then one rename.

Readers (a device copying a bundle, CI reading a report) never see a half-written file. Files get
the mode open() would give (0o666 less the umask), not mkstemp's private 0o600.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


def default_file_mode() -> int:
    """0o666 less the umask: what open() would give."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call `write(temp_path)`, then move the temp file to `path` (removed on any failure).

    A `path` that is a device or a pipe (`--json /dev/null`, `/dev/stdout`) is written in place: a rename
    would replace it with a regular file (as root, /dev/null itself).
    """
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        write(str(path))
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def json_default(value: Any):
    """numpy scalars and arrays, tuples of them, paths: everything our reports and manifests hold."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    """Indented JSON with a trailing newline; a NaN or infinity is refused (no other JSON reader accepts them)."""
    return write_text_atomic(path, json_text(payload, path))


def json_text(payload: Any, path: str | Path = "JSON") -> str:
    """`payload` as strict JSON text: a non-finite number fails here, naming its key, not in a later reader."""
    try:
        return json.dumps(payload, indent=2, default=json_default, allow_nan=False) + "\n"
    except ValueError:
        from edgecnn.validate import first_non_finite

        # Round-trip through the lenient encoder so numpy values are plain floats when the key is looked for.
        where = first_non_finite(json.loads(json.dumps(payload, default=json_default)))
        raise ValueError(f"refusing to write {path}: {where} is not a finite number (NaN/Infinity are not JSON)") from None


def read_json(path: str | Path, *, what: str = "JSON file", hint: str = "", expect: type | None = None) -> Any:
    """Parse a JSON file; missing, malformed or (with `expect`) of the wrong kind: a BadInputError naming it.

    `hint` is the fix appended to the message (e.g. "rebuild on this device: edgecnn build BUNDLE").
    """
    payload = read_document(path, json.loads, (json.JSONDecodeError,), what=what, hint=hint, kind="JSON")
    if expect is not None and not isinstance(payload, expect):
        from edgecnn.errors import BadInputError

        kind = "a JSON object" if expect is dict else f"JSON of type {expect.__name__}"
        raise BadInputError(f"{path} must hold {kind}{': ' + hint if hint else ''}")
    return payload


def read_document(path: str | Path, parse: Callable[[str], Any], errors: tuple[type[Exception], ...], *,
                  what: str, hint: str = "", kind: str) -> Any:
    """Read and parse a text file (JSON, TOML): missing or unparseable is one BadInputError naming it."""
    from edgecnn.errors import BadInputError

    path = Path(path)
    suffix = f": {hint}" if hint else ""
    try:
        return parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"{what} {path} not found{suffix}") from None
    except (OSError, UnicodeDecodeError, *errors) as exc:
        raise BadInputError(f"{what} {path} cannot be read as {kind}: {exc}{suffix}") from None


def check_output_path(path: str | Path | None, *, option: str = "output") -> Path | None:
    """Refuse, before any work, an output file that could not be written (BadInputError naming it).

    The nearest existing folder above it must take new entries (tried, so a read-only mount, /proc or /sys is
    seen), and the path itself must not be a directory. The rule lives in edgecnn.validate.
    """
    if path is None:
        return None
    from edgecnn.validate import writable_file

    return writable_file(path, option)


def claim_output(out: str | Path, *, option: str = "--out") -> Path:
    """Claim `out` for this process before any work: `.NAME.claim` beside it, made exclusively, holding our PID.

    Two exports to one folder used to both work for minutes and the later one failed at the very end; now the
    second is refused at once. A claim whose process is gone (killed) is taken over. Returns the marker, for
    `release_claim`. A folder that cannot be written in is a BadInputError here too.
    """
    from edgecnn.errors import BadInputError

    out = Path(out)
    marker = out.parent / f".{out.name}.claim"
    for _ in range(3):
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _claim_holder(marker)
            if holder is None or (holder != os.getpid() and process_alive(holder)):
                who = f"process {holder}" if holder else "another process"
                raise BadInputError(f"{out} is being written by {who} right now: wait for it to finish, "
                                    f"or choose another {option}") from None
            Path(marker).unlink(missing_ok=True)  # a dead export's (or our own earlier) claim
            continue
        except OSError as exc:
            raise BadInputError(f"{option} {out}: cannot write in {out.parent} ({exc.strerror or exc}): "
                                "choose a writable folder") from None
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        return marker
    raise BadInputError(f"{out} is being claimed by several processes at once: run one export per {option}")


def release_claim(marker: str | Path) -> None:
    Path(marker).unlink(missing_ok=True)


def _claim_holder(marker: Path) -> int | None:
    """The PID in a claim; None while its writer has not written it yet (taken as alive)."""
    try:
        text = Path(marker).read_text().strip()
    except FileNotFoundError:
        return 0  # released meanwhile: free to take
    except OSError:
        return None
    if not text.isdigit():  # still being written, unless its writer died at that very moment long ago
        try:
            return 0 if time.time() - Path(marker).stat().st_mtime > 10 else None
        except OSError:
            return 0
    return int(text)


def process_alive(pid: int) -> bool:
    """Whether process `pid` still runs here (a claim's or a staging folder's writer)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True
