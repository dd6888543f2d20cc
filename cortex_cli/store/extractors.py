"""Registered extractors: rows of `extractors` (their JSON columns stay strings here)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from .database import Store
from .dialect import upsert_replace
from .schema import ExtractorRow


@dataclass(frozen=True)
class ExtractorRecord:
    """An `extractors` row as stored."""

    id: int
    model_id: int
    name: str
    arch: str
    hparams: str  # JSON {"config": ..., "train": ...}
    ckpt_path: str
    ckpt_sha256: str
    metrics: str  # JSON


def _record(row: ExtractorRow) -> ExtractorRecord:
    return ExtractorRecord(row.id, row.model_id, row.name, row.arch, row.hparams, row.ckpt_path, row.ckpt_sha256, row.metrics)


def upsert_extractor(
    store: Store, model_id: int, name: str, *, arch: str, hparams: str, ckpt_path: str, ckpt_sha256: str, metrics: str,
) -> ExtractorRecord:
    """Insert the extractor `name` of a model, or overwrite the stored one of that name; the row as stored."""
    values = dict(arch=arch, hparams=hparams, ckpt_path=ckpt_path, ckpt_sha256=ckpt_sha256, metrics=metrics)
    with store.session() as s, s.begin():
        # one statement, so that two processes registering the same name cannot collide
        upsert_replace(s, ExtractorRow, [dict(model_id=model_id, name=name, **values)], ("model_id", "name"), tuple(values))
        return _record(s.scalar(select(ExtractorRow).where(ExtractorRow.model_id == model_id, ExtractorRow.name == name)))


def model_extractors(store: Store, model_id: int) -> list[ExtractorRecord]:
    """Every extractor of a model, by name."""
    with store.session() as s:
        rows = s.scalars(select(ExtractorRow).where(ExtractorRow.model_id == model_id).order_by(ExtractorRow.name)).all()
        return [_record(r) for r in rows]


__all__ = ["ExtractorRecord", "model_extractors", "upsert_extractor"]
