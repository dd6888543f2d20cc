"""Stored evaluation results: rows of `evaluations` (params and result stay JSON strings here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from .database import Store
from .schema import EvaluationRow


@dataclass(frozen=True)
class EvaluationRecord:
    """An `evaluations` row as stored."""

    id: int
    model_id: int
    kind: str
    params: str  # JSON
    result: str  # JSON
    plot_path: str
    created_at: datetime


def insert_evaluation(store: Store, model_id: int, kind: str, params: str, result: str, plot_path: str) -> int:
    """Store one evaluation and return its row id."""
    with store.session() as s, s.begin():
        row = EvaluationRow(model_id=model_id, kind=kind, params=params, result=result, plot_path=plot_path)
        s.add(row)
        s.flush()
        return row.id


def model_evaluations(store: Store, model_id: int) -> list[EvaluationRecord]:
    """Every stored evaluation of a model, oldest first (ties: by id)."""
    with store.session() as s:
        rows = s.scalars(
            select(EvaluationRow).where(EvaluationRow.model_id == model_id).order_by(EvaluationRow.created_at, EvaluationRow.id)
        ).all()
        return [EvaluationRecord(r.id, r.model_id, r.kind, r.params, r.result, r.plot_path, r.created_at) for r in rows]


__all__ = ["EvaluationRecord", "insert_evaluation", "model_evaluations"]
