"""Stored concepts: members in the order given, one name per model, and cascades from their model and classes."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from cortex_cli.core.errors import CortexError
from cortex_cli.store import concepts as concept_store
from cortex_cli.store.schema import ClassRow, ConceptMemberRow, ModelRow

pytestmark = pytest.mark.both_backends


def _model(store, name: str = "m", classes: int = 3) -> tuple[int, list[int]]:
    with store.session() as s, s.begin():
        model = ModelRow(name=name, config_path="c", ckpt_path="k", config_hash="0" * 64, n_embed=4, embed_dim=2, grid=2,
                         image_size=8, labels="")
        s.add(model)
        s.flush()
        rows = [ClassRow(model_id=model.id, class_id=i, name=f"c{i}", synonyms="") for i in range(classes)]
        s.add_all(rows)
        s.flush()
        return model.id, [r.id for r in rows]


def test_members_keep_their_order_and_names_are_unique_per_model(store):
    model_id, pks = _model(store)
    other_id, _ = _model(store, "n")
    made = concept_store.insert_concept(store, model_id, "zig", "classes", [pks[2], pks[0]])
    assert (made.name, made.kind, made.member_pks) == ("zig", "classes", (pks[2], pks[0]))
    concept_store.insert_concept(store, model_id, "abc", "classes", [pks[1]])
    concept_store.insert_concept(store, other_id, "zig", "classes", [])  # another model may use the name
    assert [c.name for c in concept_store.model_concepts(store, model_id)] == ["abc", "zig"]
    with pytest.raises(CortexError, match="a concept named 'zig' already exists"):
        concept_store.insert_concept(store, model_id, "zig", "classes", [pks[1]])
    assert [c.member_pks for c in concept_store.model_concepts(store, model_id)] == [(pks[1],), (pks[2], pks[0])]


def test_a_prompt_concept_gets_the_next_class_id_and_takes_it_along_when_deleted(store):
    model_id, pks = _model(store)
    made = concept_store.insert_concept(store, model_id, "doc", "prompt", [], prompt="a doctor", new_class=("a doctor", "a doctor"))
    with store.session() as s:
        own = s.scalar(select(ClassRow).where(ClassRow.id == made.member_pks[0]))
        assert (own.class_id, own.name, own.prompt) == (3, "a doctor", "a doctor")
    concept_store.delete_concept(store, made.pk, made.member_pks[0])
    with store.session() as s:
        assert s.scalar(select(ClassRow).where(ClassRow.id == made.member_pks[0])) is None
        assert s.scalars(select(ConceptMemberRow)).all() == []


def test_a_member_goes_with_its_class_and_a_concept_with_its_model(store):
    model_id, pks = _model(store)
    concept_store.insert_concept(store, model_id, "both", "classes", pks[:2])
    with store.session() as s, s.begin():
        s.execute(delete(ClassRow).where(ClassRow.id == pks[0]))
    assert concept_store.model_concepts(store, model_id)[0].member_pks == (pks[1],)
    with store.session() as s, s.begin():
        s.execute(delete(ModelRow).where(ModelRow.id == model_id))
    assert concept_store.model_concepts(store, model_id) == []
