"""attribution/gradient.py: the plain gradient of the target logit."""

from __future__ import annotations

import torch

from attribution_helpers import LinearExtractor, Quadratic, embeddings
from cortex_cli.attribution import SaliencySettings, token_saliency
from cortex_cli.attribution.gradient import gradient


def test_gradient_of_a_linear_extractor_is_its_weight_row():
    net, e = LinearExtractor(), embeddings()
    got = gradient(net, e, [1, 4])
    assert torch.allclose(got[0], net.weight_of(1)) and torch.allclose(got[1], net.weight_of(4))


def test_gradient_of_a_quadratic_is_2_c_e_and_does_not_depend_on_the_chunk():
    e = embeddings(b=5)
    targets = [0, 1, 2, 3, 4]
    expected = torch.stack([2 * (c + 1) * e[i] for i, c in enumerate(targets)])
    assert torch.allclose(gradient(Quadratic(), e, targets), expected)
    assert torch.equal(gradient(Quadratic(), e, targets, chunk=2), gradient(Quadratic(), e, targets, chunk=64))


def test_token_saliency_with_gradient_is_the_reduced_weight_and_ignores_noise_settings():
    net, e = LinearExtractor(), embeddings()
    tsv = token_saliency(net, e, [2, 2], [7, 8], SaliencySettings(method="gradient", samples=3, alpha=5.0, seed=9))
    expected = net.weight_of(2).abs().amax(dim=0)
    assert torch.allclose(tsv[0], expected) and torch.allclose(tsv[1], expected)
    assert SaliencySettings(method="gradient", samples=3).run_key() == SaliencySettings(method="gradient").run_key()
