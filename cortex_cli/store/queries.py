"""The concept/token questions asked of the index, as GROUP BY queries in the database."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, func, select

from .database import Store
from .schema import ImageRow, SaliencyMapRow, SalientTokenRow


def first_run_with_class(store: Store, run_ids: Sequence[int], class_pks: Sequence[int]) -> int | None:
    """The first of `run_ids` (in the given order) holding salient tokens of one of the classes, or None."""
    with store.session() as s:
        for run_id in run_ids:
            hit = s.execute(
                select(SalientTokenRow.run_id).where(SalientTokenRow.run_id == run_id, SalientTokenRow.class_pk.in_([int(p) for p in class_pks]))
                .limit(1)
            ).first()
            if hit is not None:
                return run_id
    return None


def run_class_images(store: Store, run_id: int, class_pk: int, split: str, below_seed: int | None = None) -> list[tuple[int, int, str]]:
    """(image id, seed, sampler) of the class's `split` images the run indexed, by seed then id.

    With `below_seed`, only seeds 0 .. below_seed-1.
    """
    query = (
        select(ImageRow.id, ImageRow.seed, ImageRow.sampler)
        .join(SaliencyMapRow, SaliencyMapRow.image_id == ImageRow.id)
        .where(SaliencyMapRow.run_id == run_id, ImageRow.class_pk == class_pk, ImageRow.split == split)
        .order_by(ImageRow.seed, ImageRow.id)
    )
    if below_seed is not None:
        query = query.where(ImageRow.seed >= 0, ImageRow.seed < below_seed)
    with store.session() as s:
        return [(int(i), int(seed), str(sampler)) for i, seed, sampler in s.execute(query).all()]


def top_salient_tokens(store: Store, run_id: int, class_pks: Sequence[int], image_ids: Sequence[int], k: int
                       ) -> list[tuple[int, int, int, float]]:
    """(token, count, images holding it, mean TSV) of the k tokens most frequent in these images' top-n rows (of these classes).

    Ordered by count, then the smaller token id.
    """
    count = func.count().label("n")
    query = (
        select(SalientTokenRow.token, count, func.count(func.distinct(SalientTokenRow.image_id)), func.avg(SalientTokenRow.tsv))
        .where(SalientTokenRow.run_id == run_id, SalientTokenRow.class_pk.in_([int(p) for p in class_pks]),
               SalientTokenRow.image_id.in_(bindparam("ids", expanding=True, type_=SalientTokenRow.image_id.type)))
        .group_by(SalientTokenRow.token).order_by(count.desc(), SalientTokenRow.token.asc()).limit(k)
    )
    with store.session() as s:
        found = s.execute(query, {"ids": [int(i) for i in image_ids]}).all()
    return [(int(t), int(n), int(ni), float(m)) for t, n, ni, m in found]


def _token_rows(run_id: int, class_pks: Sequence[int], token: int):
    pks = [int(p) for p in class_pks]
    return (SalientTokenRow.run_id == run_id, SalientTokenRow.class_pk.in_(pks), SalientTokenRow.token == token)


def token_positions(store: Store, run_id: int, class_pks: Sequence[int], token: int, limit: int) -> list[tuple[int, int]]:
    """(image id, position) wherever `token` is salient in the first `limit` images (by id) of these classes that hold it.

    `class_pks`: a class's row id, or a concept's member classes' row ids.

    Ordered by image id, then rank.
    """
    first_images = (
        select(SalientTokenRow.image_id).where(*_token_rows(run_id, class_pks, token))
        .distinct().order_by(SalientTokenRow.image_id).limit(limit)
    )
    query = (
        select(SalientTokenRow.image_id, SalientTokenRow.position)
        .where(*_token_rows(run_id, class_pks, token), SalientTokenRow.image_id.in_(first_images))
        .order_by(SalientTokenRow.image_id, SalientTokenRow.rank)
    )
    with store.session() as s:
        return [(int(i), int(p)) for i, p in s.execute(query).all()]


def token_image_count(store: Store, run_id: int, class_pks: Sequence[int], token: int) -> int:
    """How many of these classes' images (a class, or a concept's members) indexed under the run hold `token` among their top-n."""
    with store.session() as s:
        return int(s.scalar(
            select(func.count(func.distinct(SalientTokenRow.image_id))).where(*_token_rows(run_id, class_pks, token))
        ) or 0)


def _split_images(model_id: int, split: str, below_seed: int | None):
    where = [ImageRow.model_id == model_id, ImageRow.split == split]
    if below_seed is not None:
        where += [ImageRow.seed >= 0, ImageRow.seed < below_seed]
    return where


def split_images(store: Store, model_id: int, split: str, *, below_seed: int | None = None, run_id: int | None = None) -> list[tuple[int, int]]:
    """(image id, class row id) of the model's `split` images (seeds below `below_seed`; indexed under `run_id`), any order."""
    query = select(ImageRow.id, ImageRow.class_pk).where(*_split_images(model_id, split, below_seed))
    if run_id is not None:
        query = query.join(SaliencyMapRow, SaliencyMapRow.image_id == ImageRow.id).where(SaliencyMapRow.run_id == run_id)
    with store.session() as s:
        return [(int(i), int(pk)) for i, pk in s.execute(query)]


def salient_pair_counts(store: Store, run_id: int, model_id: int, split: str, *, below_seed: int | None = None) -> list[tuple[int, int, int, int]]:
    """(class row id, token, count, images holding it) over the top-n rows of the run's `split` images (seeds below `below_seed`)."""
    query = (
        select(SalientTokenRow.class_pk, SalientTokenRow.token, func.count(), func.count(func.distinct(SalientTokenRow.image_id)))
        .join(ImageRow, ImageRow.id == SalientTokenRow.image_id)
        .where(SalientTokenRow.run_id == run_id, *_split_images(model_id, split, below_seed))
        .group_by(SalientTokenRow.class_pk, SalientTokenRow.token)
    )
    with store.session() as s:
        return [(int(pk), int(t), int(n), int(ni)) for pk, t, n, ni in s.execute(query)]


__all__ = [
    "first_run_with_class", "run_class_images", "salient_pair_counts", "split_images", "token_image_count", "token_positions",
    "top_salient_tokens",
]
