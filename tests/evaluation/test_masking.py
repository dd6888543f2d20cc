"""Masking the pixel patches of token positions."""

from __future__ import annotations

import pytest
import torch

from cortex_cli.core.errors import CortexError
from cortex_cli.evaluation.masking import Masking, background_token, fill_tokens, insertion_images, mask_images, mask_patches, masking_of, patch_mask
from cortex_cli.evaluation.metrics import masking_effect
from cortex_cli.judges.pixel_judges import Judge


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
    with pytest.raises(CortexError, match="mask_images"):  # the token fill needs grids and a decoder
        mask_patches(images, [[0]], 4, fill="tokens")


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


def test_token_fill_takes_the_most_frequent_known_neighbour_ties_to_the_smaller_id():
    grid = torch.tensor([[[5, 5, 5, 5],
                          [5, 0, 0, 7],
                          [6, 0, 0, 7],
                          [6, 6, 7, 7]]])
    # every masked position has a known neighbour: one synchronous round, each from its unmasked 8-neighbours only
    # (1,1): 5,5,5,5,6 -> 5; (1,2): 5,5,5,7,7 -> 5; (2,1): 5,6,6,6,7 -> 6; (2,2): 7,7,6,7,7 -> 7
    out = fill_tokens(grid, [[5, 6, 9, 10]])
    assert out.tolist() == [[[5, 5, 5, 5], [5, 5, 5, 7], [6, 6, 7, 7], [6, 6, 7, 7]]]
    # a tie (two 2s, two 9s around the centre's known neighbours) goes to the smaller id
    tie = torch.tensor([[[9, 2, 9], [2, 0, 4], [4, 4, 4]]])
    assert fill_tokens(tie, [[4, 6, 7, 8]])[0, 1, 1].item() == 2  # known: 9, 2, 9, 2, 4 -> tie 2 vs 9
    assert fill_tokens(tie, [[4]])[0, 1, 1].item() == 4  # known: 9,2,9,2,4,4,4,4 -> 4


def test_token_fill_goes_from_the_border_inward_and_is_deterministic():
    gen = torch.Generator().manual_seed(3)
    grids = torch.randint(0, 6, (3, 5, 5), generator=gen)
    block = [r * 5 + c for r in range(1, 4) for c in range(1, 4)]  # the centre has no unmasked neighbour: it waits a round
    positions = [block, [], [0, 1, 5, 24]]
    out = fill_tokens(grids, positions)
    for g, pos in zip(range(3), positions):
        kept = ~torch.isin(torch.arange(25), torch.tensor(pos, dtype=torch.long)).reshape(5, 5)
        assert torch.equal(out[g][kept], grids[g][kept])  # unmasked positions untouched
    assert torch.equal(out[1], grids[1])
    # round 1 fills the ring from the border; the centre then takes the ring's most frequent token (ties: smaller)
    ring = [out[0, r, c].item() for r in range(1, 4) for c in range(1, 4) if (r, c) != (2, 2)]
    counts = torch.bincount(torch.tensor(ring), minlength=6)
    assert out[0, 2, 2].item() == int(counts.argmax())
    for r, c in [(1, 1), (1, 3), (3, 1), (3, 3), (1, 2)]:  # each ring position from its unmasked neighbours only
        known = [grids[0, r + dr, c + dc].item() for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                 if (dr, dc) != (0, 0) and not (1 <= r + dr <= 3 and 1 <= c + dc <= 3)]
        votes = torch.bincount(torch.tensor(known), minlength=6)
        assert out[0, r, c].item() == int(votes.argmax())
    # deterministic, whatever the order of the positions
    again = fill_tokens(grids, [list(reversed(block)), [], [24, 5, 1, 0]])
    assert torch.equal(out, again) and torch.equal(out, fill_tokens(grids, positions))


def test_token_fill_of_a_fully_masked_grid_takes_the_fallback():
    grids = torch.tensor([[[1, 2], [2, 3]], [[3, 3], [1, 2]]])
    assert background_token(grids) == 2  # 2 and 3 occur three times each: the smaller id
    out = fill_tokens(grids, [[0, 1, 2, 3], [0]], fallback=7)
    assert out[0].tolist() == [[7, 7], [7, 7]] and out[1].tolist() == [[1, 3], [1, 2]]  # 3, 1, 2 once each: the smallest
    with pytest.raises(CortexError, match="fallback"):
        fill_tokens(grids, [[0, 1, 2, 3], []])
    with pytest.raises(CortexError, match="2 token grids"):
        fill_tokens(grids, [[0]])


def test_mask_images_with_tokens_decodes_the_filled_grids_and_leaves_unmasked_images_alone():
    def decode(tokens):  # a stand-in decoder: a token grid of side 4 -> a 4x4 image of its ids
        decode.calls.append(tokens.shape[0])
        return (tokens.float() / 10)[:, None].expand(-1, 3, -1, -1)

    decode.calls = []
    tokens = torch.tensor([[[1, 1, 2, 2]] * 4, [[3, 3, 3, 3]] * 4])
    images = torch.rand(2, 3, 4, 4)  # not the decoded grids: shows which images were re-decoded
    out = mask_images(Masking(images, 4, "tokens", tokens, decode, fallback=0), [[5], []])
    assert decode.calls == [1]  # only the image with a masked position is decoded
    assert torch.equal(out[1], images[1])
    assert torch.allclose(out[0], decode(fill_tokens(tokens[:1], [[5]]))[0])
    # pixel fills are mask_patches
    assert torch.equal(mask_images(Masking(images, 4, "mean"), [[5], []]), mask_patches(images, [[5], []], 4, "mean"))
    with pytest.raises(CortexError, match="decoder"):
        mask_images(Masking(images, 4, "tokens"), [[5], []])
    with pytest.raises(CortexError, match="1 token grids for 2 images"):
        mask_images(Masking(images, 4, "tokens", tokens[:1], decode), [[5], []])


def test_insertion_puts_the_kept_tokens_on_a_background_grid_without_spreading_them():
    def decode(tokens):  # a token grid of side 4 -> a 4x4 image of its ids
        return (tokens.float() / 10)[:, None].expand(-1, 3, -1, -1)

    tokens = torch.tensor([[[1, 2, 3, 4]] * 4, [[5, 6, 7, 8]] * 4])
    images = decode(tokens)
    out = insertion_images(Masking(images, 4, "tokens", tokens, decode, fallback=9), [[0, 5], list(range(16))])
    expected = torch.full((4, 4), 9)
    expected[0, 0], expected[1, 1] = 1, 2  # only the kept positions hold their tokens; the neighbour rule would spread them
    assert torch.allclose(out[0], decode(expected[None])[0]) and not torch.allclose(out[0], decode(fill_tokens(tokens[:1], [[p for p in range(16) if p not in (0, 5)]]))[0])
    assert torch.equal(out[1], images[1])  # every position kept: the image itself
    # pixel fills: the fill everywhere but the kept patches, i.e. masking the complement
    rest = [[p for p in range(16) if p not in (0, 5)], []]
    assert torch.equal(insertion_images(Masking(images, 4, "black"), [[0, 5], list(range(16))]), mask_patches(images, rest, 4, "black"))
    with pytest.raises(CortexError, match="fallback"):
        insertion_images(Masking(images, 4, "tokens", tokens, decode), [[0], []])


def test_masking_of_an_evaluation_takes_the_background_token_only_for_the_token_fill():
    tokens = torch.tensor([[[1, 1], [2, 3]], [[3, 3], [3, 0]]])
    images = torch.zeros(2, 3, 4, 4)
    decode = lambda grids: grids.float()[:, None].expand(-1, 3, -1, -1)  # noqa: E731
    assert masking_of(images, tokens, 2, "tokens", decode).fallback == background_token(tokens) == 3
    pixels = masking_of(images, tokens, 2, "black", decode)
    assert pixels.fallback is None and pixels.fill == "black" and pixels.grid == 2

