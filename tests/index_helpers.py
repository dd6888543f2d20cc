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


def store_random_images(store, model, cls, n: int, *, split: str = "train", seed: int = 0, vocab: int = 12) -> list[int]:
    """Insert n images with random tokens (from `vocab` ids) as generation would, token_counts included.

    The tiny random-init prior samples nearly constant grids; random grids give the queries
    something to rank. Rows use the model's default sampler label and seeds seed..seed+n-1, so
    `ensure_images` finds them instead of sampling.
    """
    from collections import Counter

    from cortex_cli.models import registry as model_registry
    from cortex_cli.images.generation import default_sampler
    from cortex_cli.store.schema import ImageRow, TokenCountRow
    from cortex_cli.images.token_blobs import pack_tokens

    label = default_sampler(model_registry.load_model(model)).label()
    gen = torch.Generator().manual_seed(1000 * cls.class_id + seed)
    grids = torch.randint(0, vocab, (n, model.grid, model.grid), generator=gen)
    with store.session() as s, s.begin():
        rows = [ImageRow(model_id=model.id, class_pk=cls.pk, split=split, seed=seed + i, sampler=label, tokens=pack_tokens(g, model.n_embed)) for i, g in enumerate(grids)]
        s.add_all(rows)
        s.flush()
        occ = Counter(int(t) for t in grids.flatten())
        present = Counter(int(t) for g in grids for t in set(g.flatten().tolist()))
        for t, c in occ.items():
            row = s.get(TokenCountRow, (model.id, cls.pk, split, t))
            if row is None:
                s.add(TokenCountRow(model_id=model.id, class_pk=cls.pk, split=split, token=t, count=c, n_images=present[t]))
            else:
                row.count += c
                row.n_images += present[t]
        return [r.id for r in rows]


def index_three_classes(store, model, settings) -> tuple[ToyInfo, list]:
    """Classes 0..2 with random images (class 0: 7 stored, 5 indexed; the others 5 and 5), indexed by the toy extractor."""
    from cortex_cli.models import registry as model_registry
    from cortex_cli.index.build import IndexJob, index_jobs

    info = register_toy(store, model)
    all_classes = model_registry.classes(store, model)
    for cls in all_classes[:3]:
        store_random_images(store, model, cls, 7 if cls.class_id == 0 else 5)
    index_jobs(store, model, info, [IndexJob(c) for c in all_classes[:3]], n_images=5, settings=settings, extractor=ToyExtractor())
    return info, all_classes
