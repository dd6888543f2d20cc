"""Migration 0014: `models.options` keeps what a backend needs besides two files (LlamaGen's sizes).

A filled 0013 database keeps every row and its models have no options; a model registered with options reads
them back; downgrade refuses while such a model exists, then drops the column and keeps every row.
"""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, update

from cortex_cli.store import registered_models as model_store
from cortex_cli.store.schema import ModelRow
from tests.store.test_migration_0009 import database_at, upgraded_keeping_every_row
from tests.store.test_migration_0013 import _migrate
from tests.store.test_migrations import contents, empty_url  # noqa: F401  (empty_url is a fixture)

pytestmark = pytest.mark.both_backends


def test_options_are_added_empty_read_back_and_block_a_lossy_downgrade(empty_url):
    url = empty_url("at0013")
    engine = database_at(url, "0013")
    assert "options" not in {c["name"] for c in inspect(engine).get_columns("models")}
    store, legacy_columns, rows = upgraded_keeping_every_row(url, engine)
    models = model_store.list_models(store)
    assert models and all(m.options == () and m.backend_options == {} for m in models)

    first = models[0].name
    with store.engine.begin() as conn:
        conn.execute(update(ModelRow).where(ModelRow.name == first).values(options='{"image_size": "384", "gpt_model": "GPT-L"}'))
    assert model_store.model_named(store, first).backend_options == {"gpt_model": "GPT-L", "image_size": "384"}

    with pytest.raises(Exception, match=f"models {first} need their options"):
        _migrate(store, "0013")
    assert "options" in {c["name"] for c in inspect(store.engine).get_columns("models")}

    with store.engine.begin() as conn:
        conn.execute(update(ModelRow).values(options="{}"))
    _migrate(store, "0013")
    assert "options" not in {c["name"] for c in inspect(store.engine).get_columns("models")}
    assert contents(store.engine, columns=legacy_columns) == rows
    _migrate(store, "head", upgrade=True)
    store.close()
