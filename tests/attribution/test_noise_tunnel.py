"""noise_tunnel: per-image identity-keyed noise streams, the same whatever the threads that draw them; sigma per image."""

from __future__ import annotations

import pytest
import torch

from cortex_cli.attribution.noise_tunnel import noise_scale, seeded_noise
from cortex_cli.seeding import generator_for


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_noise_is_each_images_own_stream_whatever_the_threads(threads):
    keys, shape = [7, 3, 7, 12, 5], (4, 2, 2)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        noise = seeded_noise(shape, keys, seed=1, samples=3)
    finally:
        torch.set_num_threads(before)
    expected = torch.stack([torch.randn(3, *shape, generator=generator_for("saliency", 1, k)) for k in keys])
    assert torch.equal(noise, expected)  # bit for bit what one torch.randn per image draws
    assert torch.equal(noise[0], noise[2]) and not torch.equal(noise[0], noise[1])  # keyed by identity, not position
    assert not torch.equal(seeded_noise(shape, keys, seed=2, samples=3), noise)


def test_sigma_is_per_image():
    e = torch.stack([torch.zeros(2, 3, 3), torch.zeros(2, 3, 3)])
    e[0, 0, 0, 0], e[1, 1, 2, 2] = 1.0, -4.0
    assert noise_scale(e, 0.5).tolist() == [0.5, 2.0]
