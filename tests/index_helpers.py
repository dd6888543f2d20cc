"""Shared helpers of the index/query/CLI tests: a toy extractor registered for the tiny model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cortex_cli.store.schema import ExtractorRow


class ToyExtractor(nn.Module):
    """A small conv net on E (B, d, m, m) -> logits; deterministic weights from `seed`."""

    def __init__(self, d: int = 16, classes: int = 4, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(d, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, classes),
        )
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.net(e)


@dataclass
class ToyInfo:
    """Duck-typed extractor registry entry (what indexing reads: id and name)."""

    id: int
    name: str
    ckpt_path: str = ""


def register_toy(store, model, name: str = "ce", tmp: Path | None = None) -> ToyInfo:
    """Insert an extractors row for the toy extractor (as the extractor registry would)."""
    with store.session() as s, s.begin():
        row = ExtractorRow(model_id=model.id, name=name, arch="ce", hparams=json.dumps({"toy": True}), ckpt_path="", ckpt_sha256="0" * 64)
        s.add(row)
        s.flush()
        return ToyInfo(row.id, name)
