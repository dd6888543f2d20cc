"""concepts, concept_members, saliency_runs.target: named concepts beyond classes

A concept is a name for what an extractor can be asked about beyond one class (paper §3.1: object
categories, visual attributes, scenes): a union of a model's classes ("red" = the red objects'
classes) or, on a text-conditional backend, a prompt (stored as a class of its own that the prompt
samples, and the concept's one member).

- `concepts` (model_id, name unique per model, kind 'classes' | 'prompt', prompt text);
- `concept_members` (concept_id, class_pk, position: the order the user gave), both foreign keys
  ON DELETE CASCADE;
- `classes.prompt`: the verbatim prompt of a prompt concept's class ('' for every other class: it is
  sampled from its name, as before);
- `edits.target`, `concept_searches.target`: what an edit or a search optimised ('class', as every
  older row did, or a concept target; a search's class_pk is then the concept's first member);
- `saliency_runs.target`: what a run explains, part of its key (`uq_saliency_run`): 'class' (each
  image's own class logit, every run before this revision; the server default) or a concept target
  such as 'logsumexp:0,4,7,10' (`cortex_cli.models.targets`).

The constraint is rebuilt as 0010 rebuilds it: in place on PostgreSQL, by Alembic's batch mode with
SQLite foreign-key enforcement off (the rebuild's DROP TABLE would otherwise cascade into the index).
saliency_runs is none of the four tables 0011's triggers live on, so they survive the rebuild.

Downgrade refuses while a run explains anything but 'class' (it would read as a class run) or a
prompt concept's class exists (it would be sampled from its name), then drops the tables and columns.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

OLD_KEY = ["extractor_id", "samples", "alpha", "top_n", "reduce", "precision", "seed", "method", "steps", "baseline"]
NEW_KEY = [*OLD_KEY, "target"]
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
    op.add_column("classes", sa.Column("prompt", sa.Text(), nullable=False, server_default=""))
    for table in ("edits", "concept_searches"):
        op.add_column(table, sa.Column("target", sa.String(400), nullable=False, server_default="class"))
    op.create_table(
        "concepts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("models.id", ondelete="CASCADE",
                                                          name="fk_concepts_model_id_models"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_concepts"),
        sa.UniqueConstraint("model_id", "name", name="uq_concepts_model_id_name"),
    )
    op.create_table(
        "concept_members",
        sa.Column("concept_id", sa.Integer(), sa.ForeignKey("concepts.id", ondelete="CASCADE",
                                                            name="fk_concept_members_concept_id_concepts"), nullable=False),
        sa.Column("class_pk", sa.Integer(), sa.ForeignKey("classes.id", ondelete="CASCADE",
                                                          name="fk_concept_members_class_pk_classes"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("concept_id", "class_pk", name="pk_concept_members"),
    )
    op.create_index("ix_concept_members_class_pk", "concept_members", ["class_pk"])
    conn = op.get_bind()
    with _rebuildable(conn):
        with op.batch_alter_table("saliency_runs", naming_convention=NAMING_CONVENTION) as batch:
            batch.add_column(sa.Column("target", sa.String(400), nullable=False, server_default="class"))
            batch.drop_constraint("uq_saliency_run", type_="unique")
            batch.create_unique_constraint("uq_saliency_run", NEW_KEY)


def downgrade() -> None:
    conn = op.get_bind()
    others = conn.execute(sa.text("SELECT COUNT(*) FROM saliency_runs WHERE target <> 'class'")).scalar()
    if others:
        raise RuntimeError(f"{others} saliency run(s) explain a concept target; delete them before downgrading below 0012")
    for table in ("edits", "concept_searches"):
        found = conn.execute(sa.text(f"SELECT COUNT(*) FROM {table} WHERE target <> 'class'")).scalar()
        if found:
            raise RuntimeError(f"{found} {table} row(s) optimised a concept target; delete them before downgrading below 0012")
    prompts = conn.execute(sa.text("SELECT COUNT(*) FROM classes WHERE prompt <> ''")).scalar()
    if prompts:
        raise RuntimeError(f"{prompts} class(es) are prompt concepts' classes; delete them before downgrading below 0012")
    with _rebuildable(conn):
        with op.batch_alter_table("saliency_runs", naming_convention=NAMING_CONVENTION) as batch:
            batch.drop_constraint("uq_saliency_run", type_="unique")
            batch.create_unique_constraint("uq_saliency_run", OLD_KEY)
            batch.drop_column("target")
    op.drop_index("ix_concept_members_class_pk", table_name="concept_members")
    op.drop_table("concept_members")
    op.drop_table("concepts")
    with _rebuildable(conn):
        for table, column in (("classes", "prompt"), ("edits", "target"), ("concept_searches", "target")):
            with op.batch_alter_table(table, naming_convention=NAMING_CONVENTION) as batch:
                batch.drop_column(column)
