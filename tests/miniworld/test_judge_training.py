"""miniworld/judges.py: the mini world's ResNet and ViT judges and their input normalisation."""

from __future__ import annotations

import pytest
import torch

from cortex_cli.miniworld.judge_training import JUDGE_KINDS, build_judge, from_model_output, judge_input


@pytest.mark.parametrize("kind", JUDGE_KINDS)
def test_each_judge_maps_64px_images_to_class_logits(kind):
    torch.manual_seed(0)
    net = build_judge(kind, 5).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 5) and torch.isfinite(out).all()


def test_an_unknown_judge_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown judge 'vgg'.*resnet.*vit"):
        build_judge("vgg", 3)


def test_pixels_and_decoder_output_normalise_the_same_way():
    pixels = torch.tensor([0, 64, 128, 255], dtype=torch.uint8).view(1, 1, 4, 1).expand(1, 2, 4, 3).contiguous()  # NHWC
    x = judge_input(pixels)
    assert x.shape == (1, 3, 2, 4)  # NCHW
    assert x[0, 0, 0].tolist() == pytest.approx([(v / 255 - 0.5) / 0.25 for v in (0, 64, 128, 255)], abs=1e-5)
    decoded = pixels.permute(0, 3, 1, 2).float() / 127.5 - 1  # the same picture as a decoder's [-1, 1] output
    assert torch.allclose(from_model_output(decoded), x, atol=1e-5)
    beyond = torch.tensor([-3.0, -1.0, 0.5, 2.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    assert torch.equal(from_model_output(beyond), from_model_output(beyond.clamp(-1, 1)))  # out-of-range output is clamped
