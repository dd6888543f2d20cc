"""saliency runs, maps and per-image top-n tokens

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "saliency_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
        sa.Column("extractor_id", sa.Integer, sa.ForeignKey("extractors.id", ondelete="CASCADE"), nullable=False),
        sa.Column("samples", sa.Integer, nullable=False),
        sa.Column("alpha", sa.Float, nullable=False),
        sa.Column("top_n", sa.Integer, nullable=False),
        sa.Column("reduce", sa.String(16), nullable=False),
        sa.Column("precision", sa.String(8), nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("extractor_id", "samples", "alpha", "top_n", "reduce", "precision", "seed", name="uq_saliency_run"),
    )
    op.create_table(
        "saliency_maps",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("saliency_runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tsv", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "salient_tokens",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("saliency_runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("rank", sa.Integer, primary_key=True),
        sa.Column("class_pk", sa.Integer, sa.ForeignKey("classes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("token", sa.Integer, nullable=False),
        sa.Column("tsv", sa.Float, nullable=False),
    )
    op.create_index("ix_salient_class_token", "salient_tokens", ["run_id", "class_pk", "token", "image_id", "tsv"])
    op.create_index("ix_salient_token_class", "salient_tokens", ["run_id", "token", "class_pk"])


def downgrade() -> None:
    op.drop_table("salient_tokens")
    op.drop_table("saliency_maps")
    op.drop_table("saliency_runs")
