"""Shared helpers of the evaluation tests: a real registered extractor and a toy judge for the tiny model."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cortex_cli.extractors.architectures import ExtractorConfig, build_extractor
from cortex_cli.extractors.registry import register_extractor
from cortex_cli.judges.pixel_judges import Judge


def register_small_extractor(store, model, tmp: Path, name: str = "ce", arch: str = "ce", seed: int = 0):
    """A small random-init extractor of the tiny model, saved and registered like a trained one."""
    from safetensors.torch import save_file

    cfg = ExtractorConfig(arch=arch, in_channels=model.embed_dim, grid=model.grid, width=8, n_classes=model.n_classes,
                          fc_width=16, se_reduction=4, dropout=0.0)
    torch.manual_seed(seed)
    net = build_extractor(cfg)
    path = Path(tmp) / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return register_extractor(store, model, name, cfg, {"toy": True}, path, {})


class MeanColourNet(nn.Module):
    """Logits from the mean colour of the image: a deterministic toy judge."""

    def __init__(self, classes: int = 4, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(3, classes, generator=gen) * 4, requires_grad=False)

    def forward(self, x):
        return x.mean(dim=(2, 3)) @ self.w


def toy_judge(classes: int = 4) -> Judge:
    return Judge("toy", MeanColourNet(classes).eval(), lambda x: x)
