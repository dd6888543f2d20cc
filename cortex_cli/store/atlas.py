"""The reads the token atlas (`cortex atlas`) needs beyond `store/queries.py`: strongest occurrences,
per-image top positions, how many classes share each token, and a class's edits and concept searches.

Every query reads one class or one token at a time (or one GROUP BY row per token), so an atlas of
1000 classes never holds the index in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, or_, select

from .database import Store
from .images import SQL_CHUNK
from .schema import ClassRow, ConceptSearchRow, EditRow, ExtractorRow, ImageRow, RunClassCountRow, RunTokenCountRow, SalientTokenRow


@dataclass(frozen=True)
class Occurrence:
    """One image's strongest salient occurrence of a token."""

    image_id: int
    class_pk: int
    position: int  # row * m + col
    tsv: float
    rank: int  # 0 = the image's most salient position


@dataclass(frozen=True)
class TokenSpread:
    """How many classes share a token under a run (over the classes asked about)."""

    token: int
    salient_classes: int  # classes whose indexed images hold it among their top-n
    occurrence_classes: int  # classes whose indexed images hold it anywhere
    salient: int  # occurrences in the top-n sets, all those classes together
    salient_images: int


@dataclass(frozen=True)
class EditRecord:
    """An `edits` row as the atlas shows it."""

    id: int
    source_class: int | None  # class id
    target_class: int  # class id
    method: str
    region: str
    extractor: str | None
    source_tokens: bytes
    result_tokens: bytes
    probabilities: str  # JSON
    created_at: datetime


@dataclass(frozen=True)
class SearchRecord:
    """A `concept_searches` row (one restart) as the atlas shows it."""

    id: int
    search_key: str
    region: str
    init: str
    restart: int
    extractor: str | None
    tokens: bytes
    t_star: str  # JSON [[token, positions], ...]
    objective: float
    p_target: float
    judges: str  # JSON


def indexed_classes(store: Store, run_id: int, split: str) -> dict[int, int]:
    """class row id -> images of `split` the run has indexed, for every class it has indexed."""
    query = select(RunClassCountRow.class_pk, RunClassCountRow.images).where(
        RunClassCountRow.run_id == run_id, RunClassCountRow.split == split, RunClassCountRow.images > 0)
    with store.session() as s:
        return {int(pk): int(n) for pk, n in s.execute(query)}


def strongest_occurrences(
    store: Store, run_id: int, split: str, token: int, limit: int, *, class_pk: int | None = None,
) -> list[Occurrence]:
    """The `limit` images (of one class, or any) where `token` is most salient, one occurrence each.

    Each image contributes its highest-TSV position holding the token; ordered by TSV (descending),
    then image id.
    """
    s_ = SalientTokenRow
    where = [s_.run_id == run_id, s_.token == token, ImageRow.split == split]
    if class_pk is not None:
        where.append(s_.class_pk == class_pk)
    nth = func.row_number().over(partition_by=s_.image_id, order_by=(s_.tsv.desc(), s_.rank)).label("nth")
    ranked = (
        select(s_.image_id, s_.class_pk, s_.position, s_.tsv, s_.rank, nth)
        .join(ImageRow, ImageRow.id == s_.image_id).where(*where).subquery()
    )
    query = (
        select(ranked.c.image_id, ranked.c.class_pk, ranked.c.position, ranked.c.tsv, ranked.c.rank)
        .where(ranked.c.nth == 1).order_by(ranked.c.tsv.desc(), ranked.c.image_id).limit(limit)
    )
    with store.session() as s:
        return [Occurrence(int(i), int(pk), int(p), float(v), int(r)) for i, pk, p, v, r in s.execute(query)]


def top_positions(store: Store, run_id: int, image_ids: Sequence[int], n: int) -> dict[int, list[int]]:
    """image id -> the positions of its n most salient tokens under the run (most salient first)."""
    ids = [int(i) for i in image_ids]
    found: dict[int, list[int]] = {i: [] for i in ids}
    with store.session() as s:
        for start in range(0, len(ids), SQL_CHUNK):
            query = (
                select(SalientTokenRow.image_id, SalientTokenRow.position)
                .where(SalientTokenRow.run_id == run_id, SalientTokenRow.image_id.in_(ids[start:start + SQL_CHUNK]),
                       SalientTokenRow.rank < n)
                .order_by(SalientTokenRow.image_id, SalientTokenRow.rank)
            )
            for image_id, position in s.execute(query):
                found[int(image_id)].append(int(position))
    return found


def token_spread(store: Store, run_id: int, split: str, class_pks: Sequence[int] | None = None) -> list[TokenSpread]:
    """Every token the run's `split` images hold, with how many classes (of `class_pks`, default all) share it.

    One row per token from the per-run counts, ordered by salient classes, occurrence classes (both
    descending), then token id.
    """
    t = RunTokenCountRow
    salient_classes = func.sum(case((t.salient > 0, 1), else_=0)).label("salient_classes")
    occurrence_classes = func.sum(case((t.occurrences > 0, 1), else_=0)).label("occurrence_classes")
    query = (
        select(t.token, salient_classes, occurrence_classes, func.sum(t.salient), func.sum(t.salient_images))
        .where(t.run_id == run_id, t.split == split).group_by(t.token)
        .order_by(salient_classes.desc(), occurrence_classes.desc(), t.token)
    )
    if class_pks is not None:
        query = query.where(t.class_pk.in_([int(pk) for pk in class_pks]))
    with store.session() as s:
        return [TokenSpread(int(tok), int(sc or 0), int(oc or 0), int(n or 0), int(ni or 0)) for tok, sc, oc, n, ni in s.execute(query)]


def tokens_of_classes(store: Store, run_id: int, split: str, class_pks: Sequence[int]) -> set[int]:
    """The tokens that any of these classes' indexed `split` images hold (salient or anywhere)."""
    pks = [int(pk) for pk in class_pks]
    found: set[int] = set()
    with store.session() as s:
        for start in range(0, len(pks), SQL_CHUNK):
            found.update(int(t) for t in s.scalars(
                select(RunTokenCountRow.token).distinct()
                .where(RunTokenCountRow.run_id == run_id, RunTokenCountRow.split == split,
                       RunTokenCountRow.class_pk.in_(pks[start:start + SQL_CHUNK]))
            ))
    return found


def class_activity(store: Store, model_id: int) -> dict[int, tuple[int, int, int, int]]:
    """class id -> (edits touching it, their newest id, concept-search restarts, their newest id), for classes with any."""
    activity: dict[int, list[int]] = {}

    def add(class_id: int, slot: int, n: int, newest: int) -> None:
        row = activity.setdefault(int(class_id), [0, 0, 0, 0])
        row[slot] += int(n)
        row[slot + 1] = max(row[slot + 1], int(newest))

    with store.session() as s:
        for column in (EditRow.source_class, EditRow.target_class):
            query = (select(column, func.count(), func.max(EditRow.id)).where(EditRow.model_id == model_id, column.is_not(None))
                     .group_by(column))
            for class_id, n, newest in s.execute(query):
                add(class_id, 0, n, newest)
        query = (
            select(ClassRow.class_id, func.count(), func.max(ConceptSearchRow.id)).join(ClassRow, ClassRow.id == ConceptSearchRow.class_pk)
            .where(ConceptSearchRow.model_id == model_id).group_by(ClassRow.class_id)
        )
        for class_id, n, newest in s.execute(query):
            add(class_id, 2, n, newest)
    return {k: (v[0], v[1], v[2], v[3]) for k, v in activity.items()}


def class_edits(store: Store, model_id: int, class_id: int, limit: int) -> list[EditRecord]:
    """The newest `limit` edits of the model whose source or target is the class."""
    query = (
        select(EditRow, ExtractorRow.name).outerjoin(ExtractorRow, ExtractorRow.id == EditRow.extractor_id)
        .where(EditRow.model_id == model_id, or_(EditRow.source_class == class_id, EditRow.target_class == class_id))
        .order_by(EditRow.id.desc()).limit(limit)
    )
    with store.session() as s:
        return [
            EditRecord(r.id, r.source_class, r.target_class, r.method, r.region, name, r.source_tokens, r.result_tokens,
                       r.probabilities, r.created_at)
            for r, name in s.execute(query)
        ]


def class_searches(store: Store, model_id: int, class_pk: int) -> list[SearchRecord]:
    """Every stored concept-search restart of the class, by search then restart."""
    query = (
        select(ConceptSearchRow, ExtractorRow.name).outerjoin(ExtractorRow, ExtractorRow.id == ConceptSearchRow.extractor_id)
        .where(ConceptSearchRow.model_id == model_id, ConceptSearchRow.class_pk == class_pk)
        .order_by(ConceptSearchRow.search_key, ConceptSearchRow.restart)
    )
    with store.session() as s:
        return [
            SearchRecord(r.id, r.search_key, r.region, r.init, r.restart, name, r.tokens, r.t_star, float(r.objective),
                         float(r.p_target), r.judges)
            for r, name in s.execute(query)
        ]


__all__ = [
    "EditRecord", "Occurrence", "SearchRecord", "TokenSpread", "class_activity", "class_edits", "class_searches",
    "indexed_classes", "strongest_occurrences", "token_spread", "tokens_of_classes", "top_positions",
]
