"""Per-run token counts: which classes use a token, read in milliseconds at any index size.

`run_token_counts` holds, per (run, split, class, token), how often the token is salient (in the
per-image top-n sets) and how often it occurs at all, over exactly the images the run indexed;
`run_class_counts` holds how many images that is. Both are added to in the transaction that
writes an image's saliency map, and only for maps that transaction actually inserted, so two
writers racing on one image (or a rerun after a kill) can never count it twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from ..core.errors import CortexError
from .database import Store
from .images import SQL_CHUNK
from .schema import ClassRow, ImageRow, RunClassCountRow, RunTokenCountRow

VIEWS = ("salient", "occurrence")
_COLUMNS = {"salient": ("salient", "salient_images"), "occurrence": ("occurrences", "occurrence_images")}


@dataclass(frozen=True)
class ClassCount:
    """One class's use of a token under a run."""

    class_pk: int
    class_id: int
    count: int
    images: int
    token_rank: int  # 1 + tokens this class uses more often (ties: smaller token id first)


def _per_token(arrays: np.ndarray) -> dict[int, tuple[int, int]]:
    """token -> (occurrences, images holding it) over the rows of a (images, positions) array."""
    tokens, counts = np.unique(arrays, return_counts=True)
    ordered = np.sort(arrays, axis=1)
    first = np.ones_like(ordered, dtype=bool)
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    _, holders = np.unique(ordered[first], return_counts=True)  # same token order as `tokens`
    return dict(zip(tokens.tolist(), zip(counts.tolist(), holders.tolist())))


def count_rows(class_pk_of: Sequence[int], split_of: Sequence[str], grids: np.ndarray, salient: np.ndarray) -> tuple[list[tuple], list[tuple]]:
    """The count rows that newly indexed images add, one per (split, class, token) and per (split, class).

    Args:
        class_pk_of, split_of: each image's class row and split.
        grids: (images, m*m) their token grids.
        salient: (images, n) the tokens of their top-n positions.

    Returns:
        (split, class_pk, token, salient, salient_images, occurrences, occurrence_images) rows and
        (split, class_pk, images) rows, in key order.
    """
    groups: dict[tuple[str, int], list[int]] = {}
    for row, key in enumerate(zip(split_of, class_pk_of)):
        groups.setdefault((str(key[0]), int(key[1])), []).append(row)
    token_rows, class_rows = [], []
    for (split, class_pk), rows in sorted(groups.items()):
        present = _per_token(grids[rows])
        top = _per_token(salient[rows])
        for token, (n, held) in sorted(present.items()):
            token_rows.append((split, class_pk, token, *top.get(token, (0, 0)), n, held))
        class_rows.append((split, class_pk, len(rows)))
    return token_rows, class_rows


def splits_of(session: Session, image_ids: Sequence[int]) -> dict[int, str]:
    """image id -> split, read inside the caller's transaction."""
    found: dict[int, str] = {}
    ids = sorted({int(i) for i in image_ids})
    for start in range(0, len(ids), SQL_CHUNK):
        found.update((int(i), str(s)) for i, s in session.execute(
            select(ImageRow.id, ImageRow.split).where(ImageRow.id.in_(ids[start:start + SQL_CHUNK]))))
    return found


def images_indexed(store: Store, run_id: int, split: str) -> int:
    """How many images of `split` (all classes) the run has indexed."""
    with store.session() as s:
        return int(s.scalar(select(func.sum(RunClassCountRow.images)).where(RunClassCountRow.run_id == run_id,
                                                                           RunClassCountRow.split == split)) or 0)


def classes_using(store: Store, run_id: int, split: str, token: int, top: int, view: str) -> list[ClassCount]:
    """The `top` classes using `token` most under the run, as a salient token or as a plain occurrence.

    Ordered by count (descending), then class id; each with the token's rank within that class.
    """
    if view not in VIEWS:
        raise CortexError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    count_name, images_name = _COLUMNS[view]
    t = RunTokenCountRow.__table__
    count, images = t.c[count_name], t.c[images_name]
    mine = and_(t.c.run_id == run_id, t.c.split == split)
    query = (
        select(t.c.class_pk, ClassRow.class_id, count, images).join(ClassRow, ClassRow.id == t.c.class_pk)
        .where(mine, t.c.token == token, count > 0).order_by(count.desc(), ClassRow.class_id).limit(top)
    )
    with store.session() as s:
        found = s.execute(query).all()
        result = []
        for pk, class_id, n, held in found:
            above = s.scalar(
                select(func.count()).select_from(t)
                .where(mine, t.c.class_pk == pk, or_(count > n, and_(count == n, t.c.token < token)))
            )
            result.append(ClassCount(int(pk), int(class_id), int(n), int(held), 1 + int(above or 0)))
    return result


__all__ = ["ClassCount", "VIEWS", "count_rows", "splits_of", "classes_using", "images_indexed"]
