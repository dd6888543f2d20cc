"""constraint names: give every constraint 0001-0007 left unnamed the naming convention's name

0001-0007 created the primary keys, the foreign keys and three unique constraints (models.name,
classes (model_id, class_id), extractors (model_id, name)) without names, so SQLite stores them
nameless and PostgreSQL names them itself (`classes_pkey`, `classes_model_id_fkey`,
`classes_model_id_class_id_key`). `Base.metadata` now has a naming convention; this revision gives
existing databases the names it gives (`pk_classes`, `fk_classes_model_id_models`,
`uq_classes_model_id_class_id`), so later batch migrations can drop or alter constraints by name.
Explicitly named constraints and indexes (`uq_images_sample`, `ix_salient_class_token`, ...) keep
their names.

PostgreSQL: `ALTER TABLE t RENAME CONSTRAINT old TO new` for each reflected name that differs
(the constraint's index is renamed with it).
SQLite, which cannot rename a constraint: each table that needs it is rebuilt by Alembic's batch
mode (`recreate="always"` with `naming_convention`, which names the constraints that reflect without
a name), with foreign-key enforcement off. cortex's connections turn `PRAGMA foreign_keys` on, and
dropping a parent table during a rebuild with enforcement on runs an implicit DELETE that cascades
into every child table; the pragma is a no-op inside a transaction, so the migration commits what
the earlier revisions did first (re-running a revision is safe: this one renames only what
differs), rebuilds the tables in one transaction, checks `PRAGMA foreign_key_check`, commits and
turns enforcement back on.

A database created by 0001-0007 under the convention (any fresh one since it was added: Alembic's
`op.create_table` follows the target metadata's convention) already has these names; then this
revision changes nothing. Downgrade is a no-op: the names are valid under every earlier revision.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# `cortex_cli.store.schema.NAMING_CONVENTION` as of this revision (copied, so that this revision
# keeps meaning the same thing if the convention ever changes).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# every table of 0001-0007, parents before children
TABLES = ("models", "classes", "images", "token_counts", "extractors", "saliency_runs", "saliency_maps",
          "salient_tokens", "edits", "evaluations", "concept_searches", "run_token_counts", "run_class_counts")

# unique constraints that 0001-0007 named explicitly: they keep their names (so do all indexes)
EXPLICIT_UNIQUES = {"uq_images_sample", "uq_saliency_run", "uq_concept_search"}


def renames(conn) -> dict[str, list[tuple[str | None, str]]]:
    """{table: [(current name, convention name), ...]} for each constraint whose reflected name differs."""
    insp = sa.inspect(conn)
    out: dict[str, list[tuple[str | None, str]]] = {}
    for table in TABLES:
        wanted: list[tuple[str | None, str]] = []
        pk = insp.get_pk_constraint(table)
        if pk["constrained_columns"]:
            wanted.append((pk.get("name"), NAMING_CONVENTION["pk"] % {"table_name": table}))
        for fk in insp.get_foreign_keys(table):
            wanted.append((fk.get("name"), NAMING_CONVENTION["fk"] % {
                "table_name": table, "column_0_name": fk["constrained_columns"][0], "referred_table_name": fk["referred_table"]}))
        for uq in insp.get_unique_constraints(table):
            if uq.get("name") in EXPLICIT_UNIQUES:
                continue
            wanted.append((uq.get("name"), NAMING_CONVENTION["uq"] % {
                "table_name": table, "column_0_N_name": "_".join(uq["column_names"])}))
        for _, new in wanted:
            if len(new) > conn.dialect.max_identifier_length:
                raise RuntimeError(f"constraint name {new!r} is longer than {conn.dialect.name} allows")
        changed = [(old, new) for old, new in wanted if old != new]
        if changed:
            out[table] = changed
    return out


@contextmanager
def _sqlite_foreign_keys_off(conn):
    """Run the body with `PRAGMA foreign_keys=OFF` in a transaction of its own; enforcement is restored after.

    With enforcement on, a batch rebuild's `DROP TABLE parent` deletes (ON DELETE CASCADE) or nulls
    (SET NULL) the rows of every child table. The pragma cannot change inside a transaction, so an
    open one (the earlier revisions' work) is committed first.
    """
    if not conn.exec_driver_sql("PRAGMA foreign_keys").scalar():
        yield
        return
    raw = conn.connection.driver_connection  # sqlite3.Connection: SQLAlchemy's Transaction stays open around it
    if raw.in_transaction:
        raw.commit()
    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        if conn.exec_driver_sql("PRAGMA foreign_keys").scalar():
            raise RuntimeError("could not turn SQLite foreign-key enforcement off to rebuild tables")
        violations = len(conn.exec_driver_sql("PRAGMA foreign_key_check").all())  # any an older tool left
        conn.exec_driver_sql("BEGIN")  # all rebuilds (DDL included) in one transaction
        try:
            yield
            if len(conn.exec_driver_sql("PRAGMA foreign_key_check").all()) > violations:
                raise RuntimeError("rebuilding tables broke foreign keys; nothing was changed")
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
    finally:
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")


def upgrade() -> None:
    conn = op.get_bind()
    todo = renames(conn)
    if not todo:
        return
    if conn.dialect.name == "sqlite":
        with _sqlite_foreign_keys_off(conn):
            for table in TABLES:
                if table in todo:
                    with op.batch_alter_table(table, recreate="always", naming_convention=NAMING_CONVENTION):
                        pass
    else:
        quote = conn.dialect.identifier_preparer.quote
        for table, pairs in todo.items():
            for old, new in pairs:
                op.execute(f"ALTER TABLE {quote(table)} RENAME CONSTRAINT {quote(old)} TO {quote(new)}")
    left = renames(conn)
    if left:
        raise RuntimeError(f"constraints still not named by the convention: {left}")


def downgrade() -> None:
    """No-op: the convention's names are valid under every earlier revision, which never refers to a constraint by name."""
