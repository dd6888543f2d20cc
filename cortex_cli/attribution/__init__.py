"""Attribution methods, one module each (the Captum way): smoothgrad (the default), gradient,
gradient-x-input, integrated-gradients (Captum's, optional); noise tunnelling is a wrapper.

`token_saliency` dispatches on `SaliencySettings.method`; `METHODS` maps a method's name to its module
(`gradient`, `gradient_x_input`, `smoothgrad`, `integrated_gradients`: each holds a function of its name
and `attribute`, the common signature).
"""

from . import gradient, gradient_x_input, integrated_gradients, smoothgrad
from .common import PRECISIONS, REDUCTIONS, default_chunk, input_gradients, prepare_extractor, reduce_channels, top_positions
from .integrated_gradients import BASELINES, baseline_embedding
from .methods import attribute, token_saliency
from .registry import METHODS, method_named
from .noise_tunnel import NOISES, PhiloxNoise, noise_scale, noise_tunnel, philox_noise, scaled_noise, seeded_noise, smoothgrad_noise
from .settings import SaliencySettings, default_precision, field_help, key_fields, saliency_settings

__all__ = [
    "BASELINES", "METHODS", "NOISES", "PRECISIONS", "PhiloxNoise", "REDUCTIONS", "SaliencySettings", "attribute", "baseline_embedding",
    "default_chunk", "default_precision", "field_help", "saliency_settings", "gradient", "gradient_x_input", "input_gradients", "integrated_gradients", "key_fields",
    "method_named", "noise_scale", "noise_tunnel", "philox_noise", "prepare_extractor", "reduce_channels", "scaled_noise",
    "seeded_noise", "smoothgrad", "smoothgrad_noise", "token_saliency", "top_positions",
]
