"""store/evaluations.py: evaluation rows, per model, oldest first, JSON kept as stored (both backends)."""

from __future__ import annotations

import pytest

from cortex_cli.store.evaluations import insert_evaluation, model_evaluations

from store_rows import add_model

pytestmark = pytest.mark.both_backends


def test_evaluations_are_listed_per_model_in_insertion_order(store):
    a, b = add_model(store, "a"), add_model(store, "b")
    first = insert_evaluation(store, a.id, "stability", '{"seeds": [0, 1]}', '{"x": 1.5}', "/tmp/s.png")
    insert_evaluation(store, b.id, "edit", "{}", "{}", "")
    second = insert_evaluation(store, a.id, "stability", "{}", '{"x": 2}', "")
    rows = model_evaluations(store, a.id)
    assert [r.id for r in rows] == [first, second] and first != second  # oldest first; the other model's row is not here
    assert (rows[0].kind, rows[0].params, rows[0].result, rows[0].plot_path) == ("stability", '{"seeds": [0, 1]}', '{"x": 1.5}', "/tmp/s.png")
    assert rows[0].model_id == a.id and rows[0].created_at <= rows[1].created_at
    assert [r.kind for r in model_evaluations(store, b.id)] == ["edit"] and model_evaluations(store, 999) == []
