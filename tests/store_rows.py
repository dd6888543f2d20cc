"""Synthetic rows for the store tests, written through the store functions themselves (no model files needed)."""

from __future__ import annotations

from cortex_cli.store import images, registered_models as models
from cortex_cli.store.extractors import upsert_extractor

GRID = 2  # 2x2 token grids, one byte pair per token


def add_model(store, name: str = "m", n_classes: int = 2) -> models.ModelInfo:
    row = models.NewModel(name=name, config_path="c.yaml", ckpt_path="m.ckpt", config_hash="0" * 64, n_embed=8,
                          embed_dim=4, grid=GRID, image_size=8, labels="")
    return models.insert_model(store, row, [models.NewClass(i, f"class{i}", (f"syn{i}",)) for i in range(n_classes)])


def grid_blob(*tokens: int) -> bytes:
    return b"".join(int(t).to_bytes(2, "little") for t in tokens)


def add_images(store, model, class_pk: int, seeds, *, split: str = "train", sampler: str = "s", token: int = 1) -> dict[int, int]:
    """seed -> id of new images whose grids hold `token` and then seed % 8."""
    group = images.ImageGroup(model.id, class_pk, split, sampler)
    blobs = {seed: grid_blob(token, seed % 8, token, token) for seed in seeds}
    ours, _ = images.insert_images(store, group, blobs, lambda inserted: {})
    return ours


def add_extractor(store, model, name: str = "ce") -> int:
    return upsert_extractor(store, model.id, name, arch="ce", hparams="{}", ckpt_path="", ckpt_sha256="0" * 64, metrics="{}").id


def sqlite_row_counts(db) -> dict[str, int]:
    """table -> row count of a SQLite file, read with the standard library (what "the store is unchanged" compares)."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
