"""attribution/integrated_gradients.py: Captum's Integrated Gradients with a stated baseline embedding."""

from __future__ import annotations

import pytest
import torch

from attribution_helpers import D, LinearExtractor, Quadratic, embeddings
from cortex_cli.attribution import SaliencySettings, baseline_embedding, token_saliency
from cortex_cli.attribution.integrated_gradients import integrated_gradients
from cortex_cli.core.errors import CortexError

pytest.importorskip("captum")


def test_zero_baseline_on_a_linear_extractor_is_weight_times_embedding():
    net, e = LinearExtractor(), embeddings()
    got = integrated_gradients(net, e, [1, 4], steps=8)
    assert torch.allclose(got[0], net.weight_of(1) * e[0], atol=1e-5) and torch.allclose(got[1], net.weight_of(4) * e[1], atol=1e-5)


def test_completeness_on_a_nonlinear_extractor_with_the_codebook_mean_baseline():
    e = embeddings(b=2)
    codebook = torch.randn(16, D, generator=torch.Generator().manual_seed(1))
    base = baseline_embedding(e, "codebook-mean", codebook)
    assert torch.allclose(base[1, :, 2, 3], codebook.mean(0))
    got = integrated_gradients(Quadratic(), e, [0, 2], baselines=base, steps=50)
    f = Quadratic()
    expected = torch.stack([f(e)[0, 0] - f(base)[0, 0], f(e)[1, 2] - f(base)[1, 2]])
    assert torch.allclose(got.flatten(1).sum(1), expected, rtol=1e-4)


def test_token_saliency_states_the_baseline_and_steps_in_the_run_key():
    net, e = LinearExtractor(), embeddings()
    settings = SaliencySettings(method="integrated-gradients", reduce="sum", steps=4)
    tsv = token_saliency(net, e, [0, 0], [1, 2], settings)
    assert torch.allclose(tsv, (net.weight_of(0) * e).sum(1), atol=1e-5)
    key = settings.run_key()
    assert (key["method"], key["steps"], key["baseline"]) == ("integrated-gradients", 4, "zeros")
    assert (key["samples"], key["alpha"], key["seed"]) == (1, 0.0, 0)  # no noise tunnel: its parameters are neutral
    with pytest.raises(CortexError, match="codebook"):
        token_saliency(net, e, [0, 0], [1, 2], SaliencySettings(method="integrated-gradients", baseline="codebook-mean"))
    with pytest.raises(CortexError, match="--ig-baseline must be one of zeros, codebook-mean"):
        SaliencySettings(method="integrated-gradients", baseline="ones").validate()
