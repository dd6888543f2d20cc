"""Plain gradient (Simonyan et al. 2014; Captum's Saliency without the absolute value): d f_Y(E) / dE."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .common import input_gradients

NAME = "gradient"
PARAMETERS: tuple[str, ...] = ()  # settings fields beyond the shared ones (top_n, reduce, precision)


def gradient(extractor: nn.Module, inputs: torch.Tensor, targets: Sequence[int], *, chunk: int | None = None,
             precision: str = "fp32") -> torch.Tensor:
    """The gradient of each input's target logit with respect to the input, (B, d, m, m) float32."""
    return input_gradients(extractor, inputs, targets, chunk=chunk, precision=precision)


def attribute(extractor: nn.Module, embeddings: torch.Tensor, targets: Sequence[int], keys: Sequence[int], settings,
              *, codebook: torch.Tensor | None = None) -> torch.Tensor:
    """The method's common signature (see `attribution.methods.attribute`)."""
    return gradient(extractor, embeddings, targets, chunk=settings.chunk, precision=settings.precision)
