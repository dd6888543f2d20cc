"""Named concepts of a model: rows of `concepts` and `concept_members` (migration 0012)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from ..core.errors import CortexError
from .database import Store
from .schema import ClassRow, ConceptMemberRow, ConceptRow, utcnow


@dataclass(frozen=True)
class StoredConcept:
    """A concept as stored: its row and its members' class row ids, in the order given."""

    pk: int
    model_id: int
    name: str
    kind: str  # 'classes' | 'prompt'
    prompt: str
    member_pks: tuple[int, ...]


def _stored(s, row: ConceptRow) -> StoredConcept:
    members = s.scalars(select(ConceptMemberRow.class_pk).where(ConceptMemberRow.concept_id == row.id)
                        .order_by(ConceptMemberRow.position)).all()
    return StoredConcept(row.id, row.model_id, row.name, row.kind, row.prompt, tuple(int(m) for m in members))


def model_concepts(store: Store, model_id: int) -> list[StoredConcept]:
    """Every concept of a model, by name."""
    with store.session() as s:
        return [_stored(s, r) for r in s.scalars(select(ConceptRow).where(ConceptRow.model_id == model_id).order_by(ConceptRow.name))]


def insert_concept(store: Store, model_id: int, name: str, kind: str, member_pks: Sequence[int], prompt: str = "",
                   new_class: tuple[str, str] | None = None) -> StoredConcept:
    """Store a concept and its members in one transaction; CortexError if the model has a concept of that name.

    `new_class` (name, prompt): first add a class of that name and prompt under the next free class id (a prompt
    concept's class), which becomes the concept's one member.
    """
    with store.session() as s, s.begin():
        members = list(member_pks)
        if new_class is not None:
            next_id = (s.scalar(select(func.max(ClassRow.class_id)).where(ClassRow.model_id == model_id)) or -1) + 1
            cls = ClassRow(model_id=model_id, class_id=int(next_id), name=new_class[0], synonyms="", prompt=new_class[1])
            s.add(cls)
            s.flush()
            members = [cls.id]
        row = ConceptRow(model_id=model_id, name=name, kind=kind, prompt=prompt, created_at=utcnow())
        s.add(row)
        try:
            s.flush()
        except IntegrityError:
            raise CortexError(f"a concept named {name!r} already exists; remove it first (`cortex concepts remove`)") from None
        s.add_all(ConceptMemberRow(concept_id=row.id, class_pk=int(pk), position=i) for i, pk in enumerate(members))
        s.flush()
        return _stored(s, row)


def delete_concept(store: Store, concept_pk: int, class_pk: int | None = None) -> None:
    """Delete a concept (its members go with it); with `class_pk`, also that class (a prompt concept's own class and its images)."""
    with store.session() as s, s.begin():
        s.execute(delete(ConceptMemberRow).where(ConceptMemberRow.concept_id == concept_pk))
        s.execute(delete(ConceptRow).where(ConceptRow.id == concept_pk))
        if class_pk is not None:
            s.execute(delete(ClassRow).where(ClassRow.id == class_pk))


__all__ = ["StoredConcept", "delete_concept", "insert_concept", "model_concepts"]
