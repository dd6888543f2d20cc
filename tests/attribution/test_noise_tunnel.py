"""noise_tunnel: per-image identity-keyed noise ('philox' on the device, 'host' generators on any threads); sigma per image.

A map depends on its image's key, the seed and the noise generator only: not on the batch, its order or the chunk size.
"""

from __future__ import annotations

import sys

import pytest
import torch

from attribution_helpers import SmallCNN, freeze
from cortex_cli.core import philox
from cortex_cli.attribution import SaliencySettings, input_gradients, prepare_extractor, reduce_channels, token_saliency
from cortex_cli.attribution.noise_tunnel import noise_scale, philox_copies, philox_noise, scaled_noise, seeded_noise, smoothgrad_noise
from cortex_cli.extractors.architectures import ExtractorConfig, build_extractor
from cortex_cli.core.seeding import generator_for

noise_module = sys.modules["cortex_cli.attribution.noise_tunnel"]  # the module (the package exports a function of its name)


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


# -- 'philox' (the default) and 'host' (older runs) ------------------------------------------------------------------------


def test_philox_noise_is_keyed_by_image_and_seed_not_by_position():
    keys, shape = [7, 2**62 + 3, 7, 12, 5], (4, 2, 2)
    noise = philox_noise(shape, keys, seed=1, samples=3)
    assert noise.shape == (5, 3, *shape) and noise.dtype == torch.float32
    assert torch.equal(noise[0], noise[2]) and not torch.equal(noise[0], noise[1])  # keyed by identity, not position
    assert not torch.equal(philox_noise(shape, keys, seed=2, samples=3), noise)
    for i, k in enumerate(keys):  # an image alone; and image i's copies are its philox stream under (key_i, seed), in order
        assert torch.equal(philox_noise(shape, [k], seed=1, samples=3)[0], noise[i])
        z = philox.normal(philox.keys_tensor([k]), 3 * 16, domain=philox.SMOOTHGRAD, stream=0, substream=1)
        assert torch.equal(noise[i].reshape(-1), z[0])
    # more copies extend the fewer: copy l does not depend on N
    assert torch.equal(philox_noise(shape, keys, seed=1, samples=5)[:, :3], noise)
    odd = philox_noise((3, 3, 3), keys, seed=1, samples=2)  # 27 numbers a copy: each copy starts a block of its own
    assert odd.shape == (5, 2, 3, 3, 3) and not torch.equal(odd[0, 0], odd[0, 1])
    # a 63-bit seed (the evaluations derive theirs) uses both its words: its high word is the stream
    big = 2**40 + 1
    z = philox.normal(philox.keys_tensor(keys[:1]), 3 * 16, domain=philox.SMOOTHGRAD, stream=2**8, substream=1)
    assert torch.equal(philox_noise(shape, keys[:1], seed=big, samples=3).reshape(1, -1), z)
    assert not torch.equal(philox_noise(shape, keys, seed=big, samples=3), noise)


def test_philox_noise_drawn_chunk_by_chunk_is_the_whole_draw_scaled_per_image():
    e = torch.randn(3, 4, 2, 2) * torch.tensor([1.0, 5.0, 0.1]).view(-1, 1, 1, 1)
    keys = [10, 11, 12]
    whole = scaled_noise(e, keys, seed=4, samples=5, alpha=0.3)
    assert torch.equal(whole, philox_noise(e.shape[1:], keys, 4, 5) * noise_scale(e, 0.3).view(-1, 1, 1, 1, 1))
    lazy = smoothgrad_noise(e, keys, seed=4, samples=5, alpha=0.3)
    flat = whole.flatten(0, 1)
    for start, stop in ((0, 4), (4, 5), (5, 13), (13, 15)):
        assert torch.equal(lazy.copies(start, stop), flat[start:stop])
    assert scaled_noise(e, keys, 4, 5, 0.3, noise="host").shape == whole.shape
    with pytest.raises(ValueError, match="unknown noise"):
        smoothgrad_noise(e, keys, 4, 5, 0.3, noise="gpu")


def test_philox_noise_on_the_device_path_is_the_cpu_draw(monkeypatch):
    """A dry run of the device path: the draw compiled whole as on CUDA (CORTEX_COMPILE=aot_eager: dynamo's full graph,
    so no graph break and no host sync, run by the eager kernels) gives the same numbers, and so the same maps."""
    keys = philox.keys_tensor([2**63 - 1, 4, 123456789])
    cases = ((2**40 + 7, 5, 11),)
    eager = [philox_copies((3, 4, 4), keys, seed, 4, start, stop) for seed, start, stop in cases]
    net, e = _ce(), torch.randn(3, 8, 8, 8, generator=torch.Generator().manual_seed(5))
    settings = SaliencySettings(samples=4, chunk=8)
    maps = token_saliency(net, e, [0, 1, 2], keys.tolist(), settings)
    monkeypatch.setenv("CORTEX_COMPILE", "aot_eager")
    monkeypatch.setattr(noise_module, "_COMPILED", {})
    torch._dynamo.reset()
    for (seed, start, stop), expected in zip(cases, eager):
        assert torch.equal(philox_copies((3, 4, 4), keys, seed, 4, start, stop), expected)
    assert torch.equal(token_saliency(net, e, [0, 1, 2], keys.tolist(), settings), maps)
    assert noise_module._COMPILED["aot_eager"] is not noise_module._philox_rows  # it compiled, and stayed compiled


def test_a_draw_that_does_not_compile_runs_eagerly_with_one_warning(monkeypatch):
    keys = philox.keys_tensor([1, 2])
    expected = philox_copies((2, 2, 2), keys, 0, 3, 0, 6)

    def broken(fn, **_):
        def run(*args):
            raise RuntimeError("no compiler here\nmore detail")
        return run

    monkeypatch.setenv("CORTEX_COMPILE", "on")
    monkeypatch.setattr(noise_module, "_COMPILED", {})
    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(RuntimeWarning, match=r"noise draw did not compile \(RuntimeError: no compiler here\); drawing it eagerly") as caught:
        assert torch.equal(philox_copies((2, 2, 2), keys, 0, 3, 0, 6), expected)
        assert torch.equal(philox_copies((2, 2, 2), keys, 0, 3, 0, 6), expected)
    assert len([w for w in caught if "did not compile" in str(w.message)]) == 1


def _ce(d: int = 8, m: int = 8):
    torch.manual_seed(0)
    net = build_extractor(ExtractorConfig("ce", in_channels=d, grid=m, width=16, n_classes=5, fc_width=32)).eval()
    return prepare_extractor(net)


@pytest.mark.parametrize("extractor", ["small-cnn", "ce"])
def test_a_map_is_the_same_alone_or_in_a_mixed_batch_in_another_order_and_chunk(extractor):
    """Bit for bit on the CPU, with chunks of a multiple of 4 copies (N = 20 and the default chunk of 64 make only such).

    The noise is the same bits whatever the chunk; the extractor's CPU kernels compute the rows of a batch
    whose size is not a multiple of 4 with another micro-kernel, whose last bits may differ (~1e-9 of the map).
    """
    net = prepare_extractor(freeze(SmallCNN(d=4))) if extractor == "small-cnn" else _ce()
    d, m = (4, 6) if extractor == "small-cnn" else (8, 8)
    e = torch.randn(7, d, m, m, generator=torch.Generator().manual_seed(1))
    targets, keys = [0, 1, 2, 3, 0, 1, 2], [2**63 - 1, 101, 102, 7, 104, 0, 106]
    together = token_saliency(net, e, targets, keys, SaliencySettings(samples=8, chunk=16))  # 56 copies: 16, 16, 16, 8
    for i in range(7):  # an image's 8 copies in chunks of 4
        alone = token_saliency(net, e[i:i + 1], targets[i:i + 1], keys[i:i + 1], SaliencySettings(samples=8, chunk=4))
        assert torch.equal(alone[0], together[i]), i
    perm = [6, 2, 0, 5, 1, 3, 4]  # chunks 12, 12, 12, 12, 8: image 2's copies straddle two of them
    shuffled = token_saliency(net, e[perm], [targets[i] for i in perm], [keys[i] for i in perm], SaliencySettings(samples=8, chunk=12))
    assert torch.equal(shuffled, together[perm])
    # the map follows the image's key and the seed
    assert not torch.equal(token_saliency(net, e[:1], targets[:1], [5], SaliencySettings(samples=8))[0], together[0])
    assert not torch.equal(token_saliency(net, e[:1], targets[:1], keys[:1], SaliencySettings(samples=8, seed=1))[0], together[0])


def test_host_noise_reproduces_the_maps_of_runs_made_before_philox():
    """'host' is the noise and the arithmetic of every earlier run: one CPU generator per image, the copies stacked."""
    net = _ce()
    e = torch.randn(3, 8, 8, 8, generator=torch.Generator().manual_seed(2))
    targets, keys, n, seed, alpha, chunk = [4, 0, 2], [31, 2**62, 8], 5, 3, 0.2, 4
    sigma = noise_scale(e, alpha)
    noise = torch.stack([torch.randn(n, 8, 8, 8, generator=generator_for("saliency", seed, k)) for k in keys]) * sigma.view(-1, 1, 1, 1, 1)
    noisy = (e.unsqueeze(1) + noise).flatten(0, 1)
    grads = input_gradients(net, noisy, torch.tensor(targets).repeat_interleave(n), chunk=chunk)
    expected = reduce_channels(grads.view(3, n, 8, 8, 8).mean(dim=1))
    settings = SaliencySettings(samples=n, alpha=alpha, seed=seed, chunk=chunk, noise="host")
    assert torch.equal(token_saliency(net, e, targets, keys, settings), expected)
    assert not torch.equal(token_saliency(net, e, targets, keys, SaliencySettings(samples=n, alpha=alpha, seed=seed, chunk=chunk)),
                           expected)  # philox draws other numbers
