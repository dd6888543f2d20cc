"""Migration 0011: salient_tokens and run_token_counts lose their foreign keys; delete triggers cascade instead.

A filled 0010 database keeps every row; deleting a run, an image, a class or a model still removes
exactly the derived rows that went with it (through saliency_maps and run_class_counts, whose FK
cascades fire the triggers); downgrade restores the five foreign keys, and refuses while a derived
row refers to something that no longer exists.
"""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import insert, inspect, text

from cortex_cli.store.database import _alembic_config, head_revision, open_store
from cortex_cli.store.schema import Base
from tests.store.test_migration_0009 import database_at, upgraded_keeping_every_row
from tests.store.test_migrations import contents, empty_url, fill, names  # noqa: F401  (empty_url is a fixture)

pytestmark = pytest.mark.both_backends

DERIVED = {"salient_tokens", "run_token_counts"}
# (table, column, referred table) of the foreign keys 0011 drops, by their convention names
DROPPED = {
    "fk_salient_tokens_run_id_saliency_runs": ("salient_tokens", "run_id", "saliency_runs"),
    "fk_salient_tokens_image_id_images": ("salient_tokens", "image_id", "images"),
    "fk_salient_tokens_class_pk_classes": ("salient_tokens", "class_pk", "classes"),
    "fk_run_token_counts_run_id_saliency_runs": ("run_token_counts", "run_id", "saliency_runs"),
    "fk_run_token_counts_class_pk_classes": ("run_token_counts", "class_pk", "classes"),
}
TRIGGERS = {"cortex_cascade_salient_tokens", "cortex_cascade_run_token_counts"}


def foreign_keys(engine, tables=DERIVED) -> dict[str, tuple]:
    """{name: (table, column, referred table, ondelete)} of the tables' foreign keys."""
    insp = inspect(engine)
    return {fk["name"]: (t, *fk["constrained_columns"], fk["referred_table"], fk["options"].get("ondelete"))
            for t in tables for fk in insp.get_foreign_keys(t)}


def triggers(engine) -> set[str]:
    """The database's own triggers (and, on PostgreSQL, the functions named like them)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        found = {r[0] for r in conn.exec_driver_sql("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")}
        functions = set(conn.scalars(text("SELECT proname FROM pg_proc WHERE proname LIKE :name"), {"name": "cortex%"}))
        assert functions == found, (functions, found)  # one function per trigger, dropped with it
        return found


def migrate(store, to: str, *, upgrade: bool = False) -> None:
    cfg = _alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.upgrade if upgrade else command.downgrade)(cfg, to)


def test_upgrade_of_a_filled_0010_database_keeps_every_row_and_the_downgrade_restores_the_foreign_keys(empty_url):
    url = empty_url("at0010")
    engine = database_at(url, "0010")
    before = names(engine)
    assert foreign_keys(engine) == {name: (*fk, "CASCADE") for name, fk in DROPPED.items()}
    assert triggers(engine) == set()
    store, legacy_columns, rows = upgraded_keeping_every_row(url, engine)  # every row of every table, unchanged

    after = names(store.engine)
    assert foreign_keys(store.engine) == {}
    assert triggers(store.engine) == TRIGGERS
    # only the two tables' foreign keys went: their primary keys and indexes, and every other table, are as they were
    # (but for what 0012 then changes: saliency_runs' key gains its target, and the concept tables are new)
    later = {"saliency_runs", "concepts", "concept_members"}
    assert {t: r for t, r in after.items() if t not in DERIVED | later} == {t: r for t, r in before.items() if t not in DERIVED | later}
    for table in DERIVED:
        assert after[table] == before[table] | {"fk": []}, table
    assert [i[0] for i in after["salient_tokens"]["ix"]] == ["ix_salient_class_token", "ix_salient_token_class"]
    assert [i[0] for i in after["run_token_counts"]["ix"]] == ["ix_run_token_counts_token"]

    # down to 0010: the five foreign keys are back (ON DELETE CASCADE, convention names), the triggers gone, every row kept
    migrate(store, "0010")
    assert store.revision() == "0010"
    assert foreign_keys(store.engine) == {name: (*fk, "CASCADE") for name, fk in DROPPED.items()}
    assert names(store.engine) == before
    assert triggers(store.engine) == set()
    assert contents(store.engine, columns=legacy_columns) == rows
    if store.engine.dialect.name == "sqlite":
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    # and up again
    migrate(store, "head", upgrade=True)
    assert store.revision() == head_revision()
    assert names(store.engine) == after and triggers(store.engine) == TRIGGERS
    assert contents(store.engine, columns=legacy_columns) == rows
    store.close()


def filled_at_head(url: str):
    """A head database with fill()'s rows plus, for model 1, a second run (3) and a second image (3, class 11), each run
    indexing both images: so a run, an image and a class each own a different part of the derived rows."""
    store = open_store(url)
    fill(store.engine)
    t = Base.metadata.tables
    blob = bytes(range(8))
    with store.engine.begin() as conn:  # explicit ids, as fill() gives
        conn.execute(insert(t["images"]).values(id=3, model_id=1, class_pk=11, split="train", seed=1, sampler="s", tokens=blob))
        conn.execute(insert(t["saliency_runs"]).values(id=3, model_id=1, extractor_id=1, samples=2, alpha=0.5, top_n=4, reduce="mean",
                                                       precision="fp32", seed=1))
        conn.execute(insert(t["saliency_maps"]), [{"run_id": r, "image_id": i, "tsv": blob} for r, i in ((1, 3), (3, 1), (3, 3))])
        conn.execute(insert(t["salient_tokens"]), [
            {"run_id": r, "image_id": i, "rank": k, "class_pk": c, "position": k, "token": 5 + k, "tsv": 0.5}
            for r, i, c in ((1, 3, 11), (3, 1, 10), (3, 3, 11)) for k in range(2)])
        conn.execute(insert(t["run_class_counts"]), [{"run_id": r, "split": "train", "class_pk": c, "images": 1}
                                                     for r, c in ((1, 11), (3, 10), (3, 11))])
        conn.execute(insert(t["run_token_counts"]), [
            {"run_id": r, "split": "train", "class_pk": c, "token": k, "salient": 1, "salient_images": 1, "occurrences": 2,
             "occurrence_images": 1} for r, c in ((1, 11), (3, 10), (3, 11)) for k in (5, 6)])
    return store


# what to delete, and which derived rows go with it: salient_tokens (run_id, image_id, rank, class_pk, ...) and
# run_token_counts (run_id, split, class_pk, token, ...)
DELETES = {
    "run": ("saliency_runs", 1, lambda r: r[0] == 1, lambda r: r[0] == 1),
    "image": ("images", 1, lambda r: r[1] == 1, lambda r: False),  # the run's counts stay, as they did with the FKs
    "class": ("classes", 11, lambda r: r[3] == 11, lambda r: r[2] == 11),
    "model": ("models", 1, lambda r: r[0] in (1, 3), lambda r: r[0] in (1, 3)),
    "extractor": ("extractors", 1, lambda r: r[0] in (1, 3), lambda r: r[0] in (1, 3)),
}


@pytest.mark.parametrize("what", list(DELETES))
def test_a_delete_cascades_through_the_triggers_to_exactly_its_derived_rows(empty_url, what):
    store = filled_at_head(empty_url("head"))
    assert foreign_keys(store.engine) == {}
    table, key, token_gone, count_gone = DELETES[what]
    rows = contents(store.engine)
    assert len(rows["salient_tokens"]) == 10 and len(rows["run_token_counts"]) == 8
    t = Base.metadata.tables
    with store.engine.begin() as conn:
        conn.execute(t[table].delete().where(t[table].c.id == key))
    after = contents(store.engine)
    assert after["salient_tokens"] == [r for r in rows["salient_tokens"] if not token_gone(r)]
    assert after["run_token_counts"] == [r for r in rows["run_token_counts"] if not count_gone(r)]
    assert len(after["salient_tokens"]) < len(rows["salient_tokens"])
    store.close()


def test_deleting_a_map_or_a_class_count_deletes_its_derived_rows_only(empty_url):
    store = filled_at_head(empty_url("head"))
    rows = contents(store.engine)
    t = Base.metadata.tables
    maps, class_counts = t["saliency_maps"], t["run_class_counts"]
    with store.engine.begin() as conn:
        conn.execute(maps.delete().where(maps.c.run_id == 3, maps.c.image_id == 1))
        conn.execute(class_counts.delete().where(class_counts.c.run_id == 1, class_counts.c.class_pk == 11))
    after = contents(store.engine)
    assert after["salient_tokens"] == [r for r in rows["salient_tokens"] if r[:2] != (3, 1)]
    assert after["run_token_counts"] == [r for r in rows["run_token_counts"] if (r[0], r[2]) != (1, 11)]
    for table in ("saliency_runs", "images", "classes"):
        assert after[table] == rows[table]
    store.close()


def test_downgrade_refuses_while_a_derived_row_refers_to_nothing_and_keeps_every_row(empty_url):
    store = filled_at_head(empty_url("head"))
    t = Base.metadata.tables
    with store.engine.begin() as conn:  # possible without the foreign keys: an image and a class that do not exist
        conn.execute(insert(t["salient_tokens"]).values(run_id=1, image_id=999, rank=0, class_pk=10, position=0, token=1, tsv=0.1))
        conn.execute(insert(t["run_token_counts"]).values(run_id=2, split="train", class_pk=999, token=1, salient=1, salient_images=1,
                                                          occurrences=1, occurrence_images=1))
        conn.execute(t["saliency_runs"].update().values(noise="host"))  # 0013 keeps a philox run from going below it
    migrate(store, "0011")  # later revisions first: a refused step must be the only one of its downgrade (SQLite commits each)
    rows = contents(store.engine)
    with pytest.raises(RuntimeError, match=r"1 salient_tokens row\(s\), 1 run_token_counts row\(s\) refer to a run, image or class"):
        migrate(store, "0010")
    assert store.revision() == "0011"
    assert foreign_keys(store.engine) == {} and triggers(store.engine) == TRIGGERS
    assert contents(store.engine) == rows

    # with the orphans gone it downgrades, keeping the rest
    st, rc = t["salient_tokens"], t["run_token_counts"]
    with store.engine.begin() as conn:
        conn.execute(st.delete().where(st.c.image_id == 999))
        conn.execute(rc.delete().where(rc.c.class_pk == 999))
    migrate(store, "0010")
    assert set(foreign_keys(store.engine)) == set(DROPPED)
    kept = contents(store.engine)  # 0010 has every column head has
    assert kept["salient_tokens"] == [r for r in rows["salient_tokens"] if r[1] != 999]
    assert kept["run_token_counts"] == [r for r in rows["run_token_counts"] if r[2] != 999]
    store.close()
