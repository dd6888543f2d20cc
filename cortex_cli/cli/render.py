"""Rendering for the terminal: Rich consoles, tables, progress and JSON. Only the CLI uses it."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any, Iterator

from rich.cells import cell_len
from rich.console import Console
from rich.highlighter import ReprHighlighter
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from ..core.jsonable import to_jsonable
from ..core.progress import Progress

console = Console()
err_console = Console(stderr=True)


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout (plain print: no Rich wrapping)."""
    print(json.dumps(to_jsonable(obj), indent=2))


_NUMBER = re.compile(r"[+-]?(\d[\d,]*(\.\d*)?|\.\d+)(e[+-]?\d+)?%?")
_NUMBER_GLUE = re.compile(r"[\s/,\[\]]+")  # between the numbers of one cell: '[+0.10, +0.21]', '-0.30 / 0.28'
_NO_VALUE = {"", "-", "n/a"}
# Where a cell may wrap besides spaces: after '/' or '-' between letters ('CE/INTEGRATED-GRADIENTS'), before '@'.
_BREAK = re.compile(r"(?<=\s)(?=\S)|(?<=[A-Za-z][/-])(?=[A-Za-z])|(?=@)")
_highlight = ReprHighlighter()


def _is_number(cell: str) -> bool:
    return all(_NUMBER.fullmatch(part) for part in _NUMBER_GLUE.split(cell) if part) and any(c.isdigit() for c in cell)


def _pieces(text: str) -> list[str]:
    return [p for p in _BREAK.split(text) if p]


def _wrap(text: str, width: int) -> str:
    """Greedy wrap at `_BREAK` points; a piece wider than `width` is left whole (Rich folds it)."""
    lines, line = [], ""
    for piece in _pieces(text):
        if line and cell_len((line + piece).rstrip()) > width:
            lines.append(line.rstrip())
            line = piece
        else:
            line += piece
    return "\n".join(lines + [line.rstrip()])


def _chrome(n_columns: int) -> int:
    """Borders and padding of a default Rich table: '│ ' before each column, ' │' after the last."""
    return 3 * n_columns + 1


def _fitted(title: str | None, columns: list[str], rows: list[list[str]], numeric: list[bool], width: int) -> list[Table]:
    """One table at its natural widths, else one whose labels wrap, else the value columns split over several."""
    n = len(columns)
    natural = [max([cell_len(columns[i])] + [cell_len(r[i]) for r in rows]) for i in range(n)]
    if sum(natural) + _chrome(n) <= width:
        return [_rich_table(title, columns, rows, numeric, None)]
    # numbers never wrap; headers and labels may, at `_BREAK` points
    minimum = [max([cell_len(p.strip()) for p in _pieces(columns[i])]
                   + [cell_len(r[i]) if numeric[i] else max(map(cell_len, _pieces(r[i])), default=0) for r in rows])
               for i in range(n)]
    if sum(minimum) + _chrome(n) <= width:
        widths, spare = list(minimum), width - _chrome(n) - sum(minimum)
        while spare > 0 and any(w < m for w, m in zip(widths, natural)):
            # widen labels before headers (a wrapped label costs a line per row), the most wrapped first
            i = max(range(n), key=lambda i: (widths[i] < natural[i] and not numeric[i], natural[i] - widths[i]))
            widths[i] += 1
            spare -= 1
        return [_rich_table(title, columns, rows, numeric, widths)]
    keys = next((i for i in range(n) if numeric[i]), n)  # leading label columns, repeated in every part
    keys = min(max(keys, 1), n - 1)
    parts: list[list[int]] = [[]]
    for i in range(keys, n):
        if parts[-1] and sum(minimum[j] for j in [*range(keys), *parts[-1], i]) + _chrome(keys + len(parts[-1]) + 1) > width:
            parts.append([])
        parts[-1].append(i)
    if len(parts) == 1:  # the labels alone are too wide: let Rich fold them rather than cut them
        return [_rich_table(title, columns, rows, numeric, None, fold=True)]
    out = []
    for k, part in enumerate(parts, 1):
        pick = [*range(keys), *part]
        out += _fitted(f"{title or ''} ({k} of {len(parts)})".strip(), [columns[i] for i in pick],
                       [[r[i] for i in pick] for r in rows], [numeric[i] for i in pick], width)
    return out


def _rich_table(title: str | None, columns: list[str], rows: list[list[str]], numeric: list[bool],
                widths: list[int] | None, fold: bool = False) -> Table:
    if widths is not None:
        columns = [_wrap(c, w) for c, w in zip(columns, widths)]
        rows = [[c if numeric[i] else _wrap(c, widths[i]) for i, c in enumerate(r)] for r in rows]
    t = Table(title=Text(title) if title else None, show_lines=any("\n" in c for r in rows for c in r))
    for i, c in enumerate(columns):
        t.add_column(Text(c), justify="right" if numeric[i] else "left", no_wrap=numeric[i] and not fold,
                     width=None if widths is None else widths[i], overflow="fold")
    for r in rows:
        t.add_row(*[_highlight(Text(c)) for c in r])
    return t


def prior_nll_line(result: Any, name: str, start: str = "source") -> str | None:
    """'prior NLL under X: a -> b nats per token' of an edit or search result (`realism.py`), or None without one.

    `name` is the target's; a concept's NLL is conditioned on its first member, which the line names by class id.
    """
    if getattr(result, "prior_nll", None) is None:
        return None
    under = name if result.concept is None else f"{name}'s first member (class {result.target_classes[0]})"
    before = f"{start} {result.prior_nll_source:.3f} -> " if getattr(result, "prior_nll_source", None) is not None else ""
    return (f"prior NLL under {under}: {before}result {result.prior_nll:.3f} nats per token "
            "(the model's own prior; higher: less like what it samples)")


def table(title: str | None, columns: list[str], rows: list[list[Any]], *, out: Console | None = None) -> None:
    """Print a table that fits the console: numbers right-aligned and never wrapped or cut.

    Too wide at natural widths, labels and headers wrap (at spaces, after '/' or '-', before '@');
    still too wide, the value columns are split over several tables that repeat the leading labels.
    Cells are plain text (no Rich markup: '[n-1]' prints as written). `out` defaults to stdout's console.
    """
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r] for r in rows]
    numeric = [any(r[i] not in _NO_VALUE for r in cells) and all(r[i] in _NO_VALUE or _is_number(r[i]) for r in cells)
               for i in range(len(columns))]
    out = out or console
    for t in _fitted(title, list(columns), cells, numeric, out.width):
        out.print(t)


@contextlib.contextmanager
def progress(description: str, quiet: bool = False) -> Iterator[Progress]:
    """A Rich progress bar; yields `update(done, total, info)` (the library's `Progress`). Silent when `quiet`."""
    if quiet:
        yield lambda done, total, info="": None
        return
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with RichProgress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task(description, total=None, info="")

        def update(done: int, total: int, info: str = "") -> None:
            bar.update(task, completed=done, total=total, info=info)

        yield update


@contextlib.contextmanager
def deferred_progress(description: str, quiet: bool = False) -> Iterator[Progress]:
    """Like `progress`, but the bar appears at the first update: errors raised before it print alone."""
    with contextlib.ExitStack() as stack:
        bars: list[Progress] = []

        def update(done: int, total: int, info: str = "") -> None:
            if not bars:
                bars.append(stack.enter_context(progress(description, quiet=quiet)))
            bars[0](done, total, info)

        yield update
