"""attribution/smoothgrad.py and noise_tunnel.py: SmoothGrad is the noise tunnel around the plain gradient."""

from __future__ import annotations

import torch

from attribution_helpers import LinearExtractor, Quadratic, SmallCNN, embeddings, freeze
from cortex_cli.attribution import SaliencySettings, noise_scale, noise_tunnel, reduce_channels, scaled_noise, seeded_noise, token_saliency
from cortex_cli.attribution.gradient import gradient
from cortex_cli.attribution.gradient_x_input import gradient_x_input
from cortex_cli.attribution.smoothgrad import smoothgrad


def test_smoothgrad_of_a_linear_extractor_is_its_weight_whatever_the_noise():
    net, e = LinearExtractor(), embeddings()
    noise = scaled_noise(e, [5, 6], seed=0, samples=7, alpha=0.5)
    got = smoothgrad(net, e, [2, 3], noise)
    assert torch.allclose(got[0], net.weight_of(2), atol=1e-6) and torch.allclose(got[1], net.weight_of(3), atol=1e-6)


def test_smoothgrad_of_a_quadratic_is_the_gradient_at_the_mean_noisy_input():
    e = embeddings(b=2)
    noise = scaled_noise(e, [1, 2], seed=4, samples=6, alpha=0.3)
    expected = torch.stack([2 * (c + 1) * (e[i] + noise[i].mean(0)) for i, c in enumerate([1, 2])])
    assert torch.allclose(smoothgrad(Quadratic(), e, [1, 2], noise), expected, atol=1e-5)


def test_noise_tunnel_wraps_any_base_method():
    e = embeddings(b=2)
    noise = scaled_noise(e, [1, 2], seed=0, samples=4, alpha=0.2)
    got = noise_tunnel(gradient_x_input, Quadratic(), e, [0, 0], noise, chunk=3)
    noisy = e.unsqueeze(1) + noise
    assert torch.allclose(got, (2 * noisy ** 2).mean(1), atol=1e-5)
    assert torch.equal(noise_tunnel(gradient, Quadratic(), e, [0, 0], noise), smoothgrad(Quadratic(), e, [0, 0], noise))


def test_smoothgrad_is_the_default_method_and_its_noise_is_keyed_by_image():
    net, e = Quadratic(), embeddings(b=3)
    assert SaliencySettings().method == "smoothgrad"
    together = token_saliency(net, e, [0, 1, 2], [10, 11, 12])
    alone = token_saliency(net, e[1:2], [1], [11], SaliencySettings())
    assert torch.equal(together[1:2], alone)
    assert not torch.equal(token_saliency(net, e[1:2], [1], [99]), alone)  # another key, other noise


def test_smoothgrad_matches_per_sample_loop():
    """The batched mean gradient equals a hand loop of autograd over every noisy copy."""
    ext = freeze(SmallCNN(d=4))
    e = torch.randn(3, 4, 6, 6)
    settings = SaliencySettings(samples=4, alpha=0.2, chunk=5)
    sigma = noise_scale(e, settings.alpha)
    noise = seeded_noise(e.shape[1:], [7, 8, 9], settings.seed, settings.samples) * sigma.view(-1, 1, 1, 1, 1)
    got = smoothgrad(ext, e, [0, 2, 3], noise, chunk=settings.chunk)
    for i, t in enumerate([0, 2, 3]):
        acc = torch.zeros_like(e[i])
        for l in range(settings.samples):
            x = (e[i] + noise[i, l]).unsqueeze(0).requires_grad_(True)
            (g,) = torch.autograd.grad(ext(x)[0, t], x)
            acc += g[0]
        torch.testing.assert_close(got[i], acc / settings.samples, rtol=1e-4, atol=1e-6)
    assert torch.allclose(reduce_channels(got), got.abs().amax(1))
