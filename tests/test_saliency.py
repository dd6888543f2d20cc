"""Saliency (paper eq. 4-6) against closed forms and invariances."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cortex_cli.errors import CortexError
from cortex_cli.attribution.smoothgrad import smoothgrad
from cortex_cli.attribution import (
    SaliencySettings,
    default_chunk,
    noise_scale,
    prepare_extractor,
    reduce_channels,
    seeded_noise,
    token_saliency,
    top_positions,
)


class LinearExtractor(nn.Module):
    """logits = W . flatten(E): the gradient of logit c is W[c] whatever the input."""

    def __init__(self, d: int, m: int, classes: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.linear = nn.Linear(d * m * m, classes, bias=True)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(classes, d * m * m, generator=g))
        self.d, self.m = d, m

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.linear(e.flatten(1))


class OnePosition(nn.Module):
    """Looks only at grid position (r, c), non-linearly."""

    def __init__(self, d: int, r: int, c: int, classes: int = 3):
        super().__init__()
        self.r, self.c = r, c
        self.head = nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, classes))
        torch.manual_seed(1)
        for p in self.head.parameters():
            nn.init.normal_(p)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.head(e[:, :, self.r, self.c])


class SmallCNN(nn.Module):
    def __init__(self, d: int, classes: int = 4):
        super().__init__()
        torch.manual_seed(2)
        self.net = nn.Sequential(
            nn.Conv2d(d, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(12, 12, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(48, classes),
        )
        self.eval()

    def forward(self, e):
        return self.net(e)


def freeze(m: nn.Module) -> nn.Module:
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def test_linear_extractor_tsv_is_max_abs_weight():
    d, m = 3, 4
    ext = freeze(LinearExtractor(d, m, classes=5))
    e = torch.randn(2, d, m, m)
    tsv = token_saliency(ext, e, targets=[1, 4], keys=[10, 11], settings=SaliencySettings(samples=5, alpha=0.3))
    w = ext.linear.weight.view(5, d, m, m)
    expected = torch.stack([w[1].abs().amax(0), w[4].abs().amax(0)])
    assert tsv.shape == (2, m, m)
    torch.testing.assert_close(tsv, expected, rtol=1e-5, atol=1e-6)
    signed = token_saliency(ext, e, [1, 4], [10, 11], SaliencySettings(samples=3, reduce="signed-max"))
    torch.testing.assert_close(signed, torch.stack([w[1].amax(0), w[4].amax(0)]), rtol=1e-5, atol=1e-6)
    mean = token_saliency(ext, e, [1, 4], [10, 11], SaliencySettings(samples=3, reduce="mean"))
    torch.testing.assert_close(mean, torch.stack([w[1].abs().mean(0), w[4].abs().mean(0)]), rtol=1e-5, atol=1e-6)


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


def test_sigma_is_per_image():
    e = torch.stack([torch.zeros(2, 3, 3), torch.zeros(2, 3, 3)])
    e[0, 0, 0, 0], e[1, 1, 2, 2] = 1.0, -4.0
    assert noise_scale(e, 0.5).tolist() == [0.5, 2.0]


def test_batch_size_and_order_do_not_change_results():
    ext = freeze(SmallCNN(d=4))
    e = torch.randn(7, 4, 6, 6)
    targets, keys = [0, 1, 2, 3, 0, 1, 2], [100, 101, 102, 103, 104, 105, 106]
    s = SaliencySettings(samples=6, chunk=16)
    together = token_saliency(ext, e, targets, keys, s)
    alone = torch.cat([token_saliency(ext, e[i:i + 1], targets[i:i + 1], keys[i:i + 1], SaliencySettings(samples=6, chunk=6)) for i in range(7)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-7)
    perm = [6, 2, 0, 5, 1, 3, 4]
    shuffled = token_saliency(ext, e[perm], [targets[i] for i in perm], [keys[i] for i in perm], s)
    torch.testing.assert_close(shuffled, together[perm], rtol=1e-5, atol=1e-7)
    for i in range(7):
        assert [p for p, _ in top_positions(together[i], 5)] == [p for p, _ in top_positions(alone[i], 5)]
    # a different seed draws different noise, hence a (slightly) different map
    assert not torch.equal(token_saliency(ext, e, targets, keys, SaliencySettings(samples=6, seed=1)), together)


def test_one_position_extractor_puts_that_position_first():
    d, m = 5, 8
    ext = freeze(OnePosition(d, r=3, c=6))
    e = torch.randn(4, d, m, m)
    tsv = token_saliency(ext, e, [0, 1, 2, 0], [1, 2, 3, 4], SaliencySettings(samples=8))
    for i in range(4):
        top = top_positions(tsv[i], 3)
        assert top[0][0] == 3 * m + 6
        assert top[0][1] > 0 and top[1][1] == 0.0


def test_bf16_runs_and_stays_close():
    ext = freeze(SmallCNN(d=4))
    e = torch.randn(2, 4, 6, 6)
    fp32 = token_saliency(ext, e, [0, 1], [1, 2], SaliencySettings(samples=4))
    bf16 = token_saliency(ext, e, [0, 1], [1, 2], SaliencySettings(samples=4, precision="bf16"))
    assert bf16.dtype == torch.float32
    assert (bf16 - fp32).abs().max() <= 0.1 * fp32.abs().max()


def test_top_positions_orders_and_breaks_ties_by_position():
    tsv = torch.tensor([[0.1, 0.5], [0.5, 0.2]])
    assert top_positions(tsv, 3) == [(1, 0.5), (2, 0.5), (3, pytest.approx(0.2))]
    assert len(top_positions(tsv, 10)) == 4


@pytest.mark.parametrize(
    "kwargs, message",
    [({"samples": 0}, "--samples"), ({"reduce": "min"}, "--reduce"), ({"precision": "fp8"}, "--precision"), ({"top_n": 0}, "--top-n")],
)
def test_settings_validation(kwargs, message):
    with pytest.raises(CortexError, match=message):
        SaliencySettings(**kwargs).validate()


def test_prepared_extractor_is_a_frozen_folded_copy_with_the_same_function():
    net = SmallCNN(6)
    with torch.no_grad():  # non-trivial running statistics, so folding has something to fold
        net.net[1].running_mean.uniform_(-1, 1)
        net.net[1].running_var.uniform_(0.5, 2)
    prepared = prepare_extractor(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in prepared.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())  # the caller's module is untouched
    assert all(p.requires_grad for p in net.parameters())
    assert not any(p.requires_grad for p in prepared.parameters())
    assert prepare_extractor(prepared) is prepared
    e = torch.randn(3, 6, 8, 8)
    torch.testing.assert_close(prepared(e.contiguous(memory_format=torch.channels_last)), net(e), rtol=1e-5, atol=1e-5)
    keys, settings = [5, 6, 7], SaliencySettings(samples=6)
    ours = smoothgrad(prepared, e, [0, 1, 2], seeded_noise(e.shape[1:], keys, 0, 6) * 0.1)
    plain = smoothgrad(net, e, [0, 1, 2], seeded_noise(e.shape[1:], keys, 0, 6) * 0.1)
    torch.testing.assert_close(ours, plain, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(token_saliency(net, e, [0, 1, 2], keys, settings), token_saliency(prepared, e, [0, 1, 2], keys, settings))


def test_chunk_defaults_by_device():
    assert default_chunk("cpu") == 64
    assert default_chunk("cuda") > default_chunk("cpu")
