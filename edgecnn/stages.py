"""Progress as one-line stage messages: what long work reports, and the no-op when nobody listens."""

from __future__ import annotations

from typing import Callable

Stage = Callable[[str], None]


def quiet(message: str) -> None:
    """The stage callback that says nothing (the library prints nothing unless asked)."""
