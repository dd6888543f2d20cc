"""run_token_counts and run_class_counts: per-run counts that `cortex token` reads (backfilled)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""
from collections import defaultdict

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_token_counts",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("saliency_runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("split", sa.String(16), primary_key=True),
        sa.Column("class_pk", sa.Integer, sa.ForeignKey("classes.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("token", sa.Integer, primary_key=True),
        sa.Column("salient", sa.Integer, nullable=False),
        sa.Column("salient_images", sa.Integer, nullable=False),
        sa.Column("occurrences", sa.Integer, nullable=False),
        sa.Column("occurrence_images", sa.Integer, nullable=False),
    )
    op.create_index("ix_run_token_counts_token", "run_token_counts", ["run_id", "split", "token"])
    op.create_table(
        "run_class_counts",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("saliency_runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("split", sa.String(16), primary_key=True),
        sa.Column("class_pk", sa.Integer, sa.ForeignKey("classes.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("images", sa.Integer, nullable=False),
    )
    _backfill(op.get_bind())


def _backfill(conn) -> None:
    """Count what earlier versions indexed, one (run, split, class) at a time."""
    groups = conn.execute(sa.text(
        "SELECT DISTINCT sm.run_id, i.split, i.class_pk, m.n_embed FROM saliency_maps sm "
        "JOIN images i ON i.id = sm.image_id JOIN models m ON m.id = i.model_id ORDER BY 1, 2, 3"
    )).all()
    for run_id, split, class_pk, n_embed in groups:
        dtype = "<u2" if n_embed <= 65536 else "<i4"
        grids = conn.execute(sa.text(
            "SELECT i.tokens FROM saliency_maps sm JOIN images i ON i.id = sm.image_id "
            "WHERE sm.run_id = :r AND i.split = :s AND i.class_pk = :c"
        ), {"r": run_id, "s": split, "c": class_pk}).scalars().all()
        salient = conn.execute(sa.text(
            "SELECT st.image_id, st.token FROM salient_tokens st JOIN images i ON i.id = st.image_id "
            "WHERE st.run_id = :r AND i.split = :s AND st.class_pk = :c"
        ), {"r": run_id, "s": split, "c": class_pk}).all()
        counts = defaultdict(lambda: [0, 0, 0, 0])
        for blob in grids:
            tokens, n = np.unique(np.frombuffer(blob, dtype=dtype), return_counts=True)
            for t, k in zip(tokens.tolist(), n.tolist()):
                counts[int(t)][2] += int(k)
                counts[int(t)][3] += 1
        per_image = defaultdict(list)
        for image_id, token in salient:
            per_image[image_id].append(int(token))
        for tokens in per_image.values():
            for t in set(tokens):
                counts[t][0] += tokens.count(t)
                counts[t][1] += 1
        if counts:
            conn.execute(sa.text(
                "INSERT INTO run_token_counts (run_id, split, class_pk, token, salient, salient_images, occurrences, occurrence_images) "
                "VALUES (:r, :s, :c, :t, :a, :b, :o, :p)"
            ), [{"r": run_id, "s": split, "c": class_pk, "t": t, "a": a, "b": b, "o": o, "p": p} for t, (a, b, o, p) in sorted(counts.items())])
        conn.execute(sa.text("INSERT INTO run_class_counts (run_id, split, class_pk, images) VALUES (:r, :s, :c, :n)"),
                     {"r": run_id, "s": split, "c": class_pk, "n": len(grids)})


def downgrade() -> None:
    op.drop_table("run_class_counts")
    op.drop_table("run_token_counts")
