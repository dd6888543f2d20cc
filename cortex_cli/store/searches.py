"""Concept searches (`cortex optimize`): one `concept_searches` row per restart, insert-or-skip."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from .database import Store
from .dialect import insert_ignore
from .schema import ConceptSearchRow

# the columns a rerun reads back to rebuild a stored restart's result
RESULT_COLUMNS = ("tokens", "snapshots", "t_star", "seed", "objective", "p_target", "judges")


def stored_restarts(store: Store, search_key: str) -> dict[int, dict[str, Any]]:
    """restart -> its `RESULT_COLUMNS` of the restarts stored for this search."""
    with store.session() as s:
        return {
            r.restart: {c: getattr(r, c) for c in RESULT_COLUMNS}
            for r in s.scalars(select(ConceptSearchRow).where(ConceptSearchRow.search_key == search_key))
        }


def insert_restarts(store: Store, rows: Sequence[dict[str, Any]]) -> None:
    """Insert restarts (column -> value dicts), skipping any (search_key, restart) already stored."""
    if not rows:
        return
    with store.session() as s, s.begin():
        insert_ignore(s, ConceptSearchRow, rows)


__all__ = ["RESULT_COLUMNS", "insert_restarts", "stored_restarts"]
