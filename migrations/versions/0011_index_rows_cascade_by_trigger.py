"""salient_tokens, run_token_counts: no foreign keys; delete triggers on their parent rows cascade instead

Both tables hold derived rows that only `cortex_cli/store/index.write_index` writes, in the
transaction that inserts the rows they derive from, which are foreign-key checked: an image's top-n
rows (`salient_tokens`) come with its map (`saliency_maps` (run_id, image_id): FKs to saliency_runs
and images), a run's token counts (`run_token_counts`) with its class count (`run_class_counts`
(run_id, split, class_pk): FKs to saliency_runs and classes). Their own FK checks were redundant and
cost half of PostgreSQL's index write rate (1,400 images/s with them, 2,900 without): ~20 salient and
up to ~40 count rows per image, each checked by a per-row lookup that also takes a FOR KEY SHARE lock
on its parent row, so concurrent writers contend (through MultiXacts) on the one saliency_runs row.
What the FKs still gave is ON DELETE CASCADE; delete triggers give it now:

- a row deleted from `saliency_maps` deletes that (run_id, image_id)'s `salient_tokens`;
- a row deleted from `run_class_counts` deletes that (run_id, split, class_pk)'s `run_token_counts`.

Deleting a run, image, class, extractor or model already cascades into those two parent tables
through their FKs, and cascaded deletes fire the triggers, so the derived rows still go with them.

PostgreSQL (11 or newer): one plpgsql function per trigger, fired AFTER DELETE FOR EACH STATEMENT
with the deleted rows as a transition table (`gone`), which one set-based DELETE ... USING gone
removes. The DELETE is dynamic SQL (EXECUTE) so that it is planned for each call with the
transition table's real row count: plpgsql caches a static statement's plan for the session, and a
plan made for a run's million-row delete (a hash join over the whole table) would then serve every
one-map delete that each deleted image cascades into.
SQLite: `AFTER DELETE ... FOR EACH ROW` triggers. Dropping a foreign key there means rebuilding the
table by Alembic's batch mode, with foreign-key enforcement off (see 0008 and 0010: with it on, the
rebuild's DROP TABLE would cascade); the rebuild keeps the primary keys and the indexes
(ix_salient_class_token, ix_salient_token_class, ix_run_token_counts_token).

A later migration that rebuilds one of these four tables on SQLite (batch mode) must drop the two
triggers first and create them again after: the rebuild of saliency_maps or run_class_counts drops
the trigger on it silently, and the rebuild of salient_tokens or run_token_counts fails at its
ALTER TABLE ... RENAME while a trigger names the table it dropped.

Downgrade drops the triggers (and functions) and adds the five FKs back with ON DELETE CASCADE and
their convention names; it refuses while a row of either table refers to a run, image or class that
does not exist (it would fail to add the FK, or on SQLite leave a violation), rather than delete it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# `cortex_cli.store.schema.NAMING_CONVENTION` as of this revision (copied: see 0008)
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# (table, column, referred table) of the foreign keys this revision drops; each refers to the table's `id`
FOREIGN_KEYS = (
    ("salient_tokens", "run_id", "saliency_runs"),
    ("salient_tokens", "image_id", "images"),
    ("salient_tokens", "class_pk", "classes"),
    ("run_token_counts", "run_id", "saliency_runs"),
    ("run_token_counts", "class_pk", "classes"),
)
DERIVED = ("salient_tokens", "run_token_counts")

# (trigger and function name, parent table, derived table, the key they share)
TRIGGERS = (
    ("cortex_cascade_salient_tokens", "saliency_maps", "salient_tokens", ("run_id", "image_id")),
    ("cortex_cascade_run_token_counts", "run_class_counts", "run_token_counts", ("run_id", "split", "class_pk")),
)


def fk_name(table: str, column: str, referred: str) -> str:
    return NAMING_CONVENTION["fk"] % {"table_name": table, "column_0_name": column, "referred_table_name": referred}


@contextmanager
def _sqlite_foreign_keys_off(conn):
    """Run the body with `PRAGMA foreign_keys=OFF` in a transaction of its own; enforcement is restored after (see 0008)."""
    if not conn.exec_driver_sql("PRAGMA foreign_keys").scalar():
        yield
        return
    raw = conn.connection.driver_connection
    if raw.in_transaction:
        raw.commit()
    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        if conn.exec_driver_sql("PRAGMA foreign_keys").scalar():
            raise RuntimeError("could not turn SQLite foreign-key enforcement off to rebuild salient_tokens and run_token_counts")
        violations = len(conn.exec_driver_sql("PRAGMA foreign_key_check").all())
        conn.exec_driver_sql("BEGIN")
        try:
            yield
            if len(conn.exec_driver_sql("PRAGMA foreign_key_check").all()) > violations:
                raise RuntimeError("rebuilding salient_tokens and run_token_counts broke foreign keys; nothing was changed")
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
    finally:
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")


@contextmanager
def _rebuildable(conn):
    if conn.dialect.name == "sqlite":
        with _sqlite_foreign_keys_off(conn):
            yield
    else:
        yield


def _foreign_keys(conn, table: str) -> set[str]:
    return {fk.get("name") or "" for fk in sa.inspect(conn).get_foreign_keys(table)}


def _create_triggers(conn) -> None:
    for name, parent, derived, key in TRIGGERS:
        if conn.dialect.name == "postgresql":
            match = " AND ".join(f"d.{c} = g.{c}" for c in key)
            op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                       f"BEGIN\n"
                       f"    EXECUTE 'DELETE FROM {derived} d USING gone g WHERE {match}';\n"
                       f"    RETURN NULL;\n"
                       f"END\n$$")
            op.execute(f"CREATE TRIGGER {name} AFTER DELETE ON {parent} REFERENCING OLD TABLE AS gone "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()")
        else:
            match = " AND ".join(f"{c} = OLD.{c}" for c in key)
            op.execute(f"CREATE TRIGGER {name} AFTER DELETE ON {parent} FOR EACH ROW "
                       f"BEGIN DELETE FROM {derived} WHERE {match}; END")


def _drop_triggers(conn) -> None:
    for name, parent, _, _ in TRIGGERS:
        if conn.dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER {name} ON {parent}")
            op.execute(f"DROP FUNCTION {name}()")
        else:
            op.execute(f"DROP TRIGGER {name}")


def upgrade() -> None:
    conn = op.get_bind()
    for table in DERIVED:
        wanted = {fk_name(t, c, r) for t, c, r in FOREIGN_KEYS if t == table}
        found = _foreign_keys(conn, table)
        if found != wanted:
            raise RuntimeError(f"{table} has foreign keys {sorted(found)}, expected {sorted(wanted)} (the names 0008 gives)")
    with _rebuildable(conn):
        for table in DERIVED:
            with op.batch_alter_table(table, naming_convention=NAMING_CONVENTION) as batch:
                for t, column, referred in FOREIGN_KEYS:
                    if t == table:
                        batch.drop_constraint(fk_name(t, column, referred), type_="foreignkey")
        _create_triggers(conn)
    for table in DERIVED:
        if _foreign_keys(conn, table):
            raise RuntimeError(f"{table} still has foreign keys {sorted(_foreign_keys(conn, table))}")


def orphans(conn) -> dict[str, int]:
    """{table: rows whose run, image or class no longer exists} for each derived table that has any."""
    out = {}
    for table in DERIVED:
        missing = " OR ".join(f"NOT EXISTS (SELECT 1 FROM {referred} p WHERE p.id = d.{column})"
                              for t, column, referred in FOREIGN_KEYS if t == table)
        n = conn.execute(sa.text(f"SELECT COUNT(*) FROM {table} d WHERE {missing}")).scalar()
        if n:
            out[table] = int(n)
    return out


def downgrade() -> None:
    conn = op.get_bind()
    left = orphans(conn)
    if left:
        counts = ", ".join(f"{n} {table} row(s)" for table, n in left.items())
        raise RuntimeError(f"{counts} refer to a run, image or class that no longer exists, and the foreign keys below 0011 "
                           "would not hold; delete those rows before downgrading below 0011")
    with _rebuildable(conn):
        _drop_triggers(conn)
        for table in DERIVED:
            with op.batch_alter_table(table, naming_convention=NAMING_CONVENTION) as batch:
                for t, column, referred in FOREIGN_KEYS:
                    if t == table:
                        batch.create_foreign_key(fk_name(t, column, referred), referred, [column], ["id"], ondelete="CASCADE")
