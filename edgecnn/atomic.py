"""Atomic file writes: a temp file in the destination folder, then one rename.

Readers (a device copying a bundle, CI reading a report) never see a half-written file. Files get
the mode open() would give (0o666 less the umask), not mkstemp's private 0o600.
"""

from __future__ import annotations

import json
import os
import tempfile
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
    """Indented JSON with a trailing newline."""
    return write_text_atomic(path, json.dumps(payload, indent=2, default=json_default) + "\n")


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

    The nearest existing folder above it must be a writable directory (missing folders below it are
    created when the file is written), and the path itself must not be a directory.
    """
    if path is None:
        return None
    from edgecnn.errors import BadInputError

    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"{option} {path} is a directory, not a file")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise BadInputError(f"{option} {path}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise BadInputError(f"{option} {path}: {ancestor} is not writable")
    return path
