"""The evaluation metrics on toys with hand-computed answers."""

from __future__ import annotations

import math

import pytest
import torch

from cortex_cli.evaluation.metrics import accuracy_and_probability, curve_auc, edit_effect, masking_effect, paired_bootstrap_ci, patches_inside, pointing_game, precision_at_n, random_floor, ranked_positions, top_n_overlap


def test_delta_a_delta_p_arithmetic_on_a_toy():
    before = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]])
    after = torch.tensor([[0.3, 0.6, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.2, 0.2, 0.6]])
    labels = [0, 1, 1, 2]
    acc, p = accuracy_and_probability(before, labels)
    assert acc == pytest.approx(3 / 4) and p == pytest.approx((0.7 + 0.8 + 0.4 + 0.6) / 4)
    e = masking_effect(before, after, labels, [3, 0, 5, 4])
    assert e.acc_after == pytest.approx(3 / 4)  # image 0 lost, image 2 gained
    assert e.delta_acc == pytest.approx(0.0)
    assert e.p_after == pytest.approx((0.3 + 0.8 + 0.7 + 0.6) / 4)
    assert e.delta_p == pytest.approx(e.p_after - e.p)
    assert e.delta_p == pytest.approx((-0.4 + 0.0 + 0.3 + 0.0) / 4)
    assert e.mean_n == pytest.approx(3.0)


def test_edit_effect_follows_eq_10():
    before = torch.tensor([[0.9, 0.05, 0.05], [0.4, 0.5, 0.1]])
    after = torch.tensor([[0.3, 0.6, 0.1], [0.1, 0.8, 0.1]])
    e = edit_effect(before, after, orig=[0, 0], targ=[1, 1])
    assert e.acc_orig == pytest.approx(0.5)
    assert e.p_orig == pytest.approx(0.65) and e.p_targ == pytest.approx(0.275)
    assert e.delta_p_orig == pytest.approx(0.2 - 0.65)
    assert e.delta_p_targ == pytest.approx(0.7 - 0.275)
    assert e.acc_targ_after == pytest.approx(1.0)


def test_localization_metrics_on_a_hand_made_mask():
    # 8x8 px, grid 4 (2x2 px patches); object = top-left 4x4 px block plus 1 px of patch (0, 2)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:4, :4] = True
    mask[0, 4] = True  # 1 of 4 pixels of patch (0, 2): below the 50% rule
    mask[2:4, 6] = True  # 2 of 4 pixels of patch (1, 3): exactly 50% -> inside
    inside = patches_inside(mask, 4)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[:2, :2] = True
    expected[1, 3] = True
    assert torch.equal(inside, expected)
    assert random_floor(inside) == pytest.approx(5 / 16)
    scores = torch.zeros(4, 4)
    scores[0, 0], scores[3, 3], scores[1, 1], scores[0, 2] = 9.0, 8.0, 7.0, 6.0
    ranking = ranked_positions(scores)
    assert ranking[:4].tolist() == [0, 15, 5, 2]
    assert pointing_game(ranking, inside) == 1.0
    assert precision_at_n(ranking, inside, 2) == pytest.approx(0.5)
    assert precision_at_n(ranking, inside, 4) == pytest.approx(0.5)
    assert pointing_game([15], inside) == 0.0
    assert math.isnan(precision_at_n([], inside, 3))


def test_top_n_overlap():
    a = torch.arange(16.0).reshape(4, 4)  # top-3: 15, 14, 13
    b = a.clone()
    b.view(-1)[13] = -1.0  # top-3 now 15, 14, 12
    assert top_n_overlap(a, a, 3) == 1.0
    assert top_n_overlap(a, b, 3) == pytest.approx(2 / 3)
    assert top_n_overlap(a, -a, 3) == 0.0


def test_curve_auc_is_the_mean_height_over_the_covered_range():
    assert curve_auc([0, 0.5, 1], [0.2, 0.2, 0.2]).item() == pytest.approx(0.2)
    assert curve_auc([0, 1], [0.0, 1.0]).item() == pytest.approx(0.5)  # RISE's full range: the plain area
    # a part of the range: trapezoid area (0.05 + 0) over x in [0, 0.2], divided by 0.2
    assert curve_auc([0, 0.1, 0.2], [1.0, 0.0, 0.0]).item() == pytest.approx(0.25)
    rows = curve_auc([0, 0.1, 0.3], torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.6]]))
    assert rows.shape == (2,) and rows.tolist() == pytest.approx([1.0, 0.6 * 0.2 / 2 / 0.3])
    with pytest.raises(ValueError):
        curve_auc([0, 0.2, 0.1], [1, 1, 1])
    with pytest.raises(ValueError):
        curve_auc([0], [1])


def test_paired_bootstrap_on_known_inputs():
    a = torch.tensor([0.5, 0.7, 0.6, 0.9])
    shifted = paired_bootstrap_ci(a + 0.3, a, seed=11, resamples=500)
    assert shifted.mean == pytest.approx(0.3) and shifted.low == pytest.approx(0.3) and shifted.high == pytest.approx(0.3)
    noisy = paired_bootstrap_ci(a, torch.tensor([0.4, 0.8, 0.3, 0.5]), seed=11, resamples=500)
    assert noisy.mean == pytest.approx(0.175) and noisy.low <= noisy.mean <= noisy.high
    assert noisy == paired_bootstrap_ci(a, torch.tensor([0.4, 0.8, 0.3, 0.5]), seed=11, resamples=500)  # a seed, the same interval
    assert -0.1 - 1e-9 <= noisy.low and noisy.high <= 0.4 + 1e-9  # inside the range of the per-unit differences
