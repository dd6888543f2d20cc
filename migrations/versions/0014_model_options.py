"""models.options: what a backend needs besides two files to load a model (LlamaGen's GPT size, image size)

A LlamaGen model is a GPT checkpoint, a VQ checkpoint and three choices the files do not record
(`--gpt-model`, `--image-size`, `--downsample`); `options` keeps them as a JSON object so that
`load_model` gives them back to the backend. Every model registered before this revision needs
none, so the column is added NOT NULL with the server default '{}', which fills the existing rows
in the same statement; no table is rebuilt, no other row is touched. Downgrade refuses while a model
has options (it could no longer be loaded), then drops the column.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("models", sa.Column("options", sa.Text(), nullable=False, server_default="{}"))


def downgrade() -> None:
    conn = op.get_bind()
    if "options" not in {c["name"] for c in sa.inspect(conn).get_columns("models")}:
        return  # already gone: a SQLite downgrade that a later step rolled back after this one had committed
    named = conn.execute(sa.text("SELECT name FROM models WHERE options <> '{}' ORDER BY name")).scalars().all()
    if named:
        raise RuntimeError(f"models {', '.join(named)} need their options to load; remove them before downgrading below 0014")
    op.drop_column("models", "options")
