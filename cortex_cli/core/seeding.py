"""Seeds: one function seeds everything; per-item generators derive from (seed, key)."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def set_all_random_seeds(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) with one number."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any printable parts (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def generator_for(*parts: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator seeded by `derive_seed(*parts)` on `device`."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(*parts))
    return gen


def image_key(model: str, class_id: int, split: str, seed: int, sampler: str) -> int:
    """The stable random-stream key of a generated image: its identity, never its row id.

    (model name, class id, split, image seed, sampler) names an image in any database, so every
    stream keyed by it (saliency noise, random masking orders, edit noise) gives the same draws
    whatever else the store held when it was written.
    """
    return derive_seed("image", model, int(class_id), split, int(seed), sampler)
