"""Progress bars (rich) for long runs; silent when ``quiet``."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
        console=None,
    )


@contextmanager
def user_progress(total: int, description: str, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """Yields a callback ``(done, total)`` advancing a bar of departed users."""
    if quiet:
        yield lambda done, total: None
        return
    with _progress() as progress:
        task = progress.add_task(f"{description}: users done (served or out of rounds)", total=total)
        step = max(1, total // 1000)  # a redraw per user would cost more than a user in long runs
        shown = [0]

        def update(done: int, total: int) -> None:
            if done - shown[0] >= step or done == total:
                shown[0] = done
                progress.update(task, completed=done)

        yield update


@contextmanager
def count_progress(total: int, description: str, quiet: bool) -> Iterator[Callable[[], None]]:
    """Yields a callback advancing a bar by one step."""
    if quiet:
        yield lambda: None
        return
    with _progress() as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)
