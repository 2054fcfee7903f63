"""Progress for the Python API: one event type, handed to a callback only when the caller gives one.

The library prints nothing; the CLI passes a callback that draws its progress bars and notes, a
notebook may pass `print` (an event reads as one line) or nothing at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

STAGE = "stage"  # a step of a long job began (export: "loading ...", "quantizing ...")
STEP = "step"  # one unit of counted work finished (bench: an artifact at a batch size; verify: a batch)
NOTE = "note"  # something the caller may want to tell a person (tuned settings used, a device's reason)


@dataclass(frozen=True)
class ProgressEvent:
    """One thing that happened: its kind (stage, step or note), a message, and done/total when counted."""

    kind: str
    message: str
    done: Optional[int] = None
    total: Optional[int] = None

    def __str__(self) -> str:
        count = f" [{self.done}/{self.total}]" if self.done is not None and self.total else ""
        return f"{self.message}{count}"


ProgressCallback = Callable[[ProgressEvent], None]


class Reporter:
    """Sends events to the caller's callback, or nowhere; what library code holds instead of a console."""

    def __init__(self, callback: Optional[ProgressCallback] = None):
        self.callback = callback

    def stage(self, message: str) -> None:
        self._send(ProgressEvent(STAGE, message))

    def step(self, message: str, done: Optional[int] = None, total: Optional[int] = None) -> None:
        self._send(ProgressEvent(STEP, message, done, total))

    def note(self, message: str) -> None:
        self._send(ProgressEvent(NOTE, message))

    def _send(self, event: ProgressEvent) -> None:
        if self.callback is not None:
            self.callback(event)


__all__ = ["NOTE", "STAGE", "STEP", "ProgressCallback", "ProgressEvent", "Reporter"]
