"""Migration 0009: `models.backend`; a filled 0008 database keeps every row and its models become taming models."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import insert, inspect

from cortex_cli.store import registered_models as model_store
from cortex_cli.store.database import _alembic_config, _make_engine, head_revision, open_store
from cortex_cli.store.schema import Base
from tests.store.test_migrations import columns_of, contents, empty_url, fill  # noqa: F401  (empty_url is a fixture)

pytestmark = pytest.mark.both_backends


def database_at(url: str, revision: str):
    engine = _make_engine(url)
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return engine



def upgraded_keeping_every_row(url: str, engine) -> tuple:
    """Fill the old database, open it with this cortex (upgrade to head), check every row of every table is unchanged.

    Returns (store, the old tables' columns, their rows) for the downgrade checks.
    """
    fill(engine)
    legacy_columns = columns_of(engine)
    rows = contents(engine)
    assert all(rows.values()), rows
    engine.dispose()
    store = open_store(url)  # a newer cortex opens it: upgrade to head
    assert store.revision() == head_revision()
    assert contents(store.engine, columns=legacy_columns) == rows
    return store, legacy_columns, rows

def test_upgrade_of_a_filled_0008_database_keeps_every_row_and_defaults_to_taming(empty_url):
    url = empty_url("at0008")
    engine = database_at(url, "0008")
    assert "backend" not in {c["name"] for c in inspect(engine).get_columns("models")}
    store, legacy_columns, rows = upgraded_keeping_every_row(url, engine)
    assert [m.backend for m in model_store.list_models(store)] == ["taming", "taming"]

    # a new model names its backend; one that does not is a taming model (the server default)
    models = Base.metadata.tables["models"]
    with store.engine.begin() as conn:  # explicit ids: fill() left PostgreSQL's id sequence behind
        conn.execute(insert(models).values(id=3, name="j", config_path="/snap", ckpt_path="/snap", config_hash="0" * 64,
                                           n_embed=16, embed_dim=8, grid=4, image_size=16, labels="l.tsv", backend="janus"))
    assert model_store.model_named(store, "j").backend == "janus"

    # down to 0008 drops the column and nothing else; up again restores the default
    cfg = _alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0008")
    assert "backend" not in {c["name"] for c in inspect(store.engine).get_columns("models")}
    assert contents(store.engine, columns=legacy_columns)["images"] == rows["images"]
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    assert [m.backend for m in model_store.list_models(store)] == ["taming", "taming", "taming"]  # 'j' lost its column
    store.close()
