"""PostgreSQL as a backend: opening and migrating, its errors, and the same rows as SQLite (the dialect helpers: test_dialect.py)."""

from __future__ import annotations

import socket
import threading
from dataclasses import asdict

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from typer.testing import CliRunner

from cortex_cli.core import environment
from cortex_cli.models import registry as model_registry
from cortex_cli.cli import app
from cortex_cli.core.errors import CortexError
from cortex_cli.images.generation import generate
from cortex_cli.index.build import ensure_run, index_class
from cortex_cli.index.rankings import token_usage, top_tokens
from cortex_cli.attribution import SaliencySettings
from cortex_cli.store.database import head_revision, open_store
from cortex_cli.store.schema import Base, ClassRow, ImageRow, ModelRow, SaliencyMapRow, SaliencyRunRow, SalientTokenRow, TokenCountRow

from index_helpers import ToyExtractor, register_toy, store_random_images

pytestmark = pytest.mark.both_backends  # the tests that use store/db_url; the others are PostgreSQL only

SETTINGS = SaliencySettings(samples=2, top_n=5)
TABLES = {"models", "classes", "images", "token_counts", "extractors", "saliency_runs", "saliency_maps",
          "salient_tokens", "edits", "evaluations", "concept_searches"}


@pytest.fixture
def empty_pg(pg_server):
    """The URL of a PostgreSQL database without any table (dropped afterwards)."""
    url = pg_server.database(empty=True)
    yield url
    pg_server.drop(url)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def test_empty_database_is_migrated_to_head_and_matches_the_models(empty_pg):
    store = open_store(empty_pg)
    assert store.revision() == head_revision()
    assert TABLES <= set(inspect(store.engine).get_table_names())
    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diffs == [], f"migrations and schema.py disagree on PostgreSQL: {diffs}"
    with store.session() as s, s.begin():
        s.add(ModelRow(name="m", config_path="c", ckpt_path="k", config_hash="0" * 64, n_embed=64, embed_dim=16, grid=16, image_size=64, labels=""))
    store.close()
    again = open_store(empty_pg)
    with again.session() as s:
        assert s.scalars(select(ModelRow.name)).all() == ["m"]
    again.close()


def test_processes_opening_a_fresh_database_at_once_migrate_it_once(empty_pg):
    errors, stores = [], []

    def opener():
        try:
            stores.append(open_store(empty_pg))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=opener, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "concurrent migrations are stuck"
    assert not errors
    assert {s.revision() for s in stores} == {head_revision()}
    for s in stores:
        s.close()


def test_newer_revision_is_refused_and_left_alone(empty_pg):
    open_store(empty_pg).close()
    store = open_store(empty_pg)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    store.close()
    with pytest.raises(CortexError, match="newer than this cortex knows.*will not downgrade") as info:
        open_store(empty_pg)
    assert "\n" not in str(info.value)


def test_unreachable_server_is_one_line_with_the_password_masked():
    url = f"postgresql+psycopg://cortex:hunter2@127.0.0.1:{_closed_port()}/cortex"
    with pytest.raises(CortexError) as info:
        open_store(url)
    message = str(info.value)
    assert "\n" not in message and "hunter2" not in message
    assert message.startswith("cannot connect to database 'postgresql+psycopg://cortex:***@127.0.0.1:")
    assert "check that the PostgreSQL server is running" in message


def test_missing_database_says_how_to_create_it(pg_server):
    with pytest.raises(CortexError, match=r'database "no_such_db" does not exist; create it \(createdb no_such_db\)') as info:
        open_store(pg_server.url("no_such_db"))
    assert "\n" not in str(info.value)


def test_plain_postgresql_scheme_uses_psycopg(pg_server):
    url = pg_server.database()
    store = open_store(url.replace("postgresql+psycopg://", "postgresql://"))
    assert store.engine.dialect.driver == "psycopg" and store.revision() == head_revision()
    store.close()
    pg_server.drop(url)


def test_cortex_db_selects_the_store(pg_server, monkeypatch):
    url = pg_server.database()
    monkeypatch.setenv(environment.DB_ENV, url)
    assert environment.default_db_url() == url
    res = CliRunner().invoke(app, ["models", "list", "--json"])
    assert res.exit_code == 0, res.output
    store = open_store(url)
    with store.session() as s:  # the first command registered the bundled model there
        assert "mini" in s.scalars(select(ModelRow.name)).all()
    store.close()
    pg_server.drop(url)


def test_saliency_runs_are_found_by_float_alpha(store, tiny_model):
    toy = register_toy(store, tiny_model)
    alphas = (0.1, 1 / 3, 2.5e-7, 0.3, 1.0)
    ids = [ensure_run(store, tiny_model, toy.id, SaliencySettings(samples=2, alpha=a)) for a in alphas]
    assert len(set(ids)) == len(alphas)
    assert [ensure_run(store, tiny_model, toy.id, SaliencySettings(samples=2, alpha=a)) for a in alphas] == ids
    with store.session() as s:
        assert dict(s.execute(select(SaliencyRunRow.id, SaliencyRunRow.alpha)).all()) == dict(zip(ids, alphas))


def _tables(store, model) -> dict:
    """Every index table keyed by identity (class, split, seed), never by row id."""
    with store.session() as s:
        cls = {pk: cid for pk, cid in s.execute(select(ClassRow.id, ClassRow.class_id))}
        img = {i: (cls[c], sp, seed) for i, c, sp, seed in s.execute(select(ImageRow.id, ImageRow.class_pk, ImageRow.split, ImageRow.seed))}
        return {
            "images": {img[r.id] + (r.sampler,): r.tokens for r in s.scalars(select(ImageRow).where(ImageRow.model_id == model.id))},
            "token_counts": {(cls[r.class_pk], r.split, r.token): (r.count, r.n_images) for r in s.scalars(select(TokenCountRow))},
            "saliency_runs": sorted((r.samples, r.alpha, r.top_n, r.reduce, r.precision, r.seed) for r in s.scalars(select(SaliencyRunRow))),
            "saliency_maps": {img[r.image_id]: r.tsv for r in s.scalars(select(SaliencyMapRow))},
            "salient_tokens": {img[r.image_id] + (r.rank,): (cls[r.class_pk], r.position, r.token, r.tsv) for r in s.scalars(select(SalientTokenRow))},
        }


def _build(url: str, tiny_model_files) -> tuple[dict, list]:
    store = open_store(url)
    config, ckpt, labels = tiny_model_files
    model = model_registry.add_model(store, "tiny", config, ckpt, str(labels))
    toy = register_toy(store, model)
    every = model_registry.classes(store, model)
    generate(store, model, every[0], 3, batch_size=2)
    for cls in every[1:]:  # the specific baseline compares every class
        store_random_images(store, model, cls, 5)
    for cls in every[:3]:
        index_class(store, model, toy, cls, n_images=3, settings=SETTINGS, batch_size=2, extractor=ToyExtractor())
    answers = [asdict(top_tokens(store, model, every[1], k=8, baseline=b)) for b in ("frequency", "specific")]
    answers.append(asdict(token_usage(store, model, answers[0]["rows"][0]["token"])))
    tables = _tables(store, model)
    store.close()
    return tables, answers


def test_same_rows_and_answers_as_sqlite(pg_server, tmp_path, tiny_model_files):
    pg_url = pg_server.database()
    on_pg = _build(pg_url, tiny_model_files)
    on_sqlite = _build(f"sqlite:///{tmp_path / 'same.db'}", tiny_model_files)
    pg_server.drop(pg_url)
    for name in on_sqlite[0]:
        assert on_pg[0][name] == on_sqlite[0][name], f"table {name} differs"
    assert on_pg[1] == on_sqlite[1]
