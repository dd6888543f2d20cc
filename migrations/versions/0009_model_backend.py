"""models.backend: which generator backend (`cortex.backends` entry point) loads each model

Every model registered before this revision is a taming model, so the column is added NOT NULL
with the server default 'taming', which fills the existing rows in the same statement; no table
is rebuilt (SQLite adds a column with a constant default in place), so no child row is touched.
Downgrade drops the column (SQLite 3.35+ drops a column in place too).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("models", sa.Column("backend", sa.String(100), nullable=False, server_default="taming"))


def downgrade() -> None:
    op.drop_column("models", "backend")
