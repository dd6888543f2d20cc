"""store/bulk.py: each backend's bulk writer inserts what is new, skips what is stored, and counts only the images it inserted."""

from __future__ import annotations

import sqlite3

import numpy as np
import psycopg
import pytest
from sqlalchemy import exc, select

from cortex_cli.store import bulk, index
from cortex_cli.store.registered_models import model_classes
from cortex_cli.store.schema import RunClassCountRow, RunTokenCountRow, SaliencyMapRow, SalientTokenRow

from store_rows import add_extractor, add_images, add_model

pytestmark = pytest.mark.both_backends


def _tsv(value: float) -> bytes:
    return np.full(4, value, dtype="<f4").tobytes()


@pytest.fixture
def run(store):
    """(run id, class pk, three image ids) of a fresh run over three stored images."""
    model = add_model(store)
    cls = model_classes(store, model.id)[0].pk
    ids = sorted(add_images(store, model, cls, [0, 1, 2]).values())
    key = index.RunKey(add_extractor(store, model), samples=2, alpha=0.2, top_n=2, reduce="max-abs", precision="fp32", seed=0)
    return index.ensure_run(store, model.id, key), cls, ids


def _write(store, run_id, cls, images, value, asked):
    maps = [(i, _tsv(value)) for i in images]
    tokens = [(i, rank, cls, rank, 40 + rank, value) for i in images for rank in range(2)]  # (image, rank, class, position, token, tsv)

    def counts_for(session, inserted):
        asked.append(list(inserted))
        n = len(inserted)
        return [("train", cls, 40, n, n, 2 * n, n)], [("train", cls, n)]

    with store.session() as s, s.begin():
        return bulk.WRITERS[s.get_bind().dialect.name](s, run_id, maps, tokens, counts_for)


def test_only_new_maps_are_written_and_counted(store, run):
    run_id, cls, ids = run
    asked: list[list[int]] = []
    assert _write(store, run_id, cls, ids[:2], 1.0, asked) == set(ids[:2])
    assert _write(store, run_id, cls, ids, 2.0, asked) == {ids[2]}  # ids[0:2] are stored: skipped, not overwritten
    assert _write(store, run_id, cls, ids, 3.0, asked) == set()  # nothing new: no counts asked for
    assert asked == [ids[:2], [ids[2]]]
    with store.session() as s:
        maps = {r.image_id: np.frombuffer(r.tsv, "<f4")[0] for r in s.scalars(select(SaliencyMapRow))}
        tokens = s.execute(select(SalientTokenRow.image_id, SalientTokenRow.rank, SalientTokenRow.token, SalientTokenRow.tsv)
                           .order_by(SalientTokenRow.image_id, SalientTokenRow.rank)).all()
        counts = s.execute(select(RunTokenCountRow.token, RunTokenCountRow.salient, RunTokenCountRow.salient_images,
                                  RunTokenCountRow.occurrences, RunTokenCountRow.occurrence_images)).all()
        images = s.scalars(select(RunClassCountRow.images)).all()
    assert maps == {ids[0]: 1.0, ids[1]: 1.0, ids[2]: 2.0}
    assert [tuple(t) for t in tokens] == [(i, r, 40 + r, 1.0 if i != ids[2] else 2.0) for i in ids for r in range(2)]
    assert [tuple(c) for c in counts] == [(40, 3, 3, 6, 3)]  # the two writes' counts added, the third's never made
    assert images == [3]


def test_the_ceiling_writes_the_same_rows_without_conflict_handling(store, run):
    run_id, cls, ids = run
    with store.session() as s, s.begin():
        bulk.ceiling(s, run_id, [(i, _tsv(0.5)) for i in ids], [(i, 0, cls, 3, 7, 0.5) for i in ids])
    with store.session() as s:
        assert s.execute(select(SaliencyMapRow.image_id).order_by(SaliencyMapRow.image_id)).scalars().all() == ids
        assert s.execute(select(SalientTokenRow.position, SalientTokenRow.token)).all() == [(3, 7)] * 3
        assert s.scalars(select(RunTokenCountRow)).all() == []  # no counts: the raw path only
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError, exc.IntegrityError)), store.session() as s, s.begin():  # a stored key is an error here, not skipped
        bulk.ceiling(s, run_id, [(ids[0], _tsv(0.5))], [])
