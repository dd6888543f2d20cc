"""Extractor architectures (paper appendix A.1): sizes at paper scale, shapes, gradients to E."""

from __future__ import annotations

import pytest
import torch

from cortex_cli.core.errors import CortexError
from cortex_cli.extractors.architectures import ExtractorConfig, build_extractor, count_parameters, forward_flops


def test_ce_at_paper_size_has_72_2m_parameters_and_5_545_gflop():
    cfg = ExtractorConfig("ce")  # d=256, m=16, width 512, FC 4096, 1000 classes
    assert cfg.fc_width == 4096
    with torch.device("meta"):
        net = build_extractor(cfg)
        out = net(torch.empty(2, 256, 16, 16))
    assert abs(count_parameters(net) - 72.2e6) <= 0.05e6
    assert tuple(out.shape) == (2, 1000)
    assert abs(forward_flops(cfg) / 1e9 - 5.545) < 0.001  # the figure, counted by torch


def test_re_at_paper_size_output_shape_and_head():
    cfg = ExtractorConfig("re")
    assert cfg.fc_width == 2048  # A.1.2: 512 -> 2048 -> classes
    with torch.device("meta"):
        net = build_extractor(cfg)
        out = net(torch.empty(3, 256, 16, 16))
    assert tuple(out.shape) == (3, 1000)
    linears = [m for m in net.head if isinstance(m, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(512, 2048), (2048, 1000)]
    blocks = [m for m in net.modules() if type(m).__name__ == "SEResidualBlock"]
    assert len(blocks) == 6


def test_re_authors_downsamples_twice_with_projection_shortcuts_and_se_after_the_sum():
    cfg = ExtractorConfig("re-authors")
    with torch.device("meta"):
        net = build_extractor(cfg)
        features = net.layer2(net.layer1(torch.empty(2, 256, 16, 16)))
        out = net(torch.empty(2, 256, 16, 16))
    assert tuple(features.shape) == (2, 512, 4, 4) and tuple(out.shape) == (2, 1000)  # 16 -> 8 -> 4, no stem
    projections = [b.shortcut for b in [*net.layer1, *net.layer2] if not isinstance(b.shortcut, torch.nn.Identity)]
    assert [p[0].in_channels for p in projections] == [256, 512] and all(p[0].stride == (2, 2) for p in projections)
    # conv weights + BN + SE + projections + head, counted by hand for d=256, width 512, reduction 16
    conv = 256 * 512 * 9 + 512 * 512 * 9 + 5 * (2 * 512 * 512 * 9)
    bn = 2 * 512 * 12 + 2 * 512 * 2 + 2 * 2048
    se = 6 * (512 * 32 + 32 + 32 * 512 + 512)
    proj = 256 * 512 + 512 * 512
    head = 512 * 2048 + 2048 + 2048 * 1000 + 1000
    assert count_parameters(net) == conv + bn + se + proj + head
    # SE acts on the residual sum: scaling SE's output to 0 zeroes the block, shortcut included
    block = build_extractor(ExtractorConfig("re-authors", in_channels=4, grid=8, width=4, n_classes=2, fc_width=4, se_reduction=2)).layer1[1]
    block.eval()
    torch.nn.init.constant_(block.se.fc[2].weight, 0.0)
    torch.nn.init.constant_(block.se.fc[2].bias, -1e4)
    assert block(torch.randn(1, 4, 4, 4)).abs().max() == 0


@pytest.mark.parametrize("arch", ["ce", "re", "re-authors"])
def test_small_extractor_runs_and_passes_gradients_to_the_embedding(arch):
    torch.manual_seed(0)
    cfg = ExtractorConfig(arch, in_channels=16, grid=16, width=8, n_classes=4, fc_width=16)
    net = build_extractor(cfg).eval()
    e = torch.randn(2, 16, 16, 16, requires_grad=True)
    logits = net(e)
    assert logits.shape == (2, 4)
    logits[:, 1].sum().backward()
    assert e.grad is not None and e.grad.abs().sum() > 0


def test_config_rejects_bad_values():
    with pytest.raises(CortexError, match="unknown extractor architecture 'vgg'"):
        ExtractorConfig("vgg")
    with pytest.raises(CortexError, match="multiple of 4"):
        ExtractorConfig("ce", grid=10)
    assert ExtractorConfig.from_dict(ExtractorConfig("re", width=32).to_dict()) == ExtractorConfig("re", width=32)
