"""attribution.common: the precision of the forward pass, top positions, the prepared extractor, chunk sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attribution_helpers import SmallCNN, freeze
from cortex_cli.attribution import SaliencySettings, default_chunk, prepare_extractor, seeded_noise, token_saliency, top_positions
from cortex_cli.attribution.common import autocast
from cortex_cli.attribution.smoothgrad import smoothgrad


def test_fp32_on_cuda_turns_tf32_convolutions_off_and_restores_the_setting():
    """TF32 moved fp32 saliency by up to 17% of its maximum on an H200 (tests/test_cuda.py); fp32 must mean fp32."""
    cudnn = torch.backends.cudnn
    before = cudnn.allow_tf32
    try:
        cudnn.allow_tf32 = True  # PyTorch's default
        with autocast(torch.device("cuda"), "fp32"):
            assert cudnn.allow_tf32 is False
        assert cudnn.allow_tf32 is True
        with autocast(torch.device("cpu"), "fp32"):
            assert cudnn.allow_tf32 is True  # the CPU has no TF32 to turn off
    finally:
        cudnn.allow_tf32 = before


def test_bf16_autocasts_the_forward_pass():
    with autocast(torch.device("cpu"), "bf16"):
        out = torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3))
    assert out.dtype == torch.bfloat16


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

