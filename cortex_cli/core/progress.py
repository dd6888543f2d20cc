"""The one shape of a progress callback that library functions take: `progress(done, total, info)`."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Called with the units done so far, the units of the whole task, and a short note (may be empty)."""

    def __call__(self, done: int, total: int, info: str = "") -> None: ...


def report(progress: Progress | None, done: int, total: int, info: str = "") -> None:
    """Call `progress` unless it is None (`info` goes by keyword, the name the protocol gives it)."""
    if progress is not None:
        progress(done, total, info=info)


def named(progress: Progress | None, name: str) -> Progress | None:
    """`progress` with `name` leading its note: one callback for a call that works through several classes or stages."""
    if progress is None:
        return None

    def update(done: int, total: int, info: str = "") -> None:
        progress(done, total, info=f"{name}: {info}" if info else name)

    return update
