"""Named concepts beyond single classes (paper §3.1): a union of a model's classes, or a prompt.

`cortex concepts add red --classes "red-capped bird,red mushroom,red sailboat,house"` names an
attribute by the classes that carry it; `--prompt TEXT` (text-conditional backends) adds a class
sampled from TEXT verbatim and names it. A concept name then works wherever a class name does:
`subjects.py` resolves a name to a class or a concept. Names are compared as class names are (case, '-',
'_' and spacing ignored); a concept may not take a class's name (refused here when it is added).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from . import registry as model_registry
from .classnames import normalize_name
from ..core.errors import CortexError
from .registry import ClassInfo, ModelInfo
from ..core.results import Result
from ..store import concepts as concept_store
from ..store.database import Store
from .targets import DEFAULT_RULE, Target, union_target

KINDS = ("classes", "prompt")


class MemberClasses:
    """What has member classes (`members`: a named concept, `subjects.Subject`) reads their ids and rows so."""

    members: Sequence[ClassInfo]

    @property
    def class_ids(self) -> list[int]:
        return [c.class_id for c in self.members]

    @property
    def class_pks(self) -> list[int]:
        return [c.pk for c in self.members]


@dataclass(frozen=True)
class ConceptInfo(MemberClasses, Result):
    """A named concept of a model: its kind ('classes' or 'prompt'), its member classes, and a prompt's text."""

    pk: int
    model: str
    name: str
    kind: str
    members: list[ClassInfo] = field(default_factory=list)
    prompt: str = ""

    def target(self, rule: str = DEFAULT_RULE) -> Target:
        """The concept's f_Y read off the class extractor (`targets.union_target`)."""
        return union_target(self.class_ids, rule)

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per member class."""
        return [{"concept": self.name, "class_id": c.class_id, "member": c.name} for c in self.members]


def _info(model: ModelInfo, stored: concept_store.StoredConcept, by_pk: dict[int, ClassInfo]) -> ConceptInfo:
    return ConceptInfo(stored.pk, model.name, stored.name, stored.kind, [by_pk[pk] for pk in stored.member_pks], stored.prompt)


def list_concepts(store: Store, model: ModelInfo) -> list[ConceptInfo]:
    """Every concept of a model, by name."""
    by_pk = {c.pk: c for c in model_registry.classes(store, model)}
    return [_info(model, s, by_pk) for s in concept_store.model_concepts(store, model.id)]


def find_concept(store: Store, model: ModelInfo, name: str) -> ConceptInfo | None:
    """The concept of that name (compared as class names are), or None."""
    wanted = normalize_name(str(name))
    return next((c for c in list_concepts(store, model) if normalize_name(c.name) == wanted), None)


def get_concept(store: Store, model: ModelInfo, name: str) -> ConceptInfo:
    """A concept by name; CortexError naming the model's concepts if there is none."""
    found = find_concept(store, model, name)
    if found is None:
        known = ", ".join(repr(c.name) for c in list_concepts(store, model)) or "none yet"
        raise CortexError(f"model {model.name!r} has no concept {name!r} (concepts: {known}); add it with `cortex concepts add`")
    return found


def _class_named(store: Store, model: ModelInfo, name: str) -> ClassInfo | None:
    wanted = normalize_name(name)
    return next((c for c in model_registry.classes(store, model) if wanted in (normalize_name(n) for n in (c.name, *c.synonyms))), None)


def _check_name(store: Store, model: ModelInfo, name: str) -> str:
    text = " ".join(str(name).split())
    if not text:
        raise CortexError("a concept needs a name, e.g. `cortex concepts add red --classes 'red mushroom,house'`")
    if text.lstrip("-").isdigit():
        raise CortexError(f"concept name {text!r} is a number, which names a class id; choose a word")
    if "," in text or text.startswith("@") or text.lower() == "all":
        raise CortexError(f"concept name {text!r} cannot contain ',' or start with '@' or be 'all' (they mean lists of classes)")
    clash = _class_named(store, model, text)
    if clash is not None:
        raise CortexError(f"{text!r} is already a class of model {model.name!r} ({clash.class_id} {clash.name!r}); "
                          "a concept needs a name of its own")
    if find_concept(store, model, text) is not None:
        raise CortexError(f"a concept named {text!r} already exists; remove it first (`cortex concepts remove {text!r}`)")
    return text


def add_concept(store: Store, model: ModelInfo, name: str, *, classes: Sequence[ClassInfo] | None = None,
                prompt: str | None = None, text_conditional: bool = False) -> ConceptInfo:
    """Store a concept: the union of `classes`, or (text-conditional models) a class sampled from `prompt`.

    Raises:
        CortexError: a name that is a class or a concept already, neither or both of classes and prompt, no
            member, a member given twice, a prompt on a class-conditional model or a prompt that is a class already.
    """
    text = _check_name(store, model, name)
    if (classes is None) == (prompt is None):
        raise CortexError("give the concept's classes (--classes 'a,b,c') or, for a text-conditional model, its --prompt")
    if classes is not None:
        members = list(classes)
        if not members:
            raise CortexError(f"concept {text!r} needs at least one member class")
        if len({c.pk for c in members}) != len(members):
            raise CortexError(f"concept {text!r} names a class twice; list each member once")
        stored = concept_store.insert_concept(store, model.id, text, "classes", [c.pk for c in members])
    else:
        body = " ".join(str(prompt).split())
        if not body:
            raise CortexError("--prompt is empty; give the text to sample the concept's images from")
        if not text_conditional:
            raise CortexError(f"model {model.name!r} is class-conditional: it cannot sample a prompt; "
                              "use --classes, or a text-conditional model (janus)")
        clash = _class_named(store, model, body)
        if clash is not None:
            raise CortexError(f"the prompt {body!r} is already class {clash.class_id} of model {model.name!r}; "
                              f"name that class instead: --classes {clash.class_id}")
        stored = concept_store.insert_concept(store, model.id, text, "prompt", [], prompt=body, new_class=(body, body))
    by_pk = {c.pk: c for c in model_registry.classes(store, model)}
    return _info(model, stored, by_pk)


def remove_concept(store: Store, model: ModelInfo, name: str) -> ConceptInfo:
    """Delete a concept (a prompt concept's class goes with it, with its images and index rows); returns what was removed."""
    concept = get_concept(store, model, name)
    own_class = concept.members[0].pk if concept.kind == "prompt" and concept.members else None
    concept_store.delete_concept(store, concept.pk, own_class)
    return concept


__all__ = ["ConceptInfo", "KINDS", "MemberClasses", "add_concept", "find_concept", "get_concept", "list_concepts", "remove_concept"]
