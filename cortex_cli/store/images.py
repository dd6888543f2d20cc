"""Generated images (token grids as stored blobs) and their per-class token counts: `images`, `token_counts`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from .database import Store
from .dialect import insert_ignore, upsert_add
from .schema import ClassRow, ImageRow, TokenCountRow

SQL_CHUNK = 500  # ids per IN (...) clause, well under SQLite's variable limit

# token -> (occurrences over all positions, number of images holding it)
TokenStats = dict[int, tuple[int, int]]


@dataclass(frozen=True)
class ImageGroup:
    """The identity an image shares with its batch: model, class row, split and sampler label."""

    model_id: int
    class_pk: int
    split: str
    sampler: str


@dataclass(frozen=True)
class ImageIdentity:
    """What identifies a stored image across databases (see `seeding.image_key`)."""

    class_id: int
    split: str
    seed: int
    sampler: str


def _seed_rows(group: ImageGroup):
    return select(ImageRow.seed, ImageRow.id, ImageRow.tokens).where(
        ImageRow.model_id == group.model_id, ImageRow.class_pk == group.class_pk, ImageRow.split == group.split,
        ImageRow.sampler == group.sampler,
    )


def stored_seeds(store: Store, group: ImageGroup, seeds: Sequence[int]) -> dict[int, tuple[int, bytes]]:
    """seed -> (image id, token blob) of the group's rows already stored for these seeds."""
    if not seeds:
        return {}
    with store.session() as s:
        rows = s.execute(_seed_rows(group).where(ImageRow.seed.between(min(seeds), max(seeds)))).all()
    wanted = set(seeds)
    return {seed: (image_id, blob) for seed, image_id, blob in rows if seed in wanted}


def insert_images(
    store: Store, group: ImageGroup, blobs: Mapping[int, bytes], stats_of: Callable[[list[int]], TokenStats],
) -> tuple[dict[int, int], dict[int, tuple[int, bytes]]]:
    """Insert one batch of images and add their token counts, in one transaction.

    Rows another process stored meanwhile are kept as they are and left out of the counts.

    Args:
        store: the open database.
        group: the batch's model, class, split and sampler.
        blobs: seed -> packed token grid.
        stats_of: the token statistics of the seeds actually inserted here (called only if some were).

    Returns:
        (seed -> id of the rows inserted here, seed -> (id, tokens) of the rows found stored).
    """
    rows = [
        {"model_id": group.model_id, "class_pk": group.class_pk, "split": group.split, "seed": seed,
         "sampler": group.sampler, "tokens": blob}
        for seed, blob in blobs.items()
    ]
    with store.session() as s, s.begin():
        ours = {seed: image_id for seed, image_id in insert_ignore(s, ImageRow, rows, returning=("seed", "id"))}
        if ours:
            counts = [
                {"model_id": group.model_id, "class_pk": group.class_pk, "split": group.split, "token": t, "count": c, "n_images": k}
                for t, (c, k) in stats_of([seed for seed in blobs if seed in ours]).items()
            ]
            upsert_add(s, TokenCountRow, counts, ("model_id", "class_pk", "split", "token"), ("count", "n_images"))
        theirs = {}
        if len(ours) < len(blobs):
            others = [seed for seed in blobs if seed not in ours]
            theirs = {seed: (image_id, blob) for seed, image_id, blob in s.execute(_seed_rows(group).where(ImageRow.seed.in_(others)))}
        return ours, theirs


def _by_id(store: Store, model_id: int, image_ids: Sequence[int], *columns) -> dict[int, tuple]:
    """image id -> the given columns (images joined with their class) of the model's images among `image_ids`."""
    found: dict[int, tuple] = {}
    unique = list(dict.fromkeys(int(i) for i in image_ids))
    with store.session() as s:
        for start in range(0, len(unique), SQL_CHUNK):
            query = (select(ImageRow.id, *columns).join(ClassRow, ClassRow.id == ImageRow.class_pk)
                     .where(ImageRow.model_id == model_id, ImageRow.id.in_(unique[start:start + SQL_CHUNK])))
            found.update({int(row[0]): tuple(row[1:]) for row in s.execute(query)})
    return found


def token_blobs(store: Store, model_id: int, image_ids: Sequence[int]) -> dict[int, bytes]:
    """image id -> packed token grid of the model's images among `image_ids` (ids of other models are absent)."""
    return {i: blob for i, (blob,) in _by_id(store, model_id, image_ids, ImageRow.tokens).items()}


def identities(store: Store, model_id: int, image_ids: Sequence[int]) -> dict[int, ImageIdentity]:
    """image id -> identity of the model's images among `image_ids` (ids of other models are absent)."""
    rows = _by_id(store, model_id, image_ids, ClassRow.class_id, ImageRow.split, ImageRow.seed, ImageRow.sampler)
    return {i: ImageIdentity(*row) for i, row in rows.items()}


def iter_token_blobs(store: Store, image_ids: Sequence[int]) -> Iterator[bytes]:
    """Packed token grids of the given images, read in chunks (order not guaranteed)."""
    ids = [int(i) for i in image_ids]
    with store.session() as s:
        for start in range(0, len(ids), SQL_CHUNK):
            yield from s.scalars(select(ImageRow.tokens).where(ImageRow.id.in_(ids[start:start + SQL_CHUNK])))


def list_images(store: Store, model_id: int, class_pk: int | None = None, split: str | None = None) -> list[tuple[int, int, int]]:
    """(image id, class id, seed) of a model's stored images, optionally of one class row / split, by id."""
    query = select(ImageRow.id, ClassRow.class_id, ImageRow.seed).join(ClassRow, ClassRow.id == ImageRow.class_pk).where(
        ImageRow.model_id == model_id
    )
    if class_pk is not None:
        query = query.where(ImageRow.class_pk == class_pk)
    if split is not None:
        query = query.where(ImageRow.split == split)
    with store.session() as s:
        return [tuple(r) for r in s.execute(query.order_by(ImageRow.id)).all()]


def image_class_id(store: Store, model_id: int, image_id: int) -> int | None:
    """The class id of a stored image of the model (None: no such image of that model)."""
    with store.session() as s:
        found = s.scalar(select(ClassRow.class_id).join(ImageRow, ImageRow.class_pk == ClassRow.id)
                         .where(ImageRow.id == image_id, ImageRow.model_id == model_id))
    return None if found is None else int(found)


def images_of_seeds(store: Store, model_id: int, split: str, samplers: Sequence[str], seeds: Sequence[int]) -> list[tuple[int, int]]:
    """(class row id, image id) of every class's images of these seeds, split and sampler labels."""
    query = select(ImageRow.class_pk, ImageRow.id).where(
        ImageRow.model_id == model_id, ImageRow.split == split, ImageRow.sampler.in_(list(samplers)), ImageRow.seed.in_(list(seeds)),
    )
    with store.session() as s:
        return [(int(pk), int(image_id)) for pk, image_id in s.execute(query)]


__all__ = [
    "ImageGroup", "ImageIdentity", "SQL_CHUNK", "TokenStats", "identities", "image_class_id", "images_of_seeds",
    "insert_images", "iter_token_blobs", "list_images", "stored_seeds", "token_blobs",
]
