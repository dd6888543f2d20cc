"""Pieces of the ground-truth localization evaluation."""

from __future__ import annotations

import torch

from cortex_cli.evaluation.localization import frequency_ranking, world_images
from cortex_cli.evaluation.metrics import patches_inside, precision_at_n
from cortex_cli.model_registry import ClassInfo


def test_frequency_ranking_orders_positions_by_class_frequency():
    tokens = torch.tensor([[5, 1], [5, 7]])
    counts = torch.zeros(8)
    counts[5], counts[7], counts[1] = 10, 3, 0
    ranking = frequency_ranking(tokens, counts, torch.Generator().manual_seed(0))
    assert sorted(ranking[:2].tolist()) == [0, 2]  # both token-5 positions first (tie order is seeded)
    assert ranking[2:].tolist() == [3, 1]
    again = frequency_ranking(tokens, counts, torch.Generator().manual_seed(0))
    assert torch.equal(ranking, again)


def test_world_images_carry_their_masks():
    classes = [ClassInfo(1, 0, "red-capped bird", ()), ClassInfo(2, 9, "sun", ())]
    images, labels, masks = world_images(classes, 2, seed=0)
    assert images.shape == (4, 3, 64, 64) and labels.tolist() == [0, 0, 9, 9]
    assert images.min() >= -1 and images.max() <= 1
    inside = patches_inside(masks[0], 16)
    assert 0 < inside.sum() < 256
    # a ranking that lists the object's patches first is perfectly precise
    ranking = torch.sort(inside.reshape(-1).float(), descending=True, stable=True).indices
    assert precision_at_n(ranking, inside, int(inside.sum())) == 1.0
