"""The saliency index: runs (`saliency_runs`), full TSV maps (`saliency_maps`) and top-n rows (`salient_tokens`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
from sqlalchemy import func, select

from . import run_counts
from .database import Store
from .dialect import insert_ignore
from .images import SQL_CHUNK
from .schema import ExtractorRow, SaliencyMapRow, SaliencyRunRow, SalientTokenRow, utcnow


@dataclass(frozen=True)
class RunKey:
    """The parameters that identify a saliency run: the columns of `uq_saliency_run` (`SaliencySettings.run_key()` + extractor)."""

    extractor_id: int
    samples: int
    alpha: float
    top_n: int
    reduce: str
    precision: str
    seed: int
    method: str = "smoothgrad"  # attribution method; the columns below are its parameters (neutral when unused)
    steps: int = 0
    baseline: str = "none"


@dataclass(frozen=True)
class RunInfo:
    """A saliency run: its id, extractor and parameters (those of `RunKey`)."""

    id: int
    extractor_id: int
    extractor: str
    samples: int
    alpha: float
    top_n: int
    reduce: str
    precision: str
    seed: int
    method: str = "smoothgrad"
    steps: int = 0
    baseline: str = "none"


KEY_COLUMNS = tuple(f.name for f in fields(RunKey))  # the columns of uq_saliency_run


def ensure_run(store: Store, model_id: int, key: RunKey) -> int:
    """The id of the saliency run with these parameters (created on first use, race-safe)."""
    values = {k: getattr(key, k) for k in KEY_COLUMNS} | {"alpha": float(key.alpha)}
    where = [getattr(SaliencyRunRow, k) == v for k, v in values.items()]
    with store.session() as s, s.begin():
        run_id = s.scalar(select(SaliencyRunRow.id).where(*where))
        if run_id is None:
            insert_ignore(s, SaliencyRunRow, [dict(model_id=model_id, created_at=utcnow(), **values)])
            run_id = s.scalar(select(SaliencyRunRow.id).where(*where))
    return int(run_id)


def runs(store: Store, model_id: int, extractor_id: int | None = None) -> list[RunInfo]:
    """Saliency runs of a model, newest first (optionally of one extractor)."""
    query = (
        select(SaliencyRunRow, ExtractorRow.name).join(ExtractorRow, ExtractorRow.id == SaliencyRunRow.extractor_id)
        .where(SaliencyRunRow.model_id == model_id).order_by(SaliencyRunRow.id.desc())
    )
    if extractor_id is not None:
        query = query.where(SaliencyRunRow.extractor_id == extractor_id)
    with store.session() as s:
        return [
            RunInfo(id=r.id, extractor=name, **{k: getattr(r, k) for k in KEY_COLUMNS})
            for r, name in s.execute(query).all()
        ]


def indexed_image_ids(store: Store, run_id: int, image_ids: Sequence[int]) -> set[int]:
    """Which of `image_ids` already have a TSV map under `run_id`."""
    done: set[int] = set()
    ids = list(image_ids)
    with store.session() as s:
        for start in range(0, len(ids), SQL_CHUNK):
            chunk = ids[start:start + SQL_CHUNK]
            done.update(s.scalars(select(SaliencyMapRow.image_id).where(SaliencyMapRow.run_id == run_id, SaliencyMapRow.image_id.in_(chunk))))
    return done


@dataclass(frozen=True)
class SalientRow:
    """One of an image's top-n tokens under a run."""

    image_id: int
    rank: int  # 0 = most salient
    position: int  # row * m + col
    token: int
    tsv: float


def insert_batch(
    store: Store, run_id: int, class_pk: int, maps: Sequence[tuple[int, bytes]], salient: Sequence[SalientRow], grids: np.ndarray,
    top: np.ndarray,
) -> set[int]:
    """Write one batch of a class's images under a run in one transaction: maps, top-n rows and the run's token counts.

    Rows already stored are skipped (ON CONFLICT DO NOTHING), and only images whose map this
    transaction inserted are added to the run's counts, so no image is ever counted twice.

    Args:
        store: the open database.
        run_id, class_pk: the run and the images' class row.
        maps: (image id, packed TSV map) of every image of the batch.
        salient: the images' top-n rows.
        grids: (images, m*m) the images' token grids, in the order of `maps`.
        top: (images, n) the tokens at their top-n positions, in the order of `maps`.

    Returns:
        The ids of the images whose maps were inserted here.
    """
    ids = [int(i) for i, _ in maps]
    map_rows = [{"run_id": run_id, "image_id": i, "tsv": blob} for i, (_, blob) in zip(ids, maps)]
    token_rows = [
        {"run_id": run_id, "image_id": r.image_id, "rank": r.rank, "class_pk": class_pk, "position": r.position, "token": r.token, "tsv": r.tsv}
        for r in salient
    ]
    with store.session() as s, s.begin():
        inserted = {int(r[0]) for r in insert_ignore(s, SaliencyMapRow, map_rows, returning=("image_id",))}
        insert_ignore(s, SalientTokenRow, token_rows)
        if inserted:  # maps another writer (or an earlier run) already wrote are counted already
            rows = [r for r, image_id in enumerate(ids) if image_id in inserted]
            run_counts.add_images(s, run_id, class_pk, [ids[r] for r in rows], grids[rows], top[rows])
    return inserted


def run_image_count(store: Store, run_id: int, class_pk: int) -> int:
    """How many images of a class the run has indexed."""
    with store.session() as s:
        return int(s.scalar(
            select(func.count(func.distinct(SalientTokenRow.image_id))).where(SalientTokenRow.run_id == run_id, SalientTokenRow.class_pk == class_pk)
        ) or 0)


def saliency_maps(store: Store, run_id: int, image_ids: Sequence[int]) -> dict[int, bytes]:
    """image id -> packed TSV map of those of `image_ids` indexed under the run."""
    found: dict[int, bytes] = {}
    ids = [int(i) for i in image_ids]
    with store.session() as s:
        for start in range(0, len(ids), SQL_CHUNK):
            query = select(SaliencyMapRow.image_id, SaliencyMapRow.tsv).where(
                SaliencyMapRow.run_id == run_id, SaliencyMapRow.image_id.in_(ids[start:start + SQL_CHUNK]))
            found.update({int(i): blob for i, blob in s.execute(query)})
    return found


def run_extractor_name(store: Store, run_id: int) -> str | None:
    """The name of the extractor a saliency run used (None: no such run)."""
    with store.session() as s:
        return s.scalar(select(ExtractorRow.name).join(SaliencyRunRow, SaliencyRunRow.extractor_id == ExtractorRow.id)
                        .where(SaliencyRunRow.id == run_id))


def newest_map(store: Store, image_id: int, extractor_id: int | None = None) -> tuple[int, bytes] | None:
    """(run id, packed TSV map) of the newest run that indexed the image (of one extractor if given), or None."""
    query = (
        select(SaliencyMapRow.run_id, SaliencyMapRow.tsv).join(SaliencyRunRow, SaliencyRunRow.id == SaliencyMapRow.run_id)
        .where(SaliencyMapRow.image_id == image_id).order_by(SaliencyMapRow.run_id.desc()).limit(1)
    )
    if extractor_id is not None:
        query = query.where(SaliencyRunRow.extractor_id == extractor_id)
    with store.session() as s:
        found = s.execute(query).first()
    return None if found is None else (int(found[0]), found[1])


__all__ = [
    "KEY_COLUMNS", "RunInfo", "RunKey", "SalientRow", "ensure_run", "insert_batch", "indexed_image_ids", "newest_map", "run_extractor_name", "run_image_count", "runs", "saliency_maps",
]
