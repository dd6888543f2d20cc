"""Migration 0010: the saliency run's method (and integrated-gradients' steps, baseline) join its key.

A filled 0009 database keeps every row, its runs become smoothgrad runs, and two methods can then
index the same images under one extractor and parameters.
"""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import inspect

from cortex_cli.store import index
from cortex_cli.store.database import _alembic_config
from tests.store.test_migration_0009 import database_at, upgraded_keeping_every_row
from tests.store.test_migrations import contents, empty_url  # noqa: F401  (empty_url is a fixture)

pytestmark = pytest.mark.both_backends

NEW = {"method", "steps", "baseline"}


def uq_saliency_run(engine) -> tuple[str, ...]:
    return next(tuple(u["column_names"]) for u in inspect(engine).get_unique_constraints("saliency_runs") if u["name"] == "uq_saliency_run")


def test_upgrade_of_a_filled_0009_database_keeps_every_row_and_defaults_to_smoothgrad(empty_url):
    url = empty_url("at0009")
    engine = database_at(url, "0009")
    assert not NEW & {c["name"] for c in inspect(engine).get_columns("saliency_runs")}
    store, legacy_columns, rows = upgraded_keeping_every_row(url, engine)  # every row of every table (maps, tokens, counts), unchanged
    assert set(uq_saliency_run(store.engine)) == {"extractor_id", "samples", "alpha", "top_n", "reduce", "precision", "seed", *NEW,
                                                  "target", "noise"}  # and 0012's target, 0013's noise
    old = index.runs(store, 1)
    assert [(r.id, r.method, r.steps, r.baseline) for r in old] == [(1, "smoothgrad", 0, "none")]

    # the same extractor and parameters under another method is another run; the old key still finds run 1
    if store.engine.dialect.name == "postgresql":  # fill() gave explicit ids, which leave the id sequence behind
        with store.engine.begin() as conn:
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('saliency_runs', 'id'), (SELECT max(id) FROM saliency_runs))")
    key = {f: getattr(old[0], f) for f in index.KEY_COLUMNS}
    assert index.ensure_run(store, 1, index.RunKey(**key)) == 1
    other = index.ensure_run(store, 1, index.RunKey(**(key | {"method": "gradient"})))
    assert other != 1 and index.ensure_run(store, 1, index.RunKey(**(key | {"method": "gradient"}))) == other
    assert sorted(r.method for r in index.runs(store, 1)) == ["gradient", "smoothgrad"]

    # down to 0009 refuses while a non-smoothgrad run exists; without it, drops the columns and keeps every row
    cfg = _alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        with pytest.raises(RuntimeError, match="another method than smoothgrad"):
            command.downgrade(cfg, "0009")
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"DELETE FROM saliency_runs WHERE id = {other}")
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0009")
    assert not NEW & {c["name"] for c in inspect(store.engine).get_columns("saliency_runs")}
    assert set(uq_saliency_run(store.engine)) == {"extractor_id", "samples", "alpha", "top_n", "reduce", "precision", "seed"}
    assert contents(store.engine, columns=legacy_columns) == rows
    store.close()
