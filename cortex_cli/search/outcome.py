"""What `cortex edit` and `cortex optimize` share around their optimisation: the aim, the picture's grid, the scores,
the prior's NLL, the PNGs and the fields their results end with.

Both move a region's tokens toward a subject (`subjects.Subject`: a class, or a named concept). The aim (`aim_at`) is
the score the extractor reads (`goal`: a class's logit, a concept's union score that `--objective` names, or the
own score of an extractor trained for the concept) and what `token_selection.optimize_tokens` maximises (a class id
for a class or a concept of one member, else the goal). P(target) is a class's probability, a concept's members'
sum, or a binary extractor's concept output. Realism (`prior_nll_pair`) is the prior's per-token NLL of the result and
of the grid it started from, conditioned on the subject's lead class (a concept: its first member).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from ..backends.base import from_pil
from ..core.errors import CortexError
from ..core.results import Result
from ..extractors.architectures import logits_of
from ..images.figures import edit_strip
from ..images.pngmeta import save_png
from ..judges.pixel_judges import Judge, judge_probabilities, target_probability
from ..models.registry import ModelInfo
from ..models.subjects import Subject, SubjectLike, index_target
from ..models.targets import BINARY, CLASS, Target
from .realism import prior_nll_or_none
from .token_selection import UNION_RULE

Box = tuple[tuple[int, int], tuple[int, int]]  # a region's ((row0, row1), (col0, col1)), outlined on a strip


@dataclass(frozen=True)
class Aim:
    """What a token search moves toward: the subject, the score read (`goal`), and what `optimize_tokens` maximises."""

    subject: Subject
    goal: Target
    objective: int | Target  # a class id (a class, or a concept of one member), else `goal`

    @property
    def class_ids(self) -> list[int]:
        return self.subject.class_ids

    @property
    def binary(self) -> bool:
        """An extractor trained for the concept: its two outputs are no classes."""
        return self.goal.rule == BINARY

    def p_target(self, probs: torch.Tensor) -> torch.Tensor | None:
        """P(target) per row of softmax probabilities (B x outputs): a class's, a concept's members' sum, a binary
        extractor's concept output; None when the target is beyond these outputs."""
        if self.binary:
            return probs[:, 1] if probs.shape[1] == 2 else None
        return target_probability(probs, self.class_ids)

    def judged(self, judges: Sequence[Judge], images: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        """Per judge: its probabilities of the decoded images (B x classes) and their P(target) (None: not all scored)."""
        return {name: (p, target_probability(p, self.class_ids)) for name, p in judge_probabilities(judges, images).items()}

    def concept_params(self) -> dict[str, Any]:
        """What a stored row's params add for a named concept: its name (nothing for a class)."""
        return {} if self.subject.is_class else {"concept": self.subject.name}

    def concept_meta(self) -> dict[str, Any]:
        """What a PNG's metadata adds for a named concept: its name and the target key (nothing for a class)."""
        return {} if self.subject.is_class else {"concept": self.subject.name, "target": self.goal.key}

    def outcome_fields(self) -> dict[str, Any]:
        """The `Outcome` fields that say what was aimed at."""
        return {"target": self.goal.key, "concept": self.subject.concept_name, "target_classes": list(self.class_ids)}


def aim_at(extractor_info: Any, about: SubjectLike, objective: str) -> Aim:
    """The aim of a search toward `about` under a registered extractor, with `objective` ('logit' or 'log-prob').

    Raises:
        CortexError: an extractor trained for another concept.
    """
    about = Subject.of(about)
    goal = index_target(extractor_info, about, UNION_RULE[objective])
    return Aim(about, goal, about.class_ids[0] if goal.is_class else goal)  # a class (or lone member): its logit


def check_members(about: Subject, model: ModelInfo, toward: str, outside: str) -> None:
    """Refuse a concept without members, or a member beyond the model's classes (`toward`, `outside`: the messages' words).

    Raises:
        CortexError: "concept 'x' has no member class to <toward>", "<outside> 7 is outside model 'm''s classes".
    """
    if not about.class_ids:
        raise CortexError(f"concept {about.name!r} has no member class to {toward}")
    for class_id in about.class_ids:
        if class_id < 0 or (model.n_classes and class_id >= model.n_classes):
            raise CortexError(f"{outside} {class_id} is outside model {model.name!r}'s classes")


def source_tokens(png, model: ModelInfo, png_path: Path, notices: list[str]) -> torch.Tensor | None:
    """Tokens from the PNG's metadata (checked against `model`), or None when it has none."""
    if png.tokens is None:
        return None
    if png.model_name is not None and png.model_name != model.name:
        raise CortexError(f"image {str(png_path)!r} was made by model {png.model_name!r}; pass --model {png.model_name}")
    if tuple(png.tokens.shape) != (model.grid, model.grid):
        raise CortexError(
            f"image {str(png_path)!r} carries a {png.tokens.shape[0]}x{png.tokens.shape[1]} token grid; "
            f"model {model.name!r} uses {model.grid}x{model.grid}"
        )
    if int(png.tokens.max()) >= model.n_embed:
        raise CortexError(f"image {str(png_path)!r} carries token ids up to {int(png.tokens.max())}; model {model.name!r} has {model.n_embed}")
    return png.tokens.long()


def encoded_picture(png: Any, path: Path, model: ModelInfo, vqgm: Any, notices: list[str]) -> torch.Tensor:
    """The VQGAN's tokens (m x m) of a picture without cortex tokens, centre-cropped and resized; a notice says so."""
    tokens = vqgm.encode_images(from_pil([png.image], model.image_size))[0].cpu()
    notices.append(f"{path.name} carries no cortex tokens; encoded it with the VQGAN at {model.image_size}x{model.image_size} px "
                   "(centre-cropped and resized)")
    return tokens


def extractor_logits(net: torch.nn.Module, vqgm: Any, grids: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """The extractor's float logits (B x outputs, on `device`) of token grids (B x m x m)."""
    with torch.no_grad():
        return logits_of(net(vqgm.embed(grids.to(device)))).float()


def prior_nll_pair(vqgm: Any, result: torch.Tensor, source: torch.Tensor | None, about: Subject) -> tuple[float | None, float | None]:
    """(prior NLL of the result grid, of the source grid or None without one), conditioned on `about`'s lead class;
    (None, None) when the backend has no `prior_nll` (`realism.prior_nll_or_none`)."""
    grids = [result] if source is None else [result, source]
    nll = prior_nll_or_none(vqgm, torch.stack(grids), [about.lead] * len(grids))
    if nll is None:
        return None, None
    return nll[0], (nll[1] if source is not None else None)


def strip_labels(steps: Sequence[int], total: int, start: str | None = None) -> list[str]:
    """A strip's captions: the start (when shown), each snapshot step, the final grid."""
    return ([start] if start else []) + [f"step {s}" for s in steps] + [f"final ({total})"]


def write_pngs(base: Path, model: ModelInfo, final: Image.Image, tokens: torch.Tensor, tiles: Sequence[Image.Image],
               labels: Sequence[str], box: Box | None, meta: dict[str, Any], *, final_meta: dict[str, Any] | None = None,
               written: list[Path] | None = None) -> tuple[Path, Path]:
    """Write `<base>.png` (the final picture with its tokens, so edits chain; `final_meta`, default `meta`) and
    `<base>-strip.png` (the tiles in a row, `box` outlined); returns both paths, each added to `written` once written."""
    written = [] if written is None else written
    output_path, strip_path = Path(f"{base}.png"), Path(f"{base}-strip.png")
    written.append(save_png(final, output_path, tokens, model.name, final_meta or meta, n_embed=model.n_embed))
    written.append(save_png(edit_strip(list(tiles), list(labels), box, model.grid), strip_path, None, model.name, meta))
    return output_path, strip_path


@dataclass(frozen=True)
class Outcome(Result):
    """The fields an edit's and a concept search's results end with (`EditResult`, `ConceptSearchResult`).

    A result lists `Outcome` first among its bases and its own fields' dataclass second: dataclasses take fields from
    the last base to the first, so these come after the result's own, in `to_dict()` and in the constructor.
    """

    params: dict = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    target: str = CLASS  # what was optimised: 'class', or a concept's target key (`targets.Target.key`)
    concept: str | None = None  # the concept's name when the target is a concept
    target_classes: list[int] = field(default_factory=list)  # the class, or the concept's members
    # per-token NLL under the model's prior of the result grid / of the grid it started from (an edit's source, an
    # optimisation's start image), conditioned on the target class (a concept: its first member's); None when the
    # backend has no `prior_nll` or there is no such grid (`realism.py`)
    prior_nll: float | None = None
    prior_nll_source: float | None = None


__all__ = ["Aim", "Box", "Outcome", "aim_at", "check_members", "encoded_picture", "extractor_logits", "prior_nll_pair",
           "source_tokens", "strip_labels", "write_pngs"]
