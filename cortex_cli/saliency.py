"""Token saliency (paper §3.3): the public names of `cortex_cli.attribution`, where each method lives in its own module.

`token_saliency` dispatches on `SaliencySettings.method` (default 'smoothgrad', the paper's SmoothGrad
with per-image sigma and identity-seeded noise); see `attribution/` for the methods.
"""

from __future__ import annotations

from .attribution import (
    BASELINES, METHODS, PRECISIONS, REDUCTIONS, SaliencySettings, attribute, default_chunk, noise_scale, noise_tunnel,
    prepare_extractor, reduce_channels, seeded_noise, token_saliency, top_positions,
)
from .attribution.smoothgrad import smoothgrad

__all__ = [
    "BASELINES", "METHODS", "PRECISIONS", "REDUCTIONS", "SaliencySettings", "attribute", "default_chunk", "noise_scale",
    "noise_tunnel", "prepare_extractor", "reduce_channels", "seeded_noise", "smoothgrad", "token_saliency", "top_positions",
]
