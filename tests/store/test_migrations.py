"""Constraint names (migration 0008): fresh and upgraded databases carry `Base.metadata`'s naming convention.

Databases made before the convention have unnamed constraints (SQLite) or PostgreSQL's own names
(`classes_pkey`, `classes_model_id_fkey`, ...); 0008 renames them without losing a row, and the
foreign keys still cascade after SQLite's table rebuilds.
"""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import UniqueConstraint, func, insert, inspect, select, text

from cortex_cli.store.database import _alembic_config, _make_engine, head_revision, open_store
from cortex_cli.store.schema import NAMING_CONVENTION, Base

pytestmark = pytest.mark.both_backends

# (table, column) that revisions after 0008 add: 0009 models.backend, 0010 the saliency run's method and its parameters
ADDED_AFTER_0008 = {("models", "backend"), ("saliency_runs", "method"), ("saliency_runs", "steps"), ("saliency_runs", "baseline"),
                    ("saliency_runs", "target"), ("classes", "prompt"), ("edits", "target"),
                    ("concept_searches", "target"), ("saliency_runs", "noise"), ("models", "options")}
# (table, column, referred table) of the foreign keys 0011 drops (derived index rows: delete triggers cascade instead)
DROPPED_AFTER_0008 = {("salient_tokens", "run_id", "saliency_runs"), ("salient_tokens", "image_id", "images"),
                      ("salient_tokens", "class_pk", "classes"), ("run_token_counts", "run_id", "saliency_runs"),
                      ("run_token_counts", "class_pk", "classes")}
TABLES = ("models", "classes", "images", "token_counts", "extractors", "saliency_runs", "saliency_maps",
          "salient_tokens", "run_token_counts", "run_class_counts", "edits", "evaluations", "concept_searches")


@pytest.fixture
def empty_url(backend, tmp_path, request):
    """A factory of databases without any table (PostgreSQL: not copies of the migrated template)."""
    made = []

    def make(name: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / name}.db"
        server = request.getfixturevalue("pg_server")
        made.append((server, server.database(empty=True)))
        return made[-1][1]

    yield make
    for server, url in made:
        server.drop(url)


def names(engine) -> dict[str, dict]:
    """Every table's reflected constraint and index names (with what they cover)."""
    insp = inspect(engine)
    out = {}
    for table in TABLES:
        pk = insp.get_pk_constraint(table)
        out[table] = {
            "pk": (pk.get("name"), tuple(pk["constrained_columns"])),
            "fk": sorted((fk.get("name") or "", tuple(fk["constrained_columns"]), fk["referred_table"],
                          fk["options"].get("ondelete")) for fk in insp.get_foreign_keys(table)),
            "uq": sorted((uq.get("name") or "", tuple(uq["column_names"])) for uq in insp.get_unique_constraints(table)),
            "ix": sorted((ix["name"], tuple(ix["column_names"]), bool(ix["unique"])) for ix in insp.get_indexes(table)
                         if not ix.get("duplicates_constraint")),  # PostgreSQL lists a unique constraint's index too
        }
    return out


def metadata_names() -> dict[str, dict]:
    """The names `Base.metadata` gives (explicit ones, else the convention's)."""
    out = {}
    for table in TABLES:
        t = Base.metadata.tables[table]
        uqs = [c for c in t.constraints if isinstance(c, UniqueConstraint)]
        out[table] = {"pk": str(t.primary_key.name), "fk": sorted(str(c.name) for c in t.foreign_key_constraints),
                      "uq": sorted(str(c.name) for c in uqs), "ix": sorted(str(i.name) for i in t.indexes)}
    return out


def only_names(reflected: dict[str, dict]) -> dict[str, dict]:
    return {t: {"pk": r["pk"][0], "fk": sorted(f[0] for f in r["fk"]), "uq": sorted(u[0] for u in r["uq"]),
                "ix": sorted(i[0] for i in r["ix"])} for t, r in reflected.items()}


def created_by_metadata(url: str) -> dict[str, dict]:
    engine = _make_engine(url)
    try:
        Base.metadata.create_all(engine)
        return names(engine)
    finally:
        engine.dispose()


def test_convention_keeps_explicit_names_and_names_the_rest():
    expected = metadata_names()
    assert expected["models"] == {"pk": "pk_models", "fk": [], "uq": ["uq_models_name"], "ix": []}
    assert expected["classes"] == {"pk": "pk_classes", "fk": ["fk_classes_model_id_models"],
                                   "uq": ["uq_classes_model_id_class_id"], "ix": []}
    assert expected["images"]["uq"] == ["uq_images_sample"] and expected["images"]["ix"] == ["ix_images_class_split"]
    assert expected["saliency_runs"]["uq"] == ["uq_saliency_run"]
    assert expected["concept_searches"]["uq"] == ["uq_concept_search"]
    assert expected["salient_tokens"]["ix"] == ["ix_salient_class_token", "ix_salient_token_class"]
    assert "fk_concept_searches_extractor_id_extractors" in expected["concept_searches"]["fk"]
    assert Base.metadata.naming_convention == NAMING_CONVENTION


def test_fresh_database_has_the_names_metadata_would_create(store, empty_url):
    migrated = names(store.engine)
    assert only_names(migrated) == metadata_names()
    assert migrated == created_by_metadata(empty_url("reference"))


def legacy_database(url: str, monkeypatch, revision: str = "0007"):
    """A database at `revision` as a cortex without the naming convention left it; its engine (FKs on for SQLite)."""
    engine = _make_engine(url)
    cfg = _alembic_config()
    with monkeypatch.context() as m:
        m.setattr(Base.metadata, "naming_convention", {"ix": "ix_%(column_0_label)s"})  # SQLAlchemy's default
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    return engine


def fill(engine) -> None:
    """Rows in every table, for two models (ids given, so the comparison is exact)."""
    t = Base.metadata.tables
    blob = bytes(range(8))
    with engine.begin() as conn:
        counts = "run_token_counts" in inspect(conn).get_table_names()  # from 0007 on
        for m in (1, 2):
            conn.execute(insert(t["models"]).values(id=m, name=f"m{m}", config_path="c.yaml", ckpt_path="m.ckpt", config_hash="0" * 64,
                                                    n_embed=64, embed_dim=16, grid=2, image_size=32, labels="mini"))
            conn.execute(insert(t["classes"]), [{"id": 10 * m + c, "model_id": m, "class_id": c, "name": f"c{c}", "synonyms": ""}
                                                for c in (0, 1)])
            conn.execute(insert(t["images"]).values(id=m, model_id=m, class_pk=10 * m, split="train", seed=0, sampler="s", tokens=blob))
            conn.execute(insert(t["token_counts"]).values(model_id=m, class_pk=10 * m, split="train", token=3, count=2, n_images=1))
            conn.execute(insert(t["extractors"]).values(id=m, model_id=m, name="ce", arch="cnn", hparams="{}", ckpt_path="e.pt",
                                                        ckpt_sha256="1" * 64))
            conn.execute(insert(t["saliency_runs"]).values(id=m, model_id=m, extractor_id=m, samples=2, alpha=0.5, top_n=4,
                                                           reduce="mean", precision="fp32", seed=0))
            conn.execute(insert(t["saliency_maps"]).values(run_id=m, image_id=m, tsv=blob))
            conn.execute(insert(t["salient_tokens"]), [{"run_id": m, "image_id": m, "rank": r, "class_pk": 10 * m, "position": r,
                                                        "token": r, "tsv": 1.0 - r / 10} for r in range(2)])
            if counts:
                conn.execute(insert(t["run_token_counts"]).values(run_id=m, split="train", class_pk=10 * m, token=3, salient=1,
                                                                  salient_images=1, occurrences=2, occurrence_images=1))
                conn.execute(insert(t["run_class_counts"]).values(run_id=m, split="train", class_pk=10 * m, images=1))
            conn.execute(insert(t["edits"]).values(id=m, model_id=m, extractor_id=m, source_class=0, target_class=1, method="token",
                                                   region="all", source_tokens=blob, result_tokens=blob, params="{}", probabilities="{}"))
            conn.execute(insert(t["evaluations"]).values(id=m, model_id=m, kind="masking", params="{}", result="{}"))
            conn.execute(insert(t["concept_searches"]).values(id=m, search_key="k" * 64, model_id=m, extractor_id=m, class_pk=10 * m + 1,
                                                              region="all", init="random", params="{}", restart=m, seed=2**40,
                                                              tokens=blob, snapshots=blob, t_star="[]", objective=1.5, p_target=0.5,
                                                              judges="{}"))


def columns_of(engine, tables=TABLES) -> dict[str, list[str]]:
    """The columns each table has in this database, in `Base.metadata`'s order (later revisions add some)."""
    insp = inspect(engine)
    t = Base.metadata.tables
    return {name: [c.name for c in t[name].c if c.name in {r["name"] for r in insp.get_columns(name)}] for name in tables}


def contents(engine, tables=TABLES, columns: dict[str, list[str]] | None = None) -> dict[str, list[tuple]]:
    """Every row of `tables` in primary-key order, of `columns` (default: every column the database has)."""
    t = Base.metadata.tables
    columns = columns or columns_of(engine, tables)
    with engine.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(select(*(t[name].c[c] for c in columns[name])).order_by(*t[name].primary_key))]
                for name in tables}


def upgraded_legacy(url: str, monkeypatch, backend: str):
    """A legacy database filled with rows and checked to lack the names, then opened (upgraded to head) by cortex."""
    engine = legacy_database(url, monkeypatch)
    fill(engine)
    before = names(engine)
    if backend == "sqlite":
        assert before["classes"]["pk"][0] is None and before["classes"]["fk"][0][0] == ""
        assert before["models"]["uq"] == [("", ("name",))]
    else:
        assert before["classes"]["pk"][0] == "classes_pkey"
        assert before["classes"]["fk"][0][0] == "classes_model_id_fkey"
        assert before["classes"]["uq"] == [("classes_model_id_class_id_key", ("model_id", "class_id"))]
    rows = contents(engine)
    assert all(rows.values()), rows
    engine.dispose()
    store = open_store(url)  # what a newer cortex does on opening it: upgrade to head
    assert store.revision() == head_revision()
    return store, before, rows


def kept(engine, tables=TABLES) -> dict[str, list[tuple]]:
    """`contents` of the columns a 0007 database had (later revisions add columns)."""
    return contents(engine, tables, {name: [c for c in cols if (name, c) not in ADDED_AFTER_0008] for name, cols in columns_of(engine, tables).items()})


def test_upgrade_names_the_constraints_of_a_filled_legacy_database_and_keeps_every_row(empty_url, monkeypatch, backend):
    url = empty_url("legacy")
    store, before, rows = upgraded_legacy(url, monkeypatch, backend)
    after = names(store.engine)
    assert only_names(after) == metadata_names()
    assert after == created_by_metadata(empty_url("reference"))
    # same columns, references and actions as before (less the columns later revisions add to a key, and the foreign keys
    # 0011 drops): only the names changed
    def strip(reflected):
        def old(t, cols):
            return tuple(c for c in cols if (t, c) not in ADDED_AFTER_0008)
        def kept_fk(t, fk):
            return (t, fk[1][0], fk[2]) not in DROPPED_AFTER_0008
        return {t: {"pk": r["pk"][1], "fk": sorted(f[1:] for f in r["fk"] if kept_fk(t, f)), "uq": sorted(old(t, u[1]) for u in r["uq"]),
                    "ix": r["ix"]}
                for t, r in reflected.items() if t in TABLES}  # (the tables later revisions add are new)
    assert strip(before) == strip(after)
    assert {(t, f[1][0], f[2]) for t, r in before.items() for f in r["fk"]} >= DROPPED_AFTER_0008  # the legacy database had them
    assert kept(store.engine) == rows
    with store.engine.connect() as conn:
        if backend == "sqlite":
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1  # the pooled connection got enforcement back
            assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
    # downgrading past 0008 and upgrading again changes nothing
    cfg = _alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0007")
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    assert names(store.engine) == after and kept(store.engine) == rows
    store.close()


def test_foreign_keys_still_cascade_after_the_upgrade(empty_url, monkeypatch, backend):
    store, _, rows = upgraded_legacy(empty_url("legacy"), monkeypatch, backend)
    t = Base.metadata.tables
    with store.engine.begin() as conn:
        conn.execute(t["models"].delete().where(t["models"].c.id == 1))
    after = kept(store.engine)
    assert after["models"] == [r for r in rows["models"] if r[0] == 2]
    assert [r[0] for r in after["classes"]] == [20, 21]
    for name in TABLES:
        if name not in ("models", "classes"):
            assert after[name] == rows[name][len(rows[name]) // 2:], name  # model 1's rows went with it, model 2's stay
    with store.engine.begin() as conn:
        conn.execute(t["extractors"].delete().where(t["extractors"].c.id == 2))  # SET NULL on edits and searches
    after = kept(store.engine)
    assert after["saliency_runs"] == [] and after["saliency_maps"] == [] and after["salient_tokens"] == []
    assert after["run_token_counts"] == [] and after["run_class_counts"] == []
    assert [(r[0], r[2]) for r in after["edits"]] == [(2, None)]
    assert [(r[0], r[3]) for r in after["concept_searches"]] == [(2, None)]
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t["images"])).scalar() == 1
    store.close()


def test_one_open_upgrades_a_filled_0006_database_through_the_backfill_and_the_renames(empty_url, monkeypatch, backend):
    """0007's backfill leaves its transaction open when 0008 starts: on SQLite 0008 commits it before the rebuilds."""
    url = empty_url("legacy")
    engine = legacy_database(url, monkeypatch, "0006")
    fill(engine)
    older = tuple(name for name in TABLES if not name.startswith("run_"))
    rows = contents(engine, older)
    engine.dispose()
    store = open_store(url)
    assert store.revision() == head_revision()
    assert only_names(names(store.engine)) == metadata_names()
    assert kept(store.engine, older) == rows
    backfilled = contents(store.engine, ("run_class_counts",))["run_class_counts"]
    assert backfilled == [(1, "train", 10, 1), (2, "train", 20, 1)]
    store.close()
