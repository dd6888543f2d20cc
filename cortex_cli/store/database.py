"""Open (create, migrate) the cortex database: a SQLite file or a PostgreSQL database. Opening always upgrades to head."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..core.errors import CortexError, first_line
from .dialect import SUPPORTED


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


def masked(url: str) -> str:
    """The URL as it may be shown to the user: the password, if any, as '***'."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def check_url(url: str) -> str:
    """`url` without surrounding blanks; CortexError unless it parses as a SQLite or PostgreSQL URL (nothing is opened or created)."""
    url = url.strip()
    if not url:
        raise CortexError("the database URL is empty; give e.g. sqlite:///cortex.db, or leave it out for the default")
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CortexError(
            f"malformed database URL {url!r}; expected e.g. sqlite:///path/to/cortex.db or postgresql+psycopg://user@host/cortex"
        ) from None
    if parsed.get_backend_name() not in SUPPORTED:
        raise CortexError(f"cannot use database URL {masked(url)!r}: cortex stores its index in SQLite or PostgreSQL, "
                          f"not {parsed.get_backend_name()!r}")
    return url


def _make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise CortexError(
            f"malformed database URL {url!r}; expected e.g. sqlite:///path/to/cortex.db or postgresql+psycopg://user@host/cortex"
        ) from exc
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            parent = Path(database).expanduser().resolve().parent
            if not parent.is_dir():
                raise CortexError(f"database directory {str(parent)!r} does not exist; create it or pass another --db")
    elif backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # the driver of cortex[postgres], whatever SQLAlchemy's default
    try:
        kwargs = {}
        if backend == "postgresql":
            kwargs["pool_pre_ping"] = True  # a long run survives a server restart between its transactions
            if "connect_timeout" not in parsed.query:
                kwargs["connect_args"] = {"connect_timeout": 10}  # an unreachable host fails in seconds, not minutes
            # psycopg logs "error ignored terminating <Pipeline>: the connection is lost" while it unwinds a dead
            # connection; with no logging configured Python prints that on stderr beside our own one-line error
            logging.getLogger("psycopg").addHandler(logging.NullHandler())
        engine = create_engine(parsed, **kwargs)
    except ImportError as exc:
        hint = "; install it with: pip install 'cortex-cli[postgres]'" if backend == "postgresql" else ""
        raise CortexError(f"cannot use database URL {shown!r}: its driver is not installed ({first_line(exc)}){hint}") from exc
    except (ArgumentError, SQLAlchemyError) as exc:
        raise CortexError(f"cannot use database URL {shown!r}: {first_line(exc)}") from exc
    if engine.dialect.name not in SUPPORTED:
        engine.dispose()
        raise CortexError(f"cannot use database URL {shown!r}: cortex stores its index in SQLite or PostgreSQL, not {engine.dialect.name!r}")
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def lost_database(exc: BaseException) -> CortexError | None:
    """The one-line error for a database that went away mid-command (server stopped, network gone); None for anything else.

    Every batch is its own transaction, so what was committed stays and the same command resumes.
    """
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return None
    first = next((line.strip() for line in str(exc.orig).splitlines() if line.strip()), type(exc.orig).__name__)
    return CortexError(f"the database stopped answering: {first}; finished batches are saved, "
                       "rerun the same command once the database is back to resume")


def _unreachable(url: str, exc: DBAPIError) -> CortexError:
    """A one-line error for a database that cannot be opened, with what to do about it."""
    shown = masked(url)
    first = next((line.strip() for line in str(exc.orig).splitlines() if line.strip()), type(exc.orig).__name__)
    if make_url(url).get_backend_name() != "postgresql":
        return CortexError(f"cannot open database {shown!r}: {first}")
    if "does not exist" in first and "database" in first:
        hint = f"create it (createdb {make_url(url).database}) or pass another --db"
    else:
        hint = "check that the PostgreSQL server is running and that the URL's host, port, user and password are right"
    return CortexError(f"cannot connect to database {shown!r}: {first}; {hint}")


# Any constant shared by every cortex process: PostgreSQL runs one migration at a time under it.
_MIGRATION_LOCK = 0x636F72746578


def open_store(url: str) -> Store:
    """Open the database at `url`, creating it and upgrading it to the newest schema.

    Args:
        url: `sqlite:///path/to/cortex.db`, or `postgresql+psycopg://user[:password]@host[:port]/dbname`
            (the database must exist; its tables are created here).

    Raises:
        CortexError: the URL is malformed or unreachable, or the database was written by a newer cortex.
            Messages show the URL with its password masked.
    """
    engine = _make_engine(url)
    try:
        _migrate(engine, url)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine=engine, url=url, sessions=sessionmaker(engine, expire_on_commit=False))


def _migrate(engine: Engine, url: str) -> None:
    """Upgrade the database to head (a no-op at head); CortexError if it cannot be read or is newer."""
    cfg = _alembic_config()
    script = ScriptDirectory.from_config(cfg)
    head = script.get_current_head()
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except DBAPIError as exc:  # OperationalError, or DatabaseError for a file that is not SQLite
        raise _unreachable(url, exc) from exc
    _refuse_newer(url, current, script)
    if current == head:
        return
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # several processes (torchrun ranks) may open a fresh database at once: the first
                # migrates (DDL is transactional there), the others wait here and then find it at head
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
                current = MigrationContext.configure(conn).get_current_revision()
                _refuse_newer(url, current, script)
            if current != head:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
    except DBAPIError as exc:  # OperationalError, or DatabaseError for a file that is not SQLite
        raise CortexError(f"cannot migrate database {masked(url)!r}: {first_line(exc.orig)}") from exc


def _refuse_newer(url: str, current: str | None, script: ScriptDirectory) -> None:
    known = {rev.revision for rev in script.walk_revisions()}
    if current is not None and current not in known:
        raise CortexError(
            f"database {masked(url)!r} is at schema revision {current!r}, newer than this cortex knows "
            f"(head {script.get_current_head()!r}); upgrade cortex, it will not downgrade your data"
        )
