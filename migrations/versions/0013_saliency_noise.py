"""saliency_runs.noise: SmoothGrad's noise generator is part of a run's key

SmoothGrad's noise now comes from a counter-based generator drawn on the device ('philox',
`cortex_cli/core/philox.py`: keyed by the image's identity and the run's seed, so a map does not depend on
its batch, the rank count or the device); the per-image CPU generators of every earlier run ('host')
stay available, so those runs reproduce. The two give different maps, so `noise` joins the run key
(`uq_saliency_run`): a 'host' run and a 'philox' run of the same extractor and parameters are two runs,
never one.

Existing rows: SmoothGrad runs become 'host' (the noise they were made with), runs of the methods that
draw no noise 'none' (`SaliencySettings.canonical()`'s neutral value, so those runs keep their key). The
column is added NOT NULL with the server default 'host' (filling the old rows), then its server default
becomes 'philox': a run inserted without it is a new default run.

The constraint and the default change as 0010 and 0012 change them: in place on PostgreSQL, by
Alembic's batch mode with SQLite foreign-key enforcement off (the rebuild's DROP TABLE would otherwise
cascade into the index; saliency_runs is none of the four tables 0011's triggers live on).

Downgrade refuses while a 'philox' run exists (it would read as a 'host' run, or collide with one),
then restores the old key and drops the column.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

OLD_KEY = ["extractor_id", "samples", "alpha", "top_n", "reduce", "precision", "seed", "method", "steps", "baseline", "target"]
NEW_KEY = ["extractor_id", "samples", "alpha", "top_n", "reduce", "precision", "seed", "method", "steps", "baseline", "noise", "target"]
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
    op.add_column("saliency_runs", sa.Column("noise", sa.String(16), nullable=False, server_default="host"))
    conn.execute(sa.text("UPDATE saliency_runs SET noise = 'none' WHERE method <> 'smoothgrad'"))
    with _rebuildable(conn):
        with op.batch_alter_table("saliency_runs", naming_convention=NAMING_CONVENTION) as batch:
            batch.alter_column("noise", existing_type=sa.String(16), existing_nullable=False, server_default="philox")
            batch.drop_constraint("uq_saliency_run", type_="unique")
            batch.create_unique_constraint("uq_saliency_run", NEW_KEY)


def downgrade() -> None:
    conn = op.get_bind()
    philox = conn.execute(sa.text("SELECT COUNT(*) FROM saliency_runs WHERE noise = 'philox'")).scalar()
    if philox:
        raise RuntimeError(f"{philox} saliency run(s) use the philox noise; delete them before downgrading below 0013")
    with _rebuildable(conn):
        with op.batch_alter_table("saliency_runs", naming_convention=NAMING_CONVENTION) as batch:
            batch.drop_constraint("uq_saliency_run", type_="unique")
            batch.create_unique_constraint("uq_saliency_run", OLD_KEY)
            batch.drop_column("noise")
