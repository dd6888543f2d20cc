"""Realism of a token grid: its per-token negative log-likelihood under the model's own prior (issue 24.4).

A grid's prior NLL (`VQGM.prior_nll`) says how plausible the model itself finds it. Both backends have
one: taming's is the GPT conditioned on the class id; Janus's is its language model conditioned on the
class's prompt (the class name in its template, or a prompt concept's text) without classifier-free
guidance, a sampling heuristic that is no part of the model's likelihood. Edits and `cortex optimize`
results are compared with the class's *generated range*: the NLL of the class's generated train images
(seeds 0..n-1). A grid is flagged "adversarial" when its NLL lies above the generated 95th percentile
by more than `MARGIN` times the generated 5-95 spread, i.e. above `p95 + MARGIN * (p95 - p5)`
(`GeneratedRange.threshold`); otherwise it is "in range". Grids below the range are "in range": the
prior finds them likelier than its typical samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..backends.base import Concept
from ..core.errors import CortexError
from ..images.generation import ensure_images, image_tokens
from ..models.registry import ClassInfo, ModelInfo, load_model
from ..core.results import Result
from ..store.database import Store

MARGIN = 0.5  # how many 5-95 spreads above the generated 95th percentile a grid must lie to be adversarial
ADVERSARIAL = "adversarial"
IN_RANGE = "in range"
DEFAULT_N = 32  # generated images per class in a range


@dataclass(frozen=True)
class GeneratedRange(Result):
    """The prior NLL of a class's generated train images (seeds 0..n-1)."""

    class_id: int
    n: int
    mean: float
    p5: float
    p95: float
    maximum: float
    threshold: float  # p95 + MARGIN * (p95 - p5): above it a grid is flagged adversarial


def prior_nll_or_none(vqgm, grids: torch.Tensor, classes: Sequence[Concept]) -> list[float] | None:
    """The prior NLL of each grid (B x m x m) under its class (`ClassInfo`s: a text-conditional prior reads their
    names and prompts), or None when the backend lacks `prior_nll` (no such method, or it raises `CortexError`
    as a backend without the capability does)."""
    method = getattr(vqgm, "prior_nll", None)
    if method is None:
        return None
    try:
        return [float(v) for v in method(grids.reshape(len(classes), vqgm.grid, vqgm.grid), list(classes))]
    except CortexError:
        return None


def range_of(class_id: int, nll: Sequence[float]) -> GeneratedRange:
    """The range of a set of NLLs (linear-interpolated percentiles)."""
    if not len(nll):
        raise CortexError(f"no generated images of class {class_id} to measure a range from; generate some first")
    values = torch.tensor([float(v) for v in nll], dtype=torch.float64)
    p5, p95 = (float(torch.quantile(values, q)) for q in (0.05, 0.95))
    return GeneratedRange(class_id=class_id, n=len(values), mean=float(values.mean()), p5=p5, p95=p95,
                          maximum=float(values.max()), threshold=p95 + MARGIN * (p95 - p5))


def generated_range(store: Store, model: ModelInfo, cls: ClassInfo, n: int = DEFAULT_N, *,
                    device: torch.device | str = "cpu") -> GeneratedRange | None:
    """The prior NLL range of `cls`'s generated train images (seeds 0..n-1, generating missing ones);
    None when the model's backend has no `prior_nll`."""
    if n < 2:
        raise CortexError(f"a generated range needs at least 2 images, got n={n}")
    vqgm = load_model(model, device)
    if getattr(vqgm, "prior_nll", None) is None:
        return None
    ids = ensure_images(store, model, cls, "train", n, seed=0, device=device)
    nll = prior_nll_or_none(vqgm, image_tokens(store, model, ids), [cls] * len(ids))
    return None if nll is None else range_of(cls.class_id, nll)


def flag(nll: float, generated: GeneratedRange) -> str:
    """'adversarial' when `nll` lies above `generated.threshold` (see the module docstring), else 'in range'."""
    return ADVERSARIAL if nll > generated.threshold else IN_RANGE
