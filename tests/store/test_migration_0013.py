"""Migration 0013: SmoothGrad's noise generator joins the run key.

A filled 0012 database keeps every row; its SmoothGrad runs were made with the per-image host generators and
become 'host' runs (those of a method without noise 'none'), so the settings that made them still find them;
a new default run ('philox') of the same extractor and parameters is a run of its own; downgrade refuses while
a philox run exists, and then restores the old key and keeps every row.
"""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import insert, inspect, text

from cortex_cli.attribution import SaliencySettings
from cortex_cli.store import index
from cortex_cli.store.database import _alembic_config
from cortex_cli.store.schema import Base
from tests.store.test_migration_0009 import database_at, upgraded_keeping_every_row
from tests.store.test_migration_0010 import uq_saliency_run
from tests.store.test_migrations import contents, empty_url  # noqa: F401  (empty_url is a fixture)

pytestmark = pytest.mark.both_backends


def _migrate(store, revision: str, *, upgrade: bool = False) -> None:
    cfg = _alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.upgrade if upgrade else command.downgrade)(cfg, revision)


def test_upgrade_of_a_filled_0012_database_keeps_its_runs_as_host_runs_and_a_new_run_is_philox(empty_url):
    url = empty_url("at0012")
    engine = database_at(url, "0012")
    assert "noise" not in {c["name"] for c in inspect(engine).get_columns("saliency_runs")}
    t = Base.metadata.tables
    with engine.begin() as conn:  # a run of a method that draws no noise, beside fill()'s SmoothGrad runs
        conn.execute(insert(t["models"]).values(id=5, name="m5", config_path="c.yaml", ckpt_path="m.ckpt", config_hash="0" * 64,
                                                n_embed=64, embed_dim=16, grid=2, image_size=32, labels="mini"))
        conn.execute(insert(t["extractors"]).values(id=5, model_id=5, name="ce", arch="cnn", hparams="{}", ckpt_path="e.pt",
                                                    ckpt_sha256="1" * 64))
        conn.execute(insert(t["saliency_runs"]).values(id=5, model_id=5, extractor_id=5, samples=1, alpha=0.0, top_n=4, reduce="mean",
                                                       precision="fp32", seed=0, method="gradient"))
    store, legacy_columns, rows = upgraded_keeping_every_row(url, engine)  # every row of every table, unchanged
    assert uq_saliency_run(store.engine) == index.KEY_COLUMNS  # noise joins the key, before the target
    assert [(r.id, r.method, r.noise) for r in index.runs(store, 1)] == [(1, "smoothgrad", "host")]
    assert [(r.id, r.method, r.noise) for r in index.runs(store, 5)] == [(5, "gradient", "none")]
    if store.engine.dialect.name == "postgresql":  # fill() gave explicit ids, which leave the id sequence behind
        with store.engine.begin() as conn:
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('saliency_runs', 'id'), (SELECT max(id) FROM saliency_runs))")

    # the settings that made the old runs still find them: host noise, and (for a method without noise) the canonical key
    old = SaliencySettings(samples=2, alpha=0.5, top_n=4, reduce="mean", noise="host")
    assert index.ensure_run(store, 1, index.RunKey(extractor_id=1, **old.run_key())) == 1
    gradient = SaliencySettings(method="gradient", top_n=4, reduce="mean")
    assert index.ensure_run(store, 5, index.RunKey(extractor_id=5, **gradient.run_key())) == 5
    # today's default noise is another run, never mixed with the host run's maps
    new = SaliencySettings(samples=2, alpha=0.5, top_n=4, reduce="mean")
    assert new.noise == "philox"
    philox_run = index.ensure_run(store, 1, index.RunKey(extractor_id=1, **new.run_key()))
    assert philox_run != 1 and index.ensure_run(store, 1, index.RunKey(extractor_id=1, **new.run_key())) == philox_run
    assert {(r.id, r.noise) for r in index.runs(store, 1)} == {(1, "host"), (philox_run, "philox")}
    assert index.saliency_maps(store, philox_run, [1]) == {}
    with store.engine.connect() as conn:  # a run inserted without its noise is a new (philox) run: the server default
        assert conn.scalar(text("SELECT noise FROM saliency_runs WHERE id = :id"), {"id": philox_run}) == "philox"
    with store.engine.begin() as conn:
        conn.execute(insert(t["saliency_runs"]).values(id=philox_run + 1, model_id=1, extractor_id=1, samples=3, alpha=0.5, top_n=4,
                                                       reduce="mean", precision="fp32", seed=0))
    assert {r.id: r.noise for r in index.runs(store, 1)}[philox_run + 1] == "philox"

    # down to 0012 refuses while a philox run exists; without them, restores the old key and keeps every row
    with pytest.raises(RuntimeError, match="2 saliency run\\(s\\) use the philox noise"):
        _migrate(store, "0012")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM saliency_runs WHERE noise = 'philox'")
    _migrate(store, "0012")
    assert "noise" not in {c["name"] for c in inspect(store.engine).get_columns("saliency_runs")}
    assert "noise" not in uq_saliency_run(store.engine)
    assert contents(store.engine, columns=legacy_columns) == rows
    _migrate(store, "head", upgrade=True)  # and up again: the same runs, host again
    assert [(r.id, r.noise) for r in index.runs(store, 1)] == [(1, "host")]
    store.close()
