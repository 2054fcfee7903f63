"""The rules every value from a user or a file passes where it enters: CLI options, manifests, tuning and
fleet files, profiles.

One rule per kind of value (a number of seconds, a count, a path inside a folder, a command line, an output
path), so `--budget -1`, a manifest's `"threads": "lots"` and a fleet's `timeout_s = -1` are refused the same
way: a BadInputError naming the field and the fix, before any work. This module sits at the bottom of the
import graph: it imports nothing from edgecnn but the errors.
"""

from __future__ import annotations

import math
import os
import shlex
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from edgecnn.errors import BadInputError


def number(value: Any, name: str, *, minimum: float | None = None, above: float | None = None,
           maximum: float | None = None, unit: str = "") -> float:
    """A finite real number within the bounds (`above`: strictly greater); NaN, inf, text and bools refused."""
    unit = f" {unit}" if unit else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadInputError(f"{name} must be a finite number{unit}, got {value!r}")
    if above is not None and not value > above:
        raise BadInputError(f"{name} must be more than {above:g}{unit}, got {value:g}")
    if minimum is not None and value < minimum:
        raise BadInputError(f"{name} must be at least {minimum:g}{unit}, got {value:g}")
    if maximum is not None and value > maximum:
        raise BadInputError(f"{name} must be at most {maximum:g}{unit}, got {value:g}")
    return float(value)


def seconds(value: Any, name: str) -> float:
    """A duration: finite and more than 0 seconds (budgets, timeouts)."""
    return number(value, name, above=0, unit="seconds")


def optional_seconds(value: Any, name: str) -> float | None:
    return None if value is None else seconds(value, name)


def integer(value: Any, name: str, *, minimum: int | None = None) -> int:
    """A whole number (not a bool, not text such as "../../etc", not 2.5), at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInputError(f"{name} must be a whole number, got {value!r}")
    if minimum is not None and value < minimum:
        raise BadInputError(f"{name} must be at least {minimum}, got {value}")
    return value


def inside(root: str | Path, relative: Any, name: str) -> Path:
    """`root / relative`, refused unless it is a relative path that stays inside `root` (links resolved)."""
    if not isinstance(relative, str) or not relative or Path(relative).is_absolute():
        raise BadInputError(f"{name} must be a path inside {root}, got {relative!r}")
    base = Path(root).resolve()
    resolved = (base / relative).resolve()
    if base not in resolved.parents:
        raise BadInputError(f"{name} {relative!r} leaves {base}: a bundle's files stay inside its folder")
    return resolved


def confined_folder(value: Any, name: str) -> str:
    """A device work folder: relative to the login folder and below it (no '..'), or an absolute path stated as such.

    `~/x` is taken as `x` (relative paths already start at the login folder).
    """
    if not isinstance(value, str) or not value.strip():
        raise BadInputError(f"{name} must be a folder name, e.g. \".cache/edgecnn/remote\", got {value!r}")
    text = value.strip()
    if text.startswith("~/"):
        text = text[2:]
    path = PurePosixPath(text)
    if ".." in path.parts or "\0" in text:
        raise BadInputError(f"{name} {value!r} climbs out with '..': give a folder below the login folder "
                            "(e.g. \".cache/edgecnn/remote\") or an absolute path such as \"/opt/edgecnn\"")
    if path.is_absolute():
        if path == PurePosixPath("/"):
            raise BadInputError(f"{name} {value!r} is the root folder: give a folder of its own, e.g. \"/opt/edgecnn\"")
        return str(path)
    if str(path) in ("", "."):
        raise BadInputError(f"{name} {value!r} is the login folder itself: give a folder of its own, "
                            "e.g. \".cache/edgecnn/remote\"")
    return str(path)


def command_words(value: Any, name: str) -> tuple[str, ...]:
    """A command line as words (`python -m edgecnn` -> 3 words), each to be shell-quoted on its own."""
    if not isinstance(value, str):
        raise BadInputError(f"{name} must be a command line string, e.g. \"python3 -m edgecnn\", got {value!r}")
    try:
        words = tuple(shlex.split(value))
    except ValueError as exc:
        raise BadInputError(f"{name} {value!r} cannot be split into words ({exc}): check its quotes") from None
    if not words:
        raise BadInputError(f"{name} is empty: give the edgecnn command on the device, e.g. \"edgecnn\"")
    return words


def first_non_finite(payload: Any, where: str = "") -> str | None:
    """The key path of the first NaN or infinity in a JSON-bound payload (None when there is none)."""
    if isinstance(payload, float):
        return None if math.isfinite(payload) else (where or "the value")
    if isinstance(payload, dict):
        items = ((f"{where}.{k}" if where else str(k), v) for k, v in payload.items())
    elif isinstance(payload, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(payload))
    else:
        return None
    for key, value in items:
        found = first_non_finite(value, key)
        if found is not None:
            return found
    return None


def _nearest_existing(path: Path) -> Path:
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    return ancestor


def _probe_creation(folder: Path, option: str, target: Path) -> None:
    """Create and remove a hidden folder in `folder`: the one check that sees read-only mounts, /proc and /sys."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".edgecnn-probe-", dir=folder))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise BadInputError(f"{option} {target}: cannot write in {folder} ({reason}): choose a writable folder") from None


def writable_file(path: str | Path, option: str) -> Path:
    """An output file that can be written: not a folder, and the nearest existing folder above it takes new entries."""
    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"{option} {path} is a directory, not a file")
    if path.exists() and not path.is_file():  # a device or a pipe (/dev/null, /dev/stdout) is written in place
        return path
    ancestor = _nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise BadInputError(f"{option} {path}: {ancestor} is not a directory")
    _probe_creation(ancestor, option, path)
    return path


def writable_folder(path: str | Path, option: str) -> Path:
    """An output folder that can be made (or replaced) where it is: its parent, or the nearest folder above, takes new entries."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BadInputError(f"{option} {path} exists and is not a folder")
    ancestor = _nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise BadInputError(f"{option} {path}: {ancestor} is not a directory")
    _probe_creation(ancestor, option, path)
    return path
