"""Migration 0012: named concepts (concepts, concept_members), classes.prompt, and the run's target in its key.

A filled 0011 database keeps every row; its runs explain 'class' and its classes have no prompt; a
concept target is another run beside the class run of the same extractor and parameters; members
go with their concept (and with their class); downgrade refuses while a concept run or a prompt
class exists, and then restores the old key and keeps every row.
"""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import inspect, text

from cortex_cli.store import concepts as concept_store
from cortex_cli.store import index
from cortex_cli.store.database import _alembic_config
from tests.store.test_migration_0009 import database_at, upgraded_keeping_every_row
from tests.store.test_migration_0010 import uq_saliency_run
from tests.store.test_migrations import contents, empty_url  # noqa: F401  (empty_url is a fixture)

pytestmark = pytest.mark.both_backends


def _downgrade(store, revision: str) -> None:
    cfg = _alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def test_upgrade_of_a_filled_0011_database_keeps_every_row_and_adds_concepts(empty_url):
    url = empty_url("at0011")
    engine = database_at(url, "0011")
    assert "concepts" not in inspect(engine).get_table_names()
    store, legacy_columns, rows = upgraded_keeping_every_row(url, engine)
    assert "target" in uq_saliency_run(store.engine)
    old = index.runs(store, 1)
    assert [(r.id, r.target) for r in old] == [(1, "class")]
    with store.engine.connect() as conn:
        assert set(conn.scalars(text("SELECT prompt FROM classes"))) == {""}
        for table in ("edits", "concept_searches"):  # what older edits and searches optimised: a class
            assert set(conn.scalars(text(f"SELECT target FROM {table}"))) == {"class"}, table
        class_pks = list(conn.scalars(text("SELECT id FROM classes WHERE model_id = 1 ORDER BY id")))
    if store.engine.dialect.name == "postgresql":  # fill() gave explicit ids, which leave the id sequences behind
        with store.engine.begin() as conn:
            for table in ("saliency_runs", "classes"):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")

    # a concept target is a run of its own beside the class run with the same extractor and parameters
    key = {f: getattr(old[0], f) for f in index.KEY_COLUMNS}
    assert index.ensure_run(store, 1, index.RunKey(**key)) == 1
    concept_run = index.ensure_run(store, 1, index.RunKey(**(key | {"target": "logsumexp:0,1"})))
    assert concept_run != 1 and index.ensure_run(store, 1, index.RunKey(**(key | {"target": "logsumexp:0,1"}))) == concept_run

    # members keep the order given; a duplicate name is refused; a prompt concept adds its own class
    red = concept_store.insert_concept(store, 1, "red", "classes", list(reversed(class_pks)))
    assert red.member_pks == tuple(reversed(class_pks))
    with pytest.raises(Exception, match="already exists"):
        concept_store.insert_concept(store, 1, "red", "classes", class_pks[:1])
    doctor = concept_store.insert_concept(store, 1, "doctor", "prompt", [], prompt="a doctor", new_class=("a doctor", "a doctor"))
    assert len(doctor.member_pks) == 1 and doctor.member_pks[0] not in class_pks
    assert [c.name for c in concept_store.model_concepts(store, 1)] == ["doctor", "red"]

    # down to 0011 refuses while a concept run, then a prompt class, exists. First down to 0012, by itself: on SQLite a
    # later revision's downgrade commits its table rebuild (foreign keys off) before 0012's refusal could roll it back
    _downgrade(store, "0012")
    with pytest.raises(RuntimeError, match="explain a concept target"):
        _downgrade(store, "0011")
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"DELETE FROM saliency_runs WHERE id = {concept_run}")
    with pytest.raises(RuntimeError, match="prompt concepts' classes"):
        _downgrade(store, "0011")
    concept_store.delete_concept(store, doctor.pk, doctor.member_pks[0])
    _downgrade(store, "0011")
    insp = inspect(store.engine)
    assert not {"concepts", "concept_members"} & set(insp.get_table_names())
    assert "prompt" not in {c["name"] for c in insp.get_columns("classes")}
    assert "target" not in uq_saliency_run(store.engine)
    assert contents(store.engine, columns=legacy_columns) == rows
    store.close()

