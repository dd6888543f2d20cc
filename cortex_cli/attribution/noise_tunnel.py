"""Noise tunnelling (Captum's NoiseTunnel, 'smoothgrad' type): any base attribution averaged over noisy copies.

Unlike Captum's, the noise is per image: sigma_i = alpha (max E_i - min E_i), and image i's draws come
from a generator seeded by (seed, key_i), so an image's attribution does not depend on which images
share its batch, or in which order. Noisy copies of several images are attributed together, in chunks.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import torch
from torch import nn

from ..seeding import generator_for
from .common import Attribution, target_tensor


def noise_scale(embeddings: torch.Tensor, alpha: float) -> torch.Tensor:
    """sigma = alpha * (max(E_i) - min(E_i)) per image -> (B,)."""
    flat = embeddings.detach().reshape(embeddings.shape[0], -1)
    return alpha * (flat.amax(dim=1) - flat.amin(dim=1))


_POOLS: dict[int, ThreadPoolExecutor] = {}  # thread count -> a pool of that many, made on first use


def _pool(threads: int) -> ThreadPoolExecutor:
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cortex-noise")
    return _POOLS[threads]


def seeded_noise(shape: Sequence[int], keys: Sequence[int], seed: int, samples: int) -> torch.Tensor:
    """Standard-normal noise (B, N, *shape) on CPU; image i's from a generator seeded by (seed, keys[i]).

    Images are drawn on up to `torch.get_num_threads()` host threads at once (torch releases the GIL while
    it samples): the same generators, so the same numbers, in a fraction of the time. On a GPU this
    host-side draw is the likely bound of SmoothGrad (the README's H200 figures).
    """
    out = torch.empty(len(keys), samples, *shape)

    def draw(i: int) -> None:
        out[i].normal_(generator=generator_for("saliency", seed, int(keys[i])))  # what torch.randn draws

    threads = min(len(keys), torch.get_num_threads())
    if threads > 1:
        list(_pool(threads).map(draw, range(len(keys))))
    else:
        for i in range(len(keys)):
            draw(i)
    return out


def scaled_noise(embeddings: torch.Tensor, keys: Sequence[int], seed: int, samples: int, alpha: float) -> torch.Tensor:
    """Identity-seeded noise (B, N, d, m, m) on CPU, scaled by each image's sigma."""
    sigma = noise_scale(embeddings, alpha).cpu()
    return seeded_noise(embeddings.shape[1:], keys, seed, samples) * sigma.view(-1, 1, 1, 1, 1)


def noise_tunnel(
    base: Attribution,
    extractor: nn.Module,
    embeddings: torch.Tensor,
    targets: Sequence[int],
    noise: torch.Tensor,
    **kwargs: Any,
) -> torch.Tensor:
    """Mean of `base` over the given noisy copies E + eps of each image.

    Args:
        base: an attribution over a flat batch, `base(extractor, inputs, targets, **kwargs)` -> inputs' shape.
        extractor: f_Y, maps (B, d, m, m) to logits (B, classes).
        embeddings: E, (B, d, m, m).
        targets: the class whose logit is explained, one per image.
        noise: the already-scaled noise eps, (B, N, d, m, m).
        kwargs: passed to `base` (chunk, precision, ...).

    Returns:
        The mean attribution (B, d, m, m), float32.
    """
    b, n = noise.shape[:2]
    device = embeddings.device
    target = target_tensor(targets, b, device)
    # copy k of the flattened (B*N) stack belongs to image k // N
    noisy = (embeddings.detach().float().unsqueeze(1) + noise.to(device=device, dtype=torch.float32)).flatten(0, 1)
    attributions = base(extractor, noisy, target.repeat_interleave(n), **kwargs)
    return attributions.view(b, n, *embeddings.shape[1:]).mean(dim=1)
