"""concept_searches table (input-independent token search, `cortex optimize`)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "concept_searches",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("search_key", sa.String(64), nullable=False),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
        sa.Column("extractor_id", sa.Integer, sa.ForeignKey("extractors.id", ondelete="SET NULL"), nullable=True),
        sa.Column("class_pk", sa.Integer, sa.ForeignKey("classes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("init", sa.String(100), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("restart", sa.Integer, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("tokens", sa.LargeBinary, nullable=False),
        sa.Column("snapshots", sa.LargeBinary, nullable=False),
        sa.Column("t_star", sa.Text, nullable=False),
        sa.Column("objective", sa.Float, nullable=False),
        sa.Column("p_target", sa.Float, nullable=False),
        sa.Column("judges", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("search_key", "restart", name="uq_concept_search"),
    )
    op.create_index("ix_concept_searches_class", "concept_searches", ["model_id", "class_pk"])


def downgrade() -> None:
    op.drop_table("concept_searches")
