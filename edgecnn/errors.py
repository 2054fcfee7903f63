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
