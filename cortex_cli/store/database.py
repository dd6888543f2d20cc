"""Open (create, migrate) the cortex database. Opening always upgrades to head."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import CortexError


def migrations_dir() -> Path:
    """The Alembic scripts: top-level `migrations/` in a checkout, `cortex_cli/_migrations` in a wheel."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "migrations", here / "_migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise CortexError("cortex's migration scripts are missing from this install; reinstall cortex")


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def head_revision() -> str:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


@dataclass
class Store:
    """An open, migrated database."""

    engine: Engine
    url: str
    sessions: sessionmaker[Session]

    def session(self) -> Session:
        return self.sessions()

    def revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def close(self) -> None:
        self.engine.dispose()


def _make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise CortexError(f"malformed database URL {url!r}; expected e.g. sqlite:///path/to/cortex.db") from exc
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            parent = Path(database).expanduser().resolve().parent
            if not parent.is_dir():
                raise CortexError(f"database directory {str(parent)!r} does not exist; create it or pass another --db")
    try:
        engine = create_engine(parsed)
    except (ArgumentError, SQLAlchemyError, ImportError) as exc:
        raise CortexError(f"cannot use database URL {url!r}: {str(exc).splitlines()[0]}") from exc
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def open_store(url: str) -> Store:
    """Open the database at `url`, creating it and upgrading it to the newest schema.

    Raises:
        CortexError: the URL is malformed or unreachable, or the database was written by a newer cortex.
    """
    engine = _make_engine(url)
    cfg = _alembic_config()
    script = ScriptDirectory.from_config(cfg)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except DBAPIError as exc:  # OperationalError, or DatabaseError for a file that is not SQLite
        engine.dispose()
        raise CortexError(f"cannot open database {url!r}: {exc.orig}") from exc
    known = {rev.revision for rev in script.walk_revisions()}
    if current is not None and current not in known:
        engine.dispose()
        raise CortexError(
            f"database {url!r} is at schema revision {current!r}, newer than this cortex knows "
            f"(head {script.get_current_head()!r}); upgrade cortex, it will not downgrade your data"
        )
    if current != script.get_current_head():
        try:
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except DBAPIError as exc:  # OperationalError, or DatabaseError for a file that is not SQLite
            engine.dispose()
            raise CortexError(f"cannot migrate database {url!r}: {str(exc.orig)}") from exc
    return Store(engine=engine, url=url, sessions=sessionmaker(engine, expire_on_commit=False))
