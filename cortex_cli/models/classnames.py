"""Class names of a model: ImageNet's 1000 (with WordNet synonyms), the mini world's, or a user file."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..core.errors import CortexError
from ..miniworld.world import CONCEPTS


@dataclass(frozen=True)
class ClassName:
    class_id: int
    name: str
    synonyms: tuple[str, ...] = ()

    def all_names(self) -> tuple[str, ...]:
        return (self.name, *self.synonyms)


def _parse_lines(lines: list[str], source: str) -> list[ClassName]:
    out = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) == 3:  # id, wnid, names
            raw_id, names = parts[0], parts[2]
        elif len(parts) == 2:  # id, names
            raw_id, names = parts
        else:
            raise CortexError(f"{source}:{lineno}: expected 'id<TAB>name[, synonym...]', got {line.strip()!r}")
        if not raw_id.strip().isdigit():
            raise CortexError(f"{source}:{lineno}: class id {raw_id!r} is not a non-negative integer")
        names_list = [n.strip() for n in names.split(",") if n.strip()]
        if not names_list:
            raise CortexError(f"{source}:{lineno}: class {raw_id} has no name")
        out.append(ClassName(int(raw_id), names_list[0], tuple(names_list[1:])))
    return out


def imagenet_classes() -> list[ClassName]:
    """The 1000 ILSVRC-2012 classes in label order (0 tench ... 999 toilet tissue)."""
    text = resources.files("cortex_cli").joinpath("data/imagenet_classes.tsv").read_text()
    return _parse_lines(text.splitlines(), "imagenet_classes.tsv")


def mini_classes() -> list[ClassName]:
    return [ClassName(i, c.name, c.synonyms) for i, c in enumerate(CONCEPTS)]


def load_labels(spec: str | None, n_classes: int) -> list[ClassName]:
    """Labels by spec: 'imagenet', 'mini', a TSV file, or None (numbers as names)."""
    if spec in (None, "", "none"):
        return [ClassName(i, f"class {i}") for i in range(n_classes)]
    if spec == "imagenet":
        labels = imagenet_classes()
    elif spec == "mini":
        labels = mini_classes()
    else:
        path = Path(spec)
        if not path.is_file():
            raise CortexError(f"labels {spec!r} is neither 'imagenet', 'mini' nor an existing file")
        labels = _parse_lines(path.read_text().splitlines(), str(path))
    if n_classes and len(labels) != n_classes:
        raise CortexError(f"labels {spec!r} list {len(labels)} classes but the model has {n_classes}")
    return labels


def normalize_name(text: str) -> str:
    """A name as names are compared: lower case, '-' and '_' as spaces, single spaces."""
    return " ".join(text.lower().replace("_", " ").replace("-", " ").split())


def resolve(spec: str | int, labels: list[ClassName]) -> ClassName:
    """A class by id or by (case-insensitive) name or synonym; unknown names get suggestions."""
    text = str(spec).strip()
    by_id = {c.class_id: c for c in labels}
    if text.lstrip("-").isdigit():
        cid = int(text)
        if cid in by_id:
            return by_id[cid]
        raise CortexError(f"class id {cid} does not exist; ids run from {min(by_id)} to {max(by_id)}")
    wanted = normalize_name(text)
    for c in labels:
        if wanted in (normalize_name(n) for n in c.all_names()):
            return c
    names = {normalize_name(n): c.name for c in labels for n in c.all_names()}
    close = difflib.get_close_matches(wanted, list(names), n=3, cutoff=0.6)
    if close:
        hint = " or ".join(repr(names[n]) for n in dict.fromkeys(close))
        raise CortexError(f"unknown class {text!r}; did you mean {hint}?")
    raise CortexError(f"unknown class {text!r}; `cortex models list` shows the classes of each model")
