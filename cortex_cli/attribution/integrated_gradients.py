"""Integrated Gradients (Sundararajan et al. 2017) through Captum's `IntegratedGradients`, an optional extra.

    IG(E) = (E - E') * integral_0^1 d f_Y(E' + a (E - E')) / dE da

E' is the baseline embedding, stated in the run's parameters: 'zeros' (the zero embedding) or
'codebook-mean' (the mean codebook vector in every grid cell: the "average token" image). The integral
is Captum's default Gauss-Legendre rule with `steps` points. Completeness: the channel-and-cell sum of
the attributions is f_Y(E) - f_Y(E'), exactly for a linear f_Y.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..core.errors import CortexError
from .common import autocast, default_chunk, target_tensor

NAME = "integrated-gradients"
PARAMETERS = ("steps", "baseline")
BASELINES = ("zeros", "codebook-mean")
INSTALL = "pip install 'cortex-cli[attribution]'"


def baseline_embedding(embeddings: torch.Tensor, baseline: str, codebook: torch.Tensor | None = None) -> torch.Tensor:
    """The baseline E' (B, d, m, m) for `baseline` ('zeros' or 'codebook-mean', which needs the codebook K x d)."""
    if baseline == "zeros":
        return torch.zeros_like(embeddings, dtype=torch.float32)
    if baseline == "codebook-mean":
        if codebook is None:
            raise CortexError("baseline 'codebook-mean' needs the model's codebook; pass codebook= or use --baseline zeros")
        mean = codebook.detach().float().mean(dim=0).to(embeddings.device)
        if mean.numel() != embeddings.shape[1]:
            raise CortexError(f"codebook width {mean.numel()} does not match the embeddings' {embeddings.shape[1]} channels")
        return mean.view(1, -1, 1, 1).expand(embeddings.shape).contiguous()
    raise CortexError(f"unknown baseline {baseline!r}; use one of {', '.join(BASELINES)}")


def integrated_gradients(
    extractor: nn.Module,
    inputs: torch.Tensor,
    targets: Sequence[int],
    *,
    baselines: torch.Tensor | None = None,
    steps: int = 50,
    chunk: int | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Captum's Integrated Gradients of each input's target logit, (B, d, m, m) float32.

    Args:
        extractor: f_Y, maps (B, d, m, m) to logits.
        inputs: E, (B, d, m, m).
        targets: the class explained, one per input.
        baselines: E' of the inputs' shape; None: zeros.
        steps: Gauss-Legendre points of the path integral.
        chunk: scaled inputs per forward/backward pass (Captum's internal_batch_size); None: by device.
        precision: 'fp32' or 'bf16' (autocast of the forward pass).
    """
    try:
        from captum.attr import IntegratedGradients  # optional extra: captum
    except ImportError as exc:  # an optional extra: the other methods work without it
        raise CortexError(f"--method integrated-gradients needs Captum; {INSTALL}") from exc
    device = inputs.device
    x = inputs.detach().float()
    target = target_tensor(targets, x.shape[0], device)
    base = torch.zeros_like(x) if baselines is None else baselines.detach().float().to(device)

    def forward(e: torch.Tensor) -> torch.Tensor:
        with autocast(device, precision):
            return extractor(e).float()

    with torch.enable_grad():
        attributions = IntegratedGradients(forward).attribute(
            x, baselines=base, target=target, n_steps=steps, internal_batch_size=chunk or default_chunk(device),
        )
    return attributions.detach().float()


def attribute(extractor: nn.Module, embeddings: torch.Tensor, targets: Sequence[int], keys: Sequence[int], settings,
              *, codebook: torch.Tensor | None = None) -> torch.Tensor:
    """The method's common signature (see `attribution.methods.attribute`)."""
    return integrated_gradients(extractor, embeddings, targets, baselines=baseline_embedding(embeddings, settings.baseline, codebook),
                                steps=settings.steps, chunk=settings.chunk, precision=settings.precision)
