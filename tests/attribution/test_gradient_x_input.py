"""attribution/gradient_x_input.py: E times the gradient of the target logit."""

from __future__ import annotations

import torch

from attribution_helpers import LinearExtractor, Quadratic, embeddings
from cortex_cli.attribution import SaliencySettings, token_saliency
from cortex_cli.attribution.gradient_x_input import gradient_x_input


def test_gradient_x_input_of_a_linear_extractor_is_weight_times_embedding():
    net, e = LinearExtractor(), embeddings()
    got = gradient_x_input(net, e, [0, 3])
    assert torch.allclose(got[0], net.weight_of(0) * e[0]) and torch.allclose(got[1], net.weight_of(3) * e[1])
    # its sum is the logit without the bias: the linear model's exact decomposition
    logits = net(e)
    assert torch.allclose(got.flatten(1).sum(1), torch.stack([logits[0, 0], logits[1, 3]]) - net.linear.bias[[0, 3]], atol=1e-5)


def test_gradient_x_input_of_a_quadratic_is_2_c_e_squared():
    e = embeddings(b=3)
    got = gradient_x_input(Quadratic(), e, [0, 1, 4])
    assert torch.allclose(got, torch.stack([2 * (c + 1) * e[i] ** 2 for i, c in enumerate([0, 1, 4])]))


def test_token_saliency_reduces_gradient_x_input_over_channels():
    net, e = LinearExtractor(), embeddings()
    attributions = net.weight_of(1) * e
    for reduce, expected in (("max-abs", attributions.abs().amax(1)), ("sum", attributions.sum(1)), ("mean", attributions.abs().mean(1))):
        tsv = token_saliency(net, e, [1, 1], [0, 1], SaliencySettings(method="gradient-x-input", reduce=reduce))
        assert torch.allclose(tsv, expected, atol=1e-6), reduce
