"""Rendering for the terminal: Rich consoles, tables, progress and JSON. Only the CLI uses it."""

from __future__ import annotations

import contextlib
import json
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..jsonable import to_jsonable

console = Console()
err_console = Console(stderr=True)


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout (plain print: no Rich wrapping)."""
    print(json.dumps(to_jsonable(obj), indent=2))


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title, show_lines=False)
    for c in columns:
        t.add_column(c, justify="right" if c[:1].islower() is False and False else "left")
    for r in rows:
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r])
    console.print(t)


@contextlib.contextmanager
def progress(description: str, quiet: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A Rich progress bar; yields `update(done, total)`. Silent when `quiet`."""
    if quiet:
        yield lambda done, total, **_: None
        return
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task(description, total=None, info="")

        def update(done: int, total: int, info: str = "") -> None:
            bar.update(task, completed=done, total=total, info=info)

        yield update


@contextlib.contextmanager
def deferred_progress(description: str, quiet: bool = False) -> Iterator[Callable[[int, int], None]]:
    """Like `progress`, but the bar appears at the first update: errors raised before it print alone."""
    with contextlib.ExitStack() as stack:
        bars: list[Callable[..., None]] = []

        def update(done: int, total: int, **kwargs) -> None:
            if not bars:
                bars.append(stack.enter_context(progress(description, quiet=quiet)))
            bars[0](done, total, **kwargs)

        yield update
