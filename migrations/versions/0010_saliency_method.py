"""saliency_runs.method, .steps, .baseline: the attribution method is part of a run's key

A run is now identified by its attribution method (cortex_cli/attribution/) and that method's
parameters as well: `method` (every run before this revision is a SmoothGrad run, so the column is
added NOT NULL with the server default 'smoothgrad'), and integrated-gradients' `steps` and `baseline`
(0 and 'none' where the method does not use them, as for every existing run). `uq_saliency_run`
gains the three columns, so two methods can index the same images side by side.

PostgreSQL adds the columns and swaps the constraint in place. SQLite cannot alter a constraint, so
`saliency_runs` is rebuilt by Alembic's batch mode with foreign-key enforcement off (as 0008 does and
for the same reason: with enforcement on, dropping the parent table during the rebuild would cascade
into saliency_maps, salient_tokens and the run counts); `PRAGMA foreign_key_check` must pass after.

Downgrade restores the old constraint and drops the columns; it refuses while a run of another
method than smoothgrad exists (it would read as a SmoothGrad run, or collide with one).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

OLD_KEY = ["extractor_id", "samples", "alpha", "top_n", "reduce", "precision", "seed"]
NEW_KEY = [*OLD_KEY, "method", "steps", "baseline"]
# `cortex_cli.store.schema.NAMING_CONVENTION` as of this revision (copied: see 0008)
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


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
            raise RuntimeError("could not turn SQLite foreign-key enforcement off to rebuild saliency_runs")
        violations = len(conn.exec_driver_sql("PRAGMA foreign_key_check").all())
        conn.exec_driver_sql("BEGIN")
        try:
            yield
            if len(conn.exec_driver_sql("PRAGMA foreign_key_check").all()) > violations:
                raise RuntimeError("rebuilding saliency_runs broke foreign keys; nothing was changed")
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


def upgrade() -> None:
    conn = op.get_bind()
    with _rebuildable(conn):
        with op.batch_alter_table("saliency_runs", naming_convention=NAMING_CONVENTION) as batch:
            batch.add_column(sa.Column("method", sa.String(40), nullable=False, server_default="smoothgrad"))
            batch.add_column(sa.Column("steps", sa.Integer(), nullable=False, server_default="0"))
            batch.add_column(sa.Column("baseline", sa.String(40), nullable=False, server_default="none"))
            batch.drop_constraint("uq_saliency_run", type_="unique")
            batch.create_unique_constraint("uq_saliency_run", NEW_KEY)


def downgrade() -> None:
    conn = op.get_bind()
    others = conn.execute(sa.text("SELECT COUNT(*) FROM saliency_runs WHERE method <> 'smoothgrad'")).scalar()
    if others:
        raise RuntimeError(f"{others} saliency run(s) use another method than smoothgrad; delete them before downgrading below 0010")
    with _rebuildable(conn):
        with op.batch_alter_table("saliency_runs", naming_convention=NAMING_CONVENTION) as batch:
            batch.drop_constraint("uq_saliency_run", type_="unique")
            batch.create_unique_constraint("uq_saliency_run", OLD_KEY)
            batch.drop_column("baseline")
            batch.drop_column("steps")
            batch.drop_column("method")
