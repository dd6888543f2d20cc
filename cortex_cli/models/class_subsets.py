"""Class subsets: `--classes "goldfinch,black grouse,11"` or `--classes @birds.txt` (one class per line); a concept's name stands for its classes."""

from __future__ import annotations

from pathlib import Path

from . import registry as model_registry
from .concepts import expand
from ..core.errors import CortexError
from .registry import ClassInfo, ModelInfo
from ..store.database import Store


def parse_class_list(spec: str) -> list[str]:
    """The class ids or names in a `--classes` value, in order.

    'a,b,c' splits on commas; '@file.txt' reads one class per line (or comma-separated lines;
    blank lines and '#' comments are skipped).

    Raises:
        CortexError: an unreadable file, or no class at all.
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


def resolve_classes(store: Store, model: ModelInfo, spec: str) -> list[ClassInfo]:
    """The classes of `model` named by a `--classes` value ('all': every class), each once, in the order given.

    A concept's name stands for its member classes (`concepts.expand`).

    Raises:
        CortexError: an unknown class or concept (with "did you mean ...?"), an unreadable file, an empty list.
    """
    if spec.strip().lower() == "all":
        return model_registry.classes(store, model)
    return expand(store, model, parse_class_list(spec))


def select_classes(store: Store, model: ModelInfo, class_spec: str | None, classes_spec: str | None) -> list[ClassInfo]:
    """The classes of a command that takes `--class C` (or 'all') or `--classes LIST`, exactly one of them.

    Raises:
        CortexError: neither or both given, or an unknown class.
    """
    if (class_spec is None) == (classes_spec is None):
        raise CortexError("give one of --class C (an id, a name or 'all') and --classes 'a,b,c' / --classes @file.txt")
    if classes_spec is not None:
        return resolve_classes(store, model, classes_spec)
    if class_spec.strip().lower() == "all":
        return model_registry.classes(store, model)
    return [model_registry.resolve_class(store, model, class_spec)]


__all__ = ["parse_class_list", "resolve_classes", "select_classes"]
