"""The typed errors users see.

Each error carries the exit code the CLI returns and a message that fits on one line and says
how to fix the problem. Code raises these; only the CLI turns them into exit codes.
"""

from __future__ import annotations


class EdgecnnError(Exception):
    """Base class: a problem the user can act on."""

    exit_code = 2


class BadInputError(EdgecnnError):
    """The user asked for something that does not exist or cannot work (exit 2)."""


class UnknownModelError(BadInputError):
    """A model name that is neither registered nor an alias."""


class RegistryError(EdgecnnError):
    """A programming error in a registration (duplicate name, bad spec)."""


class MissingDependencyError(BadInputError):
    """An optional SDK is not installed; the message names the extra that brings it."""

    def __init__(self, module: str, extra: str, purpose: str = ""):
        self.module = module
        self.extra = extra
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(
            f"{module} is not installed{what}: pip install 'edgecnn[{extra}]'"
        )


class CheckFailedError(EdgecnnError):
    """A check ran and failed (accuracy parity, hash, threshold): exit 1."""

    exit_code = 1


def require(module: str, extra: str, purpose: str = ""):
    """Import an optional SDK lazily, or raise MissingDependencyError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(module, extra, purpose) from exc


class DiskFullError(EdgecnnError):
    """A write failed because the disk is full (exit 2: free space, or write somewhere else)."""


def disk_full_cause(exc: BaseException) -> OSError | None:
    """The ENOSPC OSError behind `exc` (itself, its cause or context chain), if there is one."""
    import errno

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return current
        if "No space left on device" in str(current):
            return current if isinstance(current, OSError) else OSError(errno.ENOSPC, str(current))
        current = current.__cause__ or current.__context__
    return None


def disk_full_error(cause: OSError, where: str | None = None) -> DiskFullError:
    """One line saying the disk is full, where, and how much is free there."""
    import os
    import shutil

    place = where or cause.filename or os.getcwd()
    folder = str(place)
    while folder and not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        free = f"{shutil.disk_usage(folder or '.').free / 2**20:.0f} MiB free there now"
    except OSError:
        free = "free space unknown"
    return DiskFullError(f"no space left on device writing {place} ({free}): free some space or write elsewhere (--out)")
