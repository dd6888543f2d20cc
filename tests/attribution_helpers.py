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


class OnePosition(nn.Module):
    """Looks only at grid position (r, c), non-linearly."""

    def __init__(self, d: int, r: int, c: int, classes: int = 3):
        super().__init__()
        self.r, self.c = r, c
        self.head = nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, classes))
        torch.manual_seed(1)
        for p in self.head.parameters():
            nn.init.normal_(p)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.head(e[:, :, self.r, self.c])


class SmallCNN(nn.Module):
    """A conv net with BatchNorm and pooling: no closed form, but a real extractor's shape."""

    def __init__(self, d: int, classes: int = 4):
        super().__init__()
        torch.manual_seed(2)
        self.net = nn.Sequential(
            nn.Conv2d(d, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(12, 12, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(48, classes),
        )
        self.eval()

    def forward(self, e):
        return self.net(e)


def freeze(m: nn.Module) -> nn.Module:
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m
