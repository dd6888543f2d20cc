"""What a command is about, resolved from a name or an id: a class, or a named concept (the one resolver).

A class is a concept of one member. `Subject` holds a name and its member classes, and for a named concept
(`concepts.ConceptInfo`: a union of classes, or a prompt) the concept as stored; commands read `.members`,
`.class_ids`, `.target(rule)`, `.is_class`, `.concept_name` instead of asking which kind they were given.

Resolution order of a name (`subject`): a class id (digits) is a class; else a class name or synonym; else a
concept name. Names are compared as class names are (case, '-', '_' and spacing ignored). A concept may not take a
class's name (refused when it is added), so no name means both. A list (`subjects`, `classes`) is an id or a name,
a sequence of them, 'a,b,c', '@file.txt' (one name a line, or comma-separated lines; blank lines and '#' comments
skipped) or 'all' (every class of the model); in `classes` a concept stands for its member classes.

Below this module: `registry.resolve_class` (a class by id or name, with "did you mean ...?") and
`concepts.find_concept` / `get_concept` (a named concept by name).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from . import registry as model_registry
from .classnames import normalize_name
from . import concepts
from .concepts import ConceptInfo, MemberClasses, find_concept
from .registry import ClassInfo, ModelInfo
from .targets import BINARY, DEFAULT_RULE, Target
from ..core.errors import CortexError
from ..store.database import Store

Names = Union[str, int, Sequence[Union[str, int]]]  # an id or a name, a list of them, 'a,b,c', '@file.txt' or 'all'


@dataclass(frozen=True)
class Subject(MemberClasses):
    """What a command is about: a class (a concept of one member) or a named concept, with its member classes
    (`class_ids`, `class_pks`)."""

    name: str
    members: tuple[ClassInfo, ...]
    concept: ConceptInfo | None = field(default=None, hash=False)  # the named concept as stored; None: a class

    @staticmethod
    def of(item: SubjectLike) -> Subject:
        """The subject of a class, of a named concept, or a subject itself."""
        if isinstance(item, Subject):
            return item
        if isinstance(item, ConceptInfo):
            return Subject(item.name, tuple(item.members), item)
        return Subject(item.name, (item,))

    @property
    def is_class(self) -> bool:
        return self.concept is None

    @property
    def kind(self) -> str:
        """'class' or 'concept' (as messages name it)."""
        return "class" if self.is_class else "concept"

    @property
    def lead(self) -> ClassInfo:
        """The class itself; a concept's first member (the class its stored rows keep and the prior is conditioned on)."""
        return self.members[0]

    @property
    def class_id(self) -> int | None:
        """The class's id; None for a named concept (results print it so)."""
        return self.lead.class_id if self.is_class else None

    @property
    def concept_name(self) -> str | None:
        """The named concept's name; None for a class."""
        return None if self.is_class else self.name

    @property
    def ref(self) -> str | int:
        """What resolves back to it (`subject`): the class's id, or the concept's name."""
        return self.lead.class_id if self.is_class else self.name

    def target(self, rule: str = DEFAULT_RULE) -> Target:
        """Its f_Y read off a class extractor: a class's logit ('class'), a concept's union score `rule`."""
        return Target() if self.concept is None else self.concept.target(rule)


SubjectLike = Union[Subject, ClassInfo, ConceptInfo]  # what `Subject.of` takes


def parse_names(spec: str) -> list[str]:
    """The class (or concept) ids or names in a `--classes` value, in order: 'a,b,c', or '@file.txt' (see the module docstring).

    Raises:
        CortexError: an unreadable file, or no name at all.
    """
    text = spec.strip()
    source = "--classes"
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CortexError(f"cannot read the class list {str(path)!r}: {exc.strerror if isinstance(exc, OSError) else exc}") from exc
        source = str(path)
    names = [part.strip() for line in text.splitlines() for part in line.split("#", 1)[0].split(",") if part.strip()]
    if not names:
        raise CortexError(f"{source} names no class; give ids or names, e.g. --classes 'goldfinch,black grouse' or --classes @birds.txt")
    return names


def subject(store: Store, model: ModelInfo, spec: str | int | SubjectLike) -> Subject:
    """A class (by id, name or synonym) or else a named concept (by name); a class, concept or subject as it is.

    Raises:
        CortexError: neither a class nor a concept (with the class resolver's "did you mean ...?").
    """
    if not isinstance(spec, (str, int)):
        return Subject.of(spec)
    try:
        return Subject.of(model_registry.resolve_class(store, model, spec))
    except CortexError:
        text = str(spec).strip()
        concept = None if isinstance(spec, int) or text.lstrip("-").isdigit() else find_concept(store, model, text)
        if concept is None:
            raise
        return Subject.of(concept)


def _names(spec: Names) -> list[str | int] | None:
    """The names a list spec holds, in order; None for 'all'."""
    if isinstance(spec, (list, tuple)):
        return list(spec)
    if isinstance(spec, int):
        return [spec]
    if not isinstance(spec, str):
        raise CortexError(f"classes must be a class id, a name, a list of them, 'all' or '@file.txt'; got {type(spec).__name__}")
    text = spec.strip()
    if text.lower() == "all":
        return None
    return list(parse_names(text)) if text.startswith("@") or "," in text else [text]


def subjects(store: Store, model: ModelInfo, spec: Names) -> list[Subject]:
    """The classes and named concepts `spec` names, each once, in the order given ('all': every class).

    Raises:
        CortexError: an unknown name (with "did you mean ...?"), an unreadable file, an empty list, a spec of another type.
    """
    names = _names(spec)
    if names is None:
        return [Subject.of(c) for c in model_registry.classes(store, model)]
    return list(dict.fromkeys(subject(store, model, name) for name in names))


def member_classes(items: Iterable[Subject]) -> list[ClassInfo]:
    """The classes of some subjects (a concept: its members), each once, in order."""
    found: dict[int, ClassInfo] = {}
    for item in items:
        for cls in item.members:
            found.setdefault(cls.class_id, cls)
    return list(found.values())


def classes(store: Store, model: ModelInfo, spec: Names) -> list[ClassInfo]:
    """The classes `spec` names, a concept standing for its member classes; each once, in order ('all': every class).

    Raises:
        CortexError: as `subjects`.
    """
    return member_classes(subjects(store, model, spec))


def concept_members(store: Store, model: ModelInfo, name: str, spec: Names) -> list[ClassInfo]:
    """The member classes of a new concept `name`: each item of `spec` ('a,b,c', '@file.txt', an id or a list) a class.

    Raises:
        CortexError: an empty spec, 'all', an unknown name, or a named concept among them (a concept's members are classes).
    """
    if isinstance(spec, str) and not spec.strip():
        raise CortexError(f"concept {name!r} needs at least one member class; give --classes 'a,b,c'")
    if isinstance(spec, str) and spec.strip().lower() == "all":
        raise CortexError("a concept of every class explains nothing; name its member classes")
    members = []
    for item in (parse_names(spec) if isinstance(spec, str) else [spec] if isinstance(spec, int) else spec):
        hit = subject(store, model, item)
        if not hit.is_class:
            raise CortexError(f"{hit.name!r} is a concept; a concept's members are classes (name its classes instead)")
        members.append(hit.lead)
    return members


def name_concept(store: Store, model: ModelInfo, name: str, *, classes: Names | None = None,
                 prompt: str | None = None) -> ConceptInfo:
    """`concepts.add_concept` of the classes `classes` names (`concept_members`), or of a `prompt` (text-conditional models).

    Raises:
        CortexError: as `concept_members` and `concepts.add_concept`.
    """
    members = concept_members(store, model, name, classes) if classes is not None else None
    text = prompt is not None and model_registry.text_conditional(model)
    return concepts.add_concept(store, model, name, classes=members, prompt=prompt, text_conditional=text)


def index_target(extractor: Any, item: SubjectLike, score: str = DEFAULT_RULE) -> Target:
    """What an extractor explains for a class (its logit) or a concept: an extractor trained for that concept (its config
    names it) its own score ('binary'); a class extractor the concept's union score `score`.

    Raises:
        CortexError: an extractor trained for another concept, or an unknown score.
    """
    about = Subject.of(item)
    if about.is_class:
        return Target()
    config = getattr(extractor, "config", None)
    own = getattr(config, "concept", None)
    if own is not None:
        if normalize_name(own) != normalize_name(about.name):
            raise CortexError(f"extractor {extractor.name!r} was trained for concept {own!r}, not {about.name!r}")
        trained = getattr(config, "concept_class_ids", None)
        if trained is not None and sorted(trained) != sorted(about.class_ids):
            raise CortexError(f"extractor {extractor.name!r} was trained for {about.name!r} with classes {sorted(trained)}, "
                              f"but the concept now has {sorted(about.class_ids)}; train it again (--restart)")
        return Target(BINARY)
    return about.target(score)


__all__ = ["Names", "Subject", "SubjectLike", "classes", "concept_members", "index_target", "member_classes", "name_concept", "parse_names",
           "subject", "subjects"]
