"""The training progress bar: a rich bar over all steps, a line per epoch above it."""

from __future__ import annotations


class ProgressBar:
    """A rich bar over all steps, with a line per epoch above it; silent when disabled."""

    def __init__(self, *, enabled: bool, total: int, done: int, title: str):
        self.enabled = enabled
        self.total, self.done, self.title = total, done, title
        self._progress = None
        self._task = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.title, total=self.total, completed=self.done, status="")
        return self

    def advance(self, status: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, status=status)

    def epoch_line(self, line: str) -> None:
        if self._progress is not None:
            self._progress.console.print(line, highlight=False)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        return False
