"""Tiny networks with closed-form attributions, shared by the tests/attribution/ modules."""

from __future__ import annotations

import torch
from torch import nn

D, M, CLASSES = 3, 4, 5


class LinearExtractor(nn.Module):
    """logits = W . flatten(E) + b: the gradient of logit c is W[c] whatever the input."""

    def __init__(self, d: int = D, m: int = M, classes: int = CLASSES, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.linear = nn.Linear(d * m * m, classes)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(classes, d * m * m, generator=g))
            self.linear.bias.copy_(torch.randn(classes, generator=g))
        self.d, self.m = d, m

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.linear(e.flatten(1))

    def weight_of(self, c: int) -> torch.Tensor:
        """W[c] shaped like one embedding (d, m, m)."""
        return self.linear.weight[c].detach().view(self.d, self.m, self.m)


class Quadratic(nn.Module):
    """logit c = (c + 1) * sum(E^2): gradient 2 (c + 1) E, so methods that differ on it can be told apart."""

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        s = (e ** 2).flatten(1).sum(1, keepdim=True)
        return s * torch.arange(1, CLASSES + 1, dtype=e.dtype, device=e.device)


def embeddings(b: int = 2, seed: int = 3) -> torch.Tensor:
    return torch.randn(b, D, M, M, generator=torch.Generator().manual_seed(seed))
