"""The saliency index: runs (`saliency_runs`), full TSV maps (`saliency_maps`) and top-n rows (`salient_tokens`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, fields

import numpy as np
from sqlalchemy import select

from . import bulk, run_counts
from .database import Store
from .dialect import insert_ignore
from .images import SQL_CHUNK
from .schema import ExtractorRow, SaliencyMapRow, SaliencyRunRow, utcnow


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
    noise: str = "philox"  # SmoothGrad's noise generator: 'philox', 'host' (runs made before migration 0013), 'none' (other methods)
    target: str = "class"  # what the run explains: each image's class logit, or a concept target (`cortex_cli.models.targets`)


@dataclass(frozen=True)
class RunInfo(RunKey):
    """A saliency run: its id and extractor's name, beside its parameters (those of `RunKey`)."""

    _: KW_ONLY
    id: int
    extractor: str


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
class IndexRows:
    """Finished index work for some images of one class under a run, as columns: what a write adds.

    Attributes:
        class_pk: the images' class row.
        image_ids: (n,) the images.
        maps: their packed TSV maps (`indexing.pack_tsv`), in the order of `image_ids`.
        grids: (n, m*m) their token grids (for the run's occurrence counts).
        top: (n, top_n) the tokens at their top-n positions (for the run's salient counts).
        salient_image_ids, ranks, positions, tokens, tsv: the top-n rows, one entry per row.
    """

    class_pk: int
    image_ids: np.ndarray
    maps: Sequence[bytes]
    grids: np.ndarray
    top: np.ndarray
    salient_image_ids: np.ndarray
    ranks: np.ndarray
    positions: np.ndarray
    tokens: np.ndarray
    tsv: np.ndarray

    def __len__(self) -> int:
        return len(self.image_ids)


def _bulk_rows(parts: Sequence[IndexRows]) -> tuple[list[tuple], list[tuple]]:
    """(image id, map) rows and (image id, rank, class, position, token, tsv) rows, in key order (the lock order)."""
    maps = sorted((int(i), blob) for p in parts for i, blob in zip(p.image_ids.tolist(), p.maps))
    columns = [np.concatenate([getattr(p, name) for p in parts]) for name in ("salient_image_ids", "ranks", "positions", "tokens", "tsv")]
    class_of = np.concatenate([np.full(len(p.salient_image_ids), p.class_pk) for p in parts])
    order = np.lexsort((columns[1], columns[0]))
    image, rank, position, token = (c[order].tolist() for c in columns[:4])
    tsv = columns[4][order].astype(np.float64).tolist()  # float32 values widened exactly
    return maps, list(zip(image, rank, class_of[order].tolist(), position, token, tsv))


def write_ceiling(store: Store, run_id: int, parts: Sequence[IndexRows]) -> None:
    """The same map and top-n rows through the backend's raw bulk path in one transaction (`bulk.ceiling`): no conflict
    handling, no counts. A benchmark's yardstick for `write_index`; never for real runs."""
    maps, tokens = _bulk_rows(parts)
    with store.session() as s, s.begin():
        bulk.ceiling(s, run_id, maps, tokens)


def write_index(store: Store, run_id: int, parts: Sequence[IndexRows]) -> set[int]:
    """Write finished index work in one transaction, through the backend's bulk path (`bulk`).

    Rows already stored are skipped, and only images whose map this transaction inserted are added
    to the run's counts, so no image is ever counted twice, whoever else writes at the same time.

    Returns:
        The ids of the images whose maps were inserted here.
    """
    parts = [p for p in parts if len(p)]
    if not parts:
        return set()
    maps, tokens = _bulk_rows(parts)
    ids = np.concatenate([p.image_ids for p in parts]).astype(np.int64)
    grids = np.concatenate([p.grids for p in parts])
    top = np.concatenate([p.top for p in parts])
    classes = np.concatenate([np.full(len(p), p.class_pk) for p in parts])

    def counts_for(session, inserted: list[int]) -> bulk.CountRows:
        _, first = np.unique(ids, return_index=True)  # an image handed over twice is counted once
        rows = first[np.isin(ids[first], inserted)]
        splits = run_counts.splits_of(session, inserted)
        return run_counts.count_rows(classes[rows].tolist(), [splits[int(i)] for i in ids[rows]], grids[rows], top[rows])

    with store.session() as s, s.begin():
        return bulk.WRITERS[s.get_bind().dialect.name](s, run_id, maps, tokens, counts_for)


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


__all__ = [
    "KEY_COLUMNS", "IndexRows", "RunInfo", "RunKey", "ensure_run", "indexed_image_ids", "write_ceiling", "write_index", "run_extractor_name",
    "runs", "saliency_maps",
]
