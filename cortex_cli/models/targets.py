"""What a saliency run explains, f_Y: one class's logit, or a concept's score (paper §3.2).

The paper explains a class Y by the gradient of the extractor's logit for Y. A concept that is a
union of classes ("red" = the red objects' classes) has no logit of its own; read off the class
extractor, with no training, it has two natural scores:

- `logsumexp`: log sum_{c in Y} exp(z_c), the union's analogue of the class logit (for one
  member it *is* that class's logit);
- `log-prob`: log P(Y | E) = logsumexp_{c in Y} z_c - logsumexp_c z_c, the log of the summed
  softmax probability of the members. It saturates: on an image the extractor already calls Y with
  confidence, log P(Y | E) is ~0 whatever the tokens do, so its gradient is ~0 too.

`binary` is the score of an extractor trained for the concept alone (`cortex train-extractor
--concept`): the log-odds z_Y - z_notY of its two outputs. A target's `key` is stored with the run
(`saliency_runs.target`), so runs of different targets never mix; `class` keys every run before
concepts (each image's own class logit). Which union score is the default was measured on the mini
world's ground truth (docs/concepts.md, "Which f_Y finds an attribute").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..core.errors import CortexError
from ..extractors.architectures import logits_of

CLASS = "class"
UNION_RULES = ("logsumexp", "log-prob")
BINARY = "binary"
DEFAULT_RULE = "log-prob"


@dataclass(frozen=True)
class Target:
    """A saliency target: `rule` ('class', 'logsumexp', 'log-prob' or 'binary') and the member class ids of a union."""

    rule: str = CLASS
    class_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.rule not in (CLASS, BINARY, *UNION_RULES):
            raise CortexError(f"unknown concept score {self.rule!r}; choose one of {', '.join(UNION_RULES)}")
        if self.rule in UNION_RULES and not self.class_ids:
            raise CortexError("a concept score needs at least one member class")

    @property
    def key(self) -> str:
        """The run-key text: 'class', 'binary', or '<rule>:<sorted member ids>' (e.g. 'logsumexp:0,4,7,10')."""
        if self.rule in UNION_RULES:
            return f"{self.rule}:{','.join(str(c) for c in sorted(set(self.class_ids)))}"
        return self.rule

    @property
    def is_class(self) -> bool:
        return self.rule == CLASS

    def per_image(self, class_ids: Sequence[int]) -> list[int]:
        """The logit index each image's score is read at: its class for 'class', the wrapped score (0) otherwise."""
        return [int(c) for c in class_ids] if self.is_class else [0] * len(class_ids)

    def explained(self, extractor: nn.Module) -> nn.Module:
        """The module whose output the attribution differentiates: the extractor itself for 'class', else `ConceptScore`."""
        return extractor if self.is_class else ConceptScore(extractor, self.rule, self.class_ids)


def union_target(class_ids: Sequence[int], rule: str = DEFAULT_RULE) -> Target:
    """A concept's target read off the class extractor; one member is simply that class's logit ('class')."""
    if rule not in UNION_RULES:
        raise CortexError(f"--score must be one of {', '.join(UNION_RULES)}, got {rule!r}")
    ids = tuple(dict.fromkeys(int(c) for c in class_ids))
    return Target(CLASS) if len(ids) == 1 else Target(rule, ids)


class ConceptScore(nn.Module):
    """An extractor seen as a one-output model: the concept's score (see the module docstring), shape (B, 1)."""

    def __init__(self, extractor: nn.Module, rule: str, class_ids: Sequence[int] = ()):
        super().__init__()
        self.extractor = extractor
        self.rule = rule
        self.register_buffer("members", torch.tensor([int(c) for c in class_ids], dtype=torch.long), persistent=False)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        logits = logits_of(self.extractor(embedding))
        if self.rule == BINARY:
            if logits.shape[-1] != 2:
                raise CortexError(f"a binary concept score needs an extractor with 2 outputs, this one has {logits.shape[-1]}")
            return (logits[..., 1] - logits[..., 0]).unsqueeze(-1)
        if int(self.members.max()) >= logits.shape[-1]:
            raise CortexError(f"concept member class {int(self.members.max())} is beyond the extractor's {logits.shape[-1]} outputs")
        score = torch.logsumexp(logits.index_select(-1, self.members).float(), dim=-1)
        if self.rule == "log-prob":
            score = score - torch.logsumexp(logits.float(), dim=-1)
        return score.unsqueeze(-1).to(logits.dtype)


__all__ = ["BINARY", "CLASS", "ConceptScore", "DEFAULT_RULE", "Target", "UNION_RULES", "union_target"]
