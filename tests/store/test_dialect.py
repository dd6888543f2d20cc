"""store/dialect.py: insert-or-ignore and the two upserts, the same on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cortex_cli.core.errors import CortexError
from cortex_cli.store.dialect import _insert, insert_ignore, upsert_add, upsert_replace
from cortex_cli.store.schema import ClassRow, ExtractorRow, ImageRow, ModelRow, TokenCountRow

pytestmark = pytest.mark.both_backends


def _model_and_class(store) -> tuple[int, int]:
    with store.session() as s, s.begin():
        model = ModelRow(name="m", config_path="c", ckpt_path="k", config_hash="0" * 64, n_embed=64, embed_dim=16, grid=16, image_size=64, labels="")
        s.add(model)
        s.flush()
        cls = ClassRow(model_id=model.id, class_id=0, name="goldfinch", synonyms="")
        s.add(cls)
        s.flush()
        return model.id, cls.id


def test_insert_ignore_and_upserts(store):
    model_id, class_pk = _model_and_class(store)

    def image(seed: int, blob: bytes) -> dict:
        return dict(model_id=model_id, class_pk=class_pk, split="train", seed=seed, sampler="s", tokens=blob)

    with store.session() as s, s.begin():
        first = insert_ignore(s, ImageRow, [image(0, b"\x00\x01"), image(1, b"\x02\x03")], returning=("seed", "id"))
    with store.session() as s, s.begin():  # seed 1 is stored: only seed 2 goes in, seed 1 keeps its tokens
        second = insert_ignore(s, ImageRow, [image(1, b"\xff\xff"), image(2, b"\x04\x05")], returning=("seed", "id"))
        assert insert_ignore(s, ImageRow, []) == [] and insert_ignore(s, ImageRow, [image(0, b"")]) == []
    assert [r.seed for r in first] == [0, 1] and [r.seed for r in second] == [2]
    with store.session() as s:
        stored = dict(s.execute(select(ImageRow.seed, ImageRow.tokens)).all())
    assert stored == {0: b"\x00\x01", 1: b"\x02\x03", 2: b"\x04\x05"}
    assert all(type(blob) is bytes for blob in stored.values())  # bytea comes back as bytes

    def counts(token: int, count: int) -> dict:
        return dict(model_id=model_id, class_pk=class_pk, split="train", token=token, count=count, n_images=1)

    keys, adds = ("model_id", "class_pk", "split", "token"), ("count", "n_images")
    with store.session() as s, s.begin():
        upsert_add(s, TokenCountRow, [counts(5, 3), counts(1, 2)], keys, adds)
    with store.session() as s, s.begin():
        upsert_add(s, TokenCountRow, [counts(1, 10), counts(7, 1)], keys, adds)
    with store.session() as s:
        assert {r.token: (r.count, r.n_images) for r in s.scalars(select(TokenCountRow))} == {1: (12, 2), 5: (3, 1), 7: (1, 1)}

    def extractor(arch: str) -> dict:
        return dict(model_id=model_id, name="ce", arch=arch, hparams="{}", ckpt_path="", ckpt_sha256="0" * 64, metrics="{}")

    for arch in ("ce", "re"):
        with store.session() as s, s.begin():
            upsert_replace(s, ExtractorRow, [extractor(arch)], ("model_id", "name"), ("arch",))
    with store.session() as s:
        assert s.execute(select(ExtractorRow.name, ExtractorRow.arch)).all() == [("ce", "re")]


def test_a_third_database_is_refused_in_one_line(store, monkeypatch):
    with store.session() as s:
        monkeypatch.setattr(s.get_bind().dialect, "name", "mysql")
        with pytest.raises(CortexError, match="cortex stores its index in SQLite or PostgreSQL, not 'mysql'"):
            _insert(s, ImageRow)
