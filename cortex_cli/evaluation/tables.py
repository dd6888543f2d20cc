"""The tables of evaluation results: `TableSpec` and the cell formats every evaluation's `tables()` shares.

A leaf: each evaluation module builds its own tables from its stored JSON (`<module>.tables(result)`), the
report and the terminal print them, and neither needs the other to exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class TableSpec:
    """A titled table of already-formatted cells."""

    title: str
    columns: list[str]
    rows: list[list[str]]


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and x == x  # nan is no number to print


def num(x: Any, digits: int = 3) -> str:
    """`x` with `digits` decimals, or 'n/a' (None, nan, text)."""
    return f"{x:.{digits}f}" if _number(x) else "n/a"


def pct(x: Any) -> str:
    """A share as a percentage with one decimal, or 'n/a'."""
    return f"{100 * x:.1f}%" if _number(x) else "n/a"


def signed_pct(x: Any) -> str:
    """A change of a share as a signed percentage, or 'n/a'."""
    return f"{100 * x:+.1f}%" if _number(x) else "n/a"


def signed(x: Any) -> str:
    """A signed number with two decimals, or 'n/a'."""
    return f"{x:+.2f}" if _number(x) else "n/a"


def interval(ci: dict) -> str:
    """A stored bootstrap interval (`metrics.BootstrapCI` as JSON) as '[low, high]', signed."""
    return f"[{ci['low']:+.3f}, {ci['high']:+.3f}]"


def method_label(m: str) -> str:
    """A selection's name in a table: 'CORTEX CE', 'random', 'baseline (frequency)', ..."""
    if m == "random":
        return "random"
    if m == "baseline":
        return "baseline (frequency)"
    if m == "specific":
        return "baseline (specific)"
    if m.startswith("baseline@"):
        return f"baseline cut to n of {m.split('@', 1)[1].upper()}"
    if m == "frequency":
        return "frequency baseline"
    return f"CORTEX {m.upper()}"


def first_table_rows(specs: list[TableSpec]) -> list[dict[str, Any]]:
    """The rows of the first table, keyed by its column names (a result's `table_rows()`)."""
    spec = specs[0]
    return [dict(zip(spec.columns, row)) for row in spec.rows]


__all__ = ["TableSpec", "first_table_rows", "interval", "method_label", "num", "pct", "signed", "signed_pct"]
