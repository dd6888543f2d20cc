"""The mini world's independent judges: a torchvision ResNet and a VisionTransformer sized for 64 px.

They stand in for the paper's pretrained ResNet-18/50 and ViT-B/16/32: trained on mini-world
pixels only (never on token embeddings, never on generated images).
"""

from __future__ import annotations

import torch
from torchvision.models import VisionTransformer
from torchvision.models.resnet import BasicBlock, ResNet

JUDGE_KINDS = ("resnet", "vit")
MEAN = torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1)
STD = torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1)


def build_judge(kind: str, n_classes: int) -> torch.nn.Module:
    if kind == "resnet":  # ResNet-10: torchvision's BasicBlock ResNet with one block a stage
        return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=n_classes)
    if kind == "vit":  # ViT with 8x8 patches on 64x64 -> 64 tokens
        return VisionTransformer(image_size=64, patch_size=8, num_layers=4, num_heads=4, hidden_dim=128, mlp_dim=256, num_classes=n_classes)
    raise ValueError(f"unknown judge {kind!r}; choose from {JUDGE_KINDS}")


def judge_input(images_uint8_nhwc: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC images -> normalised NCHW floats, as the judges expect."""
    x = images_uint8_nhwc.permute(0, 3, 1, 2).float() / 255.0
    return (x - MEAN) / STD


def from_model_output(images: torch.Tensor) -> torch.Tensor:
    """Decoder output in [-1, 1] (NCHW) -> judge input."""
    x = (images.clamp(-1, 1) + 1) / 2
    return (x - MEAN.to(x.device)) / STD.to(x.device)
