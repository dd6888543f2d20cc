"""extractors table

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "extractors",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("arch", sa.String(16), nullable=False),
        sa.Column("hparams", sa.Text, nullable=False),
        sa.Column("ckpt_path", sa.Text, nullable=False),
        sa.Column("ckpt_sha256", sa.String(64), nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("model_id", "name"),
    )


def downgrade() -> None:
    op.drop_table("extractors")
