"""edits table

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "edits",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
        sa.Column("extractor_id", sa.Integer, sa.ForeignKey("extractors.id", ondelete="SET NULL"), nullable=True),
        sa.Column("source_class", sa.Integer, nullable=True),
        sa.Column("target_class", sa.Integer, nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("source_tokens", sa.LargeBinary, nullable=False),
        sa.Column("result_tokens", sa.LargeBinary, nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("probabilities", sa.Text, nullable=False),
        sa.Column("source_path", sa.Text, nullable=False),
        sa.Column("output_path", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("edits")
