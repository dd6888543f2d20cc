"""SmoothGrad (paper §3.3, eq. 4-6), cortex's default: the noise tunnel around the plain gradient.

    mean_grad = 1/N sum_l d f_Y(E + eps_l) / dE,   eps_l ~ N(0, sigma^2 I),  sigma = alpha (max E - min E)
    TSV(t_i)  = max_j |mean_grad(j, p_i)|

`f_Y` is the extractor's *logit* for the class Y being explained. sigma is per image and the noise of
image i depends on its identity key_i and the seed only (`noise_tunnel`: 'philox', drawn on the device,
or 'host', the older per-image CPU generators), which Captum's NoiseTunnel cannot do in one batch.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .gradient import gradient
from .noise_tunnel import PhiloxNoise, noise_tunnel, smoothgrad_noise

NAME = "smoothgrad"
PARAMETERS = ("samples", "alpha", "seed", "noise")


def smoothgrad(
    extractor: nn.Module,
    embeddings: torch.Tensor,
    targets: Sequence[int],
    noise: "torch.Tensor | PhiloxNoise",
    *,
    chunk: int | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Mean gradient of the target logit over given noisy copies (eq. 4).

    Args:
        extractor: f_Y, maps (B, d, m, m) to logits (B, classes); used as is (put it in eval mode).
        embeddings: E, (B, d, m, m).
        targets: the class index whose logit is differentiated, one per image.
        noise: the already-scaled noise eps, (B, N, d, m, m), or a `PhiloxNoise` that draws it chunk by chunk.
        chunk: noisy copies per forward/backward (copies of several images share a chunk); None: by device.
        precision: 'fp32' or 'bf16' (autocast of the forward pass).

    Returns:
        The mean gradient (B, d, m, m), float32.
    """
    return noise_tunnel(gradient, extractor, embeddings, targets, noise, chunk=chunk, precision=precision)


def attribute(extractor: nn.Module, embeddings: torch.Tensor, targets: Sequence[int], keys: Sequence[int], settings,
              *, codebook: torch.Tensor | None = None) -> torch.Tensor:
    """The method's common signature (see `attribution.methods.attribute`)."""
    noise = smoothgrad_noise(embeddings, keys, settings.seed, settings.samples, settings.alpha, settings.noise)
    return smoothgrad(extractor, embeddings, targets, noise, chunk=settings.chunk, precision=settings.precision)
