"""Pick `cortex edit`'s defaults on the bundled mini model: judges' probabilities before/after.

Cases: test-split mini-world images of each paired concept (red-capped bird -> blue-capped bird, ...),
encoded with the mini VQGAN; the region is the bounding box of the distinctive part's token cells
(from the world's part mask). Every configuration runs `optimize_tokens` on every case; the script
prints the mean probability of the target and of the source class under the extractor and each judge,
before -> after. Needs the bundled mini model, judges and extractors.

    python benchmarks/tune_edit.py --images 2 --steps 300
    python benchmarks/tune_edit.py --config '{"method": "token", "objective": "logit"}'
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from cortex_cli.models import registry as model_registry
from cortex_cli.backends.base import from_pil
from cortex_cli.extractors.registry import ensure_bundled_extractors, get_extractor, load_extractor
from cortex_cli.judges.pixel_judges import judges_for
from cortex_cli.miniworld import world
from cortex_cli.search.token_selection import OptimizeSettings, optimize_tokens
from cortex_cli.store.database import open_store

DEFAULT_CONFIGS = [
    {"method": "token", "objective": "log-prob"},
    {"method": "token", "objective": "logit"},
    {"method": "token", "objective": "log-prob", "lr": 0.3},
    {"method": "token", "objective": "log-prob", "tau": 2.0},
    {"method": "token", "objective": "log-prob", "tau": 2.0, "tau_final": 0.5},
    {"method": "embedding", "objective": "log-prob"},
    {"method": "embedding", "objective": "logit"},
]


def part_cases(vqgm, model, n_images: int, grid: int) -> list[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """(source concept, target concept, tokens, region mask) for each paired concept and image."""
    cases = []
    cell = model.image_size // grid
    for src, concept in enumerate(world.CONCEPTS):
        if not concept.pair:
            continue
        for seed in range(n_images):
            sample = world.sample(src, seed, "test")
            tokens = vqgm.encode_images(from_pil([Image.fromarray(sample.image)], model.image_size))[0].cpu()
            cells = sample.part_mask.reshape(grid, cell, grid, cell).any(axis=(1, 3))
            rows, cols = np.nonzero(cells)
            mask = torch.zeros(grid, grid, dtype=torch.bool)
            mask[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1] = True
            cases.append((src, world.CONCEPT_INDEX[concept.pair], tokens, mask))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extractor", default="ce")
    parser.add_argument("--images", type=int, default=2, help="images per paired concept")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--config", action="append", help="JSON OptimizeSettings overrides (repeatable)")
    args = parser.parse_args()
    store = open_store(f"sqlite:///{tempfile.mkdtemp()}/tune.db")
    model_registry.ensure_bundled(store)
    ensure_bundled_extractors(store)
    model = model_registry.get_model(store, "mini")
    vqgm = model_registry.load_model(model)
    extractor = load_extractor(get_extractor(store, model, args.extractor))
    judges = judges_for(model)
    cases = part_cases(vqgm, model, args.images, model.grid)
    print(f"{len(cases)} cases, region sizes {[int(c[3].sum()) for c in cases]}, {args.steps} steps, extractor {args.extractor}")
    idx = torch.arange(len(cases))
    src = torch.tensor([c[0] for c in cases])
    tgt = torch.tensor([c[1] for c in cases])
    before = torch.stack([c[2] for c in cases])

    def scores(grids: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            out = {"extractor": torch.softmax(extractor(vqgm.embed(grids)), -1)}
        images = vqgm.decode_tokens(grids)
        out.update({j.name: j.probabilities(images) for j in judges})
        return out

    base = scores(before)
    for cfg in [json.loads(c) for c in args.config] if args.config else DEFAULT_CONFIGS:
        start = time.perf_counter()
        after = torch.stack([
            optimize_tokens(extractor, vqgm.codebook.detach(), tokens, mask, t, OptimizeSettings(steps=args.steps, **cfg)).tokens
            for _, t, tokens, mask in cases
        ])
        now = scores(after)
        parts = [f"{name}: tgt {base[name][idx, tgt].mean():.3f}->{now[name][idx, tgt].mean():.3f} "
                 f"src {base[name][idx, src].mean():.3f}->{now[name][idx, src].mean():.3f}" for name in base]
        print(f"{json.dumps(cfg)}  " + " | ".join(parts) + f"  ({time.perf_counter() - start:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
