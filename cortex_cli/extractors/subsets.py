"""Subset extractors (`train-extractor --classes`) seen through the model's class ids; concept extractors.

A subset extractor's head has one output per class of its subset; `ClassSpace` scatters them into
the model's whole class-id space (the other classes get the dtype's lowest finite value, so softmax
gives them 0 and log-softmax stays finite), and everything downstream (saliency, index, edits,
evaluations) keeps using the model's class ids. `require_classes` is the one check that a target
class is one the extractor knows.

A concept extractor (`train-extractor --concept`) has two outputs (not-Y, Y) and explains its concept
only, through the 'binary' target (`targets.ConceptScore`). `ConceptHead` marks the loaded network so
that `require_classes` refuses any class logit asked of it, instead of reading output 0 or 1 as a class.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from ..core.errors import CortexError


class ClassSpace(nn.Module):
    """A subset extractor whose logits are laid out over all `n_classes` class ids of the model."""

    def __init__(self, net: nn.Module, class_ids: Iterable[int], n_classes: int, name: str = ""):
        super().__init__()
        self.net = net
        self.name = name
        self.class_ids = [int(c) for c in class_ids]
        self.n_classes = int(n_classes)
        self.register_buffer("index", torch.tensor(self.class_ids, dtype=torch.long), persistent=False)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        sub = self.net(embedding)
        # the lowest finite value rather than -inf: exp() of it is 0, and log_softmax/entropy stay finite
        out = sub.new_full((*sub.shape[:-1], self.n_classes), torch.finfo(sub.dtype).min)
        return out.index_copy(-1, self.index, sub)


class ConceptHead(nn.Module):
    """A concept extractor as loaded: the network itself (2 outputs: not-`concept`, `concept`), with its identity."""

    def __init__(self, net: nn.Module, concept: str, class_ids: Iterable[int], name: str = ""):
        super().__init__()
        self.net = net
        self.name = name
        self.concept = str(concept)
        self.class_ids = [int(c) for c in class_ids]  # the concept's member classes (its positives) when trained

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.net(embedding)


def concept_of(extractor: Any) -> str | None:
    """The concept a concept extractor (a `ConceptHead` or an `ExtractorInfo`) was trained for; None for a class extractor."""
    if isinstance(extractor, ConceptHead):
        return extractor.concept
    return getattr(getattr(extractor, "config", None), "concept", None)


def covered_classes(extractor: Any) -> tuple[str, list[int]] | None:
    """(name, class ids) of a subset extractor (a `ClassSpace` or an `ExtractorInfo`); None for a full one."""
    if isinstance(extractor, ClassSpace):
        return extractor.name, extractor.class_ids
    config = getattr(extractor, "config", None)
    ids = getattr(config, "class_ids", None)
    return (extractor.name, list(ids)) if ids is not None else None


def require_classes(extractor: Any, class_ids: Iterable[int]) -> None:
    """Refuse target classes that a subset extractor was not trained on (no-op for a full extractor).

    Raises:
        CortexError: naming the extractor, how many classes it covers and how to see them; any class asked of a
            concept extractor (it answers for its concept only).
    """
    class_ids = list(class_ids)
    concept = concept_of(extractor)
    if concept is not None and class_ids:
        raise CortexError(
            f"extractor {getattr(extractor, 'name', '')!r} was trained for concept {concept!r} (2 outputs: not-{concept}, {concept}) "
            f"and explains that concept only (`cortex index --class {concept!r}`), not class {int(class_ids[0])}; pick another --extractor"
        )
    covered = covered_classes(extractor)
    if covered is None:
        return
    name, ids = covered
    missing = sorted({int(c) for c in class_ids} - set(ids))
    if missing:
        shown = ", ".join(map(str, ids[:12])) + (", ..." if len(ids) > 12 else "")
        raise CortexError(
            f"extractor {name!r} covers {len(ids)} classes (ids {shown}), not class {missing[0]}; pick one of them "
            f"(`cortex test-extractor` lists their names) or another --extractor"
        )


__all__ = ["ClassSpace", "ConceptHead", "concept_of", "covered_classes", "require_classes"]
