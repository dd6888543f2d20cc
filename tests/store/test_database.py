import sqlite3

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from cortex_cli.core.errors import CortexError
from cortex_cli.store.database import check_url, head_revision, open_store
from cortex_cli.store.schema import Base, ModelRow

pytestmark = pytest.mark.both_backends  # store/db_url tests run on SQLite and PostgreSQL

TABLES = {"models", "classes", "images", "token_counts", "extractors", "saliency_runs", "saliency_maps",
          "salient_tokens", "edits", "evaluations"}


def _model(name="m"):
    return ModelRow(name=name, config_path="c.yaml", ckpt_path="m.ckpt", config_hash="0" * 64, n_embed=64,
                    embed_dim=16, grid=16, image_size=64, labels="")


def test_empty_file_is_migrated_to_head_with_wal_and_foreign_keys(tmp_path):
    path = tmp_path / "new.db"
    store = open_store(f"sqlite:///{path}")
    assert path.is_file() and store.revision() == head_revision()
    assert TABLES <= set(inspect(store.engine).get_table_names())
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diffs == [], f"migrations and schema.py disagree: {diffs}"
    store.close()


def test_already_migrated_file_keeps_its_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = open_store(url)
    with store.session() as s, s.begin():
        s.add(_model())
    store.close()
    again = open_store(url)
    assert again.revision() == head_revision()
    with again.session() as s:
        assert [m.name for m in s.query(ModelRow).all()] == ["m"]
    again.close()


def test_newer_revision_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "future.db"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
    with pytest.raises(CortexError, match="newer than this cortex knows.*will not downgrade") as info:
        open_store(f"sqlite:///{path}")
    assert "\n" not in str(info.value)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("9999_future",)
        assert {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")} >= TABLES


@pytest.mark.parametrize("url, message", [
    ("not a url", "malformed database URL"),
    ("sqlite:////definitely/not/here/x.db", "does not exist"),
    ("nosuchdialect://x", "cannot use database URL"),
])
def test_bad_urls(url, message):
    with pytest.raises(CortexError, match=message):
        open_store(url)


def test_check_url_strips_and_refuses_without_opening(tmp_path):
    url = f"sqlite:///{tmp_path / 'never.db'}"
    assert check_url(f"  {url}\n") == url and not (tmp_path / "never.db").exists()
    assert check_url("postgresql+psycopg://user@host/cortex") == "postgresql+psycopg://user@host/cortex"
    for bad, message in [(" ", "the database URL is empty"), ("not a url", "malformed database URL"), ("mysql://h/db", "not 'mysql'")]:
        with pytest.raises(CortexError, match=message):
            check_url(bad)


def test_non_database_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "text.db"
    path.write_text("this is not sqlite " * 100)
    with pytest.raises(CortexError, match="cannot open database") as info:
        open_store(f"sqlite:///{path}")
    assert "\n" not in str(info.value)
