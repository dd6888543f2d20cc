"""The few statements SQLite and PostgreSQL spell differently: insert-or-ignore and upserts.

Both dialects share `INSERT ... ON CONFLICT`, so every writer can race another process safely:
a row that is already there (or is being written by a transaction that then commits) is skipped
or merged by the database itself, never by a read-then-write in Python. Rows are written in key
order so that two PostgreSQL transactions upserting overlapping keys lock them in the same order
and cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Row, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..core.errors import CortexError

SUPPORTED = ("sqlite", "postgresql")
_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def _table(table: Any) -> Table:
    """A Core Table from a Table or a mapped class."""
    return getattr(table, "__table__", table)


def _insert(session: Session, table: Any):
    name = session.get_bind().dialect.name
    try:
        return _INSERTS[name](_table(table))
    except KeyError:
        raise CortexError(f"cortex stores its index in SQLite or PostgreSQL, not {name!r}") from None


def _sorted(rows: Iterable[dict], keys: Sequence[str]) -> list[dict]:
    return sorted(rows, key=lambda r: tuple(r[k] for k in keys))


def insert_ignore(session: Session, table: Any, rows: Sequence[dict], *, returning: Sequence[str] = ()) -> list[Row]:
    """INSERT ... ON CONFLICT DO NOTHING (any unique key) inside the caller's transaction.

    Args:
        session: the open session (its transaction is used, not committed).
        table: a mapped class or a Table.
        rows: column -> value dicts, all with the same keys.
        returning: columns to return for the rows actually inserted (skipped rows return nothing).

    Returns:
        One row of `returning` values per inserted row (empty when `returning` is empty).
    """
    if not rows:
        return []
    stmt = _insert(session, table).on_conflict_do_nothing()
    if returning:
        t = _table(table)
        return list(session.execute(stmt.returning(*(t.c[c] for c in returning)), list(rows)).all())
    session.execute(stmt, list(rows))
    return []


def upsert_add(session: Session, table: Any, rows: Sequence[dict], key_columns: Sequence[str], add_columns: Sequence[str]) -> None:
    """INSERT, or on a `key_columns` conflict add the row's `add_columns` to the stored ones (counters)."""
    if not rows:
        return
    t = _table(table)
    stmt = _insert(session, t)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(key_columns), set_={c: t.c[c] + stmt.excluded[c] for c in add_columns},
    )
    session.execute(stmt, _sorted(rows, key_columns))


def upsert_replace(session: Session, table: Any, rows: Sequence[dict], key_columns: Sequence[str], update_columns: Sequence[str]) -> None:
    """INSERT, or on a `key_columns` conflict overwrite `update_columns` with the row's values."""
    if not rows:
        return
    t = _table(table)
    stmt = _insert(session, t)
    stmt = stmt.on_conflict_do_update(index_elements=list(key_columns), set_={c: stmt.excluded[c] for c in update_columns})
    session.execute(stmt, _sorted(rows, key_columns))


__all__ = ["SUPPORTED", "insert_ignore", "upsert_add", "upsert_replace"]
