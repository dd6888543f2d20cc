"""store/schema.py: what the tables themselves guarantee (uniqueness, foreign keys, cascades, defaults), on both backends."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from cortex_cli.store.schema import ClassRow, ImageRow, ModelRow, utcnow

pytestmark = pytest.mark.both_backends


def _model(name="m"):
    return ModelRow(name=name, config_path="c.yaml", ckpt_path="m.ckpt", config_hash="0" * 64, n_embed=64,
                    embed_dim=16, grid=16, image_size=64, labels="")


def test_uniqueness_makes_generation_idempotent_and_foreign_keys_hold(store):
    with store.session() as s, s.begin():
        model = _model()
        s.add(model)
        s.flush()
        cls = ClassRow(model_id=model.id, class_id=0, name="goldfinch", synonyms="")
        s.add(cls)
        s.flush()
        s.add(ImageRow(model_id=model.id, class_pk=cls.id, split="train", seed=0, sampler="greedy", tokens=b"\0\0"))
        ids = (model.id, cls.id)
    with pytest.raises(IntegrityError), store.session() as s, s.begin():
        s.add(ImageRow(model_id=ids[0], class_pk=ids[1], split="train", seed=0, sampler="greedy", tokens=b"\1\0"))
    with store.session() as s, s.begin():  # other split, seed or sampler: a new row
        s.add(ImageRow(model_id=ids[0], class_pk=ids[1], split="test", seed=0, sampler="greedy", tokens=b"\1\0"))
    with pytest.raises(IntegrityError), store.session() as s, s.begin():
        s.add(ImageRow(model_id=ids[0], class_pk=12345, split="val", seed=0, sampler="greedy", tokens=b""))
    with store.session() as s, s.begin():  # deleting a model cascades
        s.execute(text("DELETE FROM models"))
    with store.session() as s:
        assert s.query(ImageRow).count() == 0 and s.query(ClassRow).count() == 0


def test_defaults_a_new_row_gets(store):
    before = utcnow()
    with store.session() as s, s.begin():
        s.add(_model())
    with store.session() as s:
        model = s.scalars(select(ModelRow)).one()
        assert model.backend == "taming"  # the server default of rows made before backends existed
        assert before - timedelta(seconds=1) <= model.created_at <= utcnow() + timedelta(seconds=1)
    with pytest.raises(IntegrityError), store.session() as s, s.begin():  # model names are unique
        s.add(_model())


def test_utcnow_is_naive_utc():
    now = utcnow()
    assert now.tzinfo is None
    assert abs(now - datetime.now(timezone.utc).replace(tzinfo=None)) < timedelta(seconds=5)
