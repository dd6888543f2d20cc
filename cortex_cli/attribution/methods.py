"""`attribute` and `token_saliency`: settings -> the named method -> TSV maps.

Every method module has NAME, PARAMETERS (the settings fields it reads besides top_n, reduce,
precision and chunk) and one signature:

    attribute(extractor, embeddings (B, d, m, m), targets, keys, settings, *, codebook=None) -> (B, d, m, m)

To add a method: a module beside these with that signature, and a line in `registry.METHODS`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..extractors.subsets import require_classes
from .common import prepare_extractor, reduce_channels
from .registry import method_named
from .settings import SaliencySettings


def attribute(
    extractor: nn.Module,
    embeddings: torch.Tensor,
    targets: Sequence[int],
    keys: Sequence[int],
    settings: "SaliencySettings",
    *,
    codebook: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-channel attributions (B, d, m, m) of `settings.method`, before the channel reduction.

    Args:
        extractor: f_Y, run as `prepare_extractor(extractor)`.
        embeddings: token-based embeddings E, (B, d, m, m).
        targets: per image, the class whose logit is explained.
        keys: per image, a stable id (e.g. the image id) that seeds its noise with `settings.seed`.
        settings: the method and its parameters.
        codebook: the model's codebook (K x d), for integrated-gradients' 'codebook-mean' baseline.
    """
    settings = settings.validate()
    if embeddings.dim() != 4:
        raise ValueError(f"embeddings must be (B, d, m, m), got {tuple(embeddings.shape)}")
    if len(keys) != embeddings.shape[0] or len(targets) != embeddings.shape[0]:
        raise ValueError("one target and one key per image")
    require_classes(extractor, targets)  # a subset extractor's other classes have a constant logit: no gradient
    return method_named(settings.method).attribute(prepare_extractor(extractor), embeddings, targets, keys, settings, codebook=codebook)


def token_saliency(
    extractor: nn.Module,
    embeddings: torch.Tensor,
    targets: Sequence[int],
    keys: Sequence[int],
    settings: "SaliencySettings | None" = None,
    *,
    codebook: torch.Tensor | None = None,
) -> torch.Tensor:
    """Token Saliency Value maps of a batch of embeddings, by `settings.method` (default smoothgrad).

    Args:
        extractor: the information extractor f_Y; run as `prepare_extractor(extractor)` (prepare it once
            yourself when calling this per batch).
        embeddings: token-based embeddings E, (B, d, m, m).
        targets: per image, the class whose logit is explained.
        keys: per image, a stable id (e.g. the image id) that seeds its noise with `settings.seed`.
        settings: method, its parameters, reduction, precision, chunk.
        codebook: the model's codebook (K x d), for integrated-gradients' 'codebook-mean' baseline.

    Returns:
        TSV maps (B, m, m), float32 on the embeddings' device.
    """
    if settings is None:
        settings = SaliencySettings()
    return reduce_channels(attribute(extractor, embeddings, targets, keys, settings, codebook=codebook), settings.reduce)
