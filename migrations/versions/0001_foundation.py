"""foundation: models, classes, images, token_counts

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("config_path", sa.Text, nullable=False),
        sa.Column("ckpt_path", sa.Text, nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("n_embed", sa.Integer, nullable=False),
        sa.Column("embed_dim", sa.Integer, nullable=False),
        sa.Column("grid", sa.Integer, nullable=False),
        sa.Column("image_size", sa.Integer, nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "classes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
        sa.Column("class_id", sa.Integer, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("synonyms", sa.Text, nullable=False),
        sa.UniqueConstraint("model_id", "class_id"),
    )
    op.create_table(
        "images",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
        sa.Column("class_pk", sa.Integer, sa.ForeignKey("classes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("split", sa.String(16), nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("sampler", sa.String(100), nullable=False),
        sa.Column("tokens", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("model_id", "class_pk", "split", "seed", "sampler", name="uq_images_sample"),
    )
    op.create_index("ix_images_class_split", "images", ["class_pk", "split"])
    op.create_table(
        "token_counts",
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("class_pk", sa.Integer, sa.ForeignKey("classes.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("split", sa.String(16), primary_key=True),
        sa.Column("token", sa.Integer, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("n_images", sa.Integer, nullable=False),
    )
    op.create_index("ix_token_counts_token", "token_counts", ["model_id", "token"])


def downgrade() -> None:
    op.drop_table("token_counts")
    op.drop_table("images")
    op.drop_table("classes")
    op.drop_table("models")
