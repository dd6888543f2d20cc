"""Gradient x input (Shrikumar et al. 2016; Captum's InputXGradient): E * d f_Y(E) / dE, element-wise.

For a linear f_Y the channel sum of a cell's attributions is that cell's exact share of the logit.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .common import input_gradients

NAME = "gradient-x-input"
PARAMETERS: tuple[str, ...] = ()


def gradient_x_input(extractor: nn.Module, inputs: torch.Tensor, targets: Sequence[int], *, chunk: int | None = None,
                     precision: str = "fp32") -> torch.Tensor:
    """inputs * gradient of each input's target logit, (B, d, m, m) float32."""
    return inputs.detach().float() * input_gradients(extractor, inputs, targets, chunk=chunk, precision=precision)


def attribute(extractor: nn.Module, embeddings: torch.Tensor, targets: Sequence[int], keys: Sequence[int], settings,
              *, codebook: torch.Tensor | None = None) -> torch.Tensor:
    """The method's common signature (see `attribution.methods.attribute`)."""
    return gradient_x_input(extractor, embeddings, targets, chunk=settings.chunk, precision=settings.precision)
