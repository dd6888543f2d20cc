"""Masking the pixel patches of token positions."""

from __future__ import annotations

import pytest
import torch

from cortex_cli.errors import CortexError
from cortex_cli.evaluation.masking import mask_patches, patch_mask
from cortex_cli.evaluation.metrics import masking_effect
from cortex_cli.judges import Judge


def test_patch_mask_covers_exactly_the_patches():
    mask = patch_mask([0, 5, 15], grid=4, image_size=16)  # 4x4 px patches
    assert mask.shape == (16, 16) and mask.dtype == torch.bool
    assert mask.sum().item() == 3 * 16
    assert mask[0:4, 0:4].all()  # position 0 -> row 0, col 0
    assert mask[4:8, 4:8].all()  # position 5 -> row 1, col 1
    assert mask[12:16, 12:16].all()  # position 15 -> row 3, col 3
    assert not mask[0:4, 4:16].any()


@pytest.mark.parametrize("fill", ["black", "mean", "blur"])
def test_mask_patches_changes_only_chosen_patches(fill):
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 32, 32, generator=gen) * 2 - 1
    positions = [[0, 63], [], [10, 11, 12]]
    out = mask_patches(images, positions, grid=8, fill=fill)
    for i, pos in enumerate(positions):
        inside = patch_mask(pos, 8, 32)
        changed = (out[i] != images[i]).any(0)
        assert not changed[~inside].any(), "pixels outside the chosen patches changed"
        if pos:
            assert changed[inside].float().mean() > 0.9  # a random image differs from its fill almost everywhere
    assert torch.equal(out[1], images[1])
    if fill == "black":
        assert (out[0][:, :4, :4] == -1).all()
    if fill == "mean":
        assert torch.allclose(out[0][:, 0, 0], images[0].mean(dim=(1, 2)))


def test_mask_patches_rejects_bad_input():
    images = torch.zeros(1, 3, 16, 16)
    with pytest.raises(CortexError, match="fill"):
        mask_patches(images, [[0]], 4, fill="pink")
    with pytest.raises(CortexError, match="0..15"):
        mask_patches(images, [[16]], 4)
    with pytest.raises(CortexError, match="grid"):
        mask_patches(images, [[0]], 5)


class _LeftHalfClassifier(torch.nn.Module):
    """Scores 3 classes from the mean colour of the left half only."""

    def forward(self, x):
        left = x[..., : x.shape[-1] // 2].mean(dim=(2, 3))
        return left * 5.0


def test_judge_that_ignores_the_masked_region_shows_no_drop():
    judge = Judge("left", _LeftHalfClassifier(), lambda x: x)
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(4, 3, 16, 16, generator=gen) * 2 - 1
    labels = judge.probabilities(images).argmax(-1)
    right_half = [r * 4 + c for r in range(4) for c in (2, 3)]  # grid 4: columns 2,3 = right half
    left_half = [r * 4 + c for r in range(4) for c in (0, 1)]
    before = judge.probabilities(images)
    ignored = judge.probabilities(mask_patches(images, [right_half] * 4, 4))
    hit = judge.probabilities(mask_patches(images, [left_half] * 4, 4))
    effect = masking_effect(before, ignored, labels, [8] * 4)
    assert effect.delta_p == 0.0 and effect.delta_acc == 0.0
    assert effect.mean_n == 8
    assert masking_effect(before, hit, labels, [8] * 4).delta_p < -0.05
