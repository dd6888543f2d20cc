"""store/searches.py: concept-search restarts, stored once per (search key, restart) and read back per search (both backends)."""

from __future__ import annotations

import json

import pytest

from cortex_cli.store.registered_models import model_classes
from cortex_cli.store.searches import RESULT_COLUMNS, insert_restarts, stored_restarts

from store_rows import add_extractor, add_model

pytestmark = pytest.mark.both_backends


def _restart(model, extractor_id, class_pk, key, restart, objective):
    return dict(search_key=key, model_id=model.id, extractor_id=extractor_id, class_pk=class_pk, region="0:2,0:2", init="random",
                params="{}", restart=restart, seed=10 + restart, tokens=bytes([restart, 0, 1, 0]), snapshots=b"",
                t_star=json.dumps([[3, 2]]), objective=objective, p_target=0.5, judges="{}")


def test_restarts_are_stored_once_and_read_back_per_search(store):
    model = add_model(store)
    ext, cls = add_extractor(store, model), model_classes(store, model.id)[0].pk
    insert_restarts(store, [_restart(model, ext, cls, "a" * 64, r, 1.0 + r) for r in range(2)])
    # a rerun: restart 1 again (skipped, first result kept), restart 2 new; another search's restart 0
    insert_restarts(store, [_restart(model, ext, cls, "a" * 64, 1, 99.0), _restart(model, ext, cls, "a" * 64, 2, 3.0),
                            _restart(model, ext, cls, "b" * 64, 0, 7.0)])
    insert_restarts(store, [])
    found = stored_restarts(store, "a" * 64)
    assert sorted(found) == [0, 1, 2]
    assert {r: v["objective"] for r, v in found.items()} == {0: 1.0, 1: 2.0, 2: 3.0}
    assert set(found[1]) == set(RESULT_COLUMNS)
    assert (found[1]["tokens"], found[1]["seed"], json.loads(found[1]["t_star"])) == (bytes([1, 0, 1, 0]), 11, [[3, 2]])
    assert {r: v["objective"] for r, v in stored_restarts(store, "b" * 64).items()} == {0: 7.0}
    assert stored_restarts(store, "c" * 64) == {}
