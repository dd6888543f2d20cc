"""Extractor architectures (paper appendix A.1): sizes at paper scale, shapes, gradients to E."""

from __future__ import annotations

import pytest
import torch

from cortex_cli.errors import CortexError
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


@pytest.mark.parametrize("arch", ["ce", "re"])
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
