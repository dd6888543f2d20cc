"""The mini world: determinism, exact masks, the bundled model and judges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortex_cli.miniworld import world


def test_same_seed_same_pixels_and_masks():
    a, b = world.sample(3, 17, "train"), world.sample(3, 17, "train")
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and np.array_equal(a.part_mask, b.part_mask)
    c = world.sample(3, 18, "train")
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.image, world.sample(3, 17, "test").image)


@pytest.mark.parametrize("concept", range(len(world.CONCEPTS)))
def test_mask_covers_the_object_and_nothing_else(concept):
    for seed in range(3):
        rng = np.random.default_rng(seed)
        replay = np.random.default_rng(seed)
        s = world.render(concept, rng)
        # replay the background draw: habitat choice, then the background itself
        if replay.uniform() >= world.HOME_PROBABILITY:
            replay.choice([h for h in world.HABITATS if h != world.CONCEPTS[concept].habitat])
        background = world._background(s.habitat, replay)
        outside = ~s.mask
        assert np.array_equal(s.image[outside], background[outside]), "pixels outside the mask must be background"
        differs = np.abs(s.image[s.mask].astype(int) - background[s.mask].astype(int)).sum(-1) > 0
        assert differs.mean() > 0.95, "pixels inside the mask must be the object's"
        assert 0.03 < s.mask.mean() < 0.5
        assert s.part_mask.any() and not (s.part_mask & ~s.mask).any()


def test_habitats_are_class_correlated_but_shared():
    homes = {}
    for c in world.CONCEPTS:
        homes.setdefault(c.habitat, []).append(c.name)
    assert set(homes) == set(world.HABITATS)
    assert all(len(v) >= 3 for v in homes.values())
    habitats = [world.sample(0, i, "train").habitat for i in range(200)]
    share = habitats.count(world.CONCEPTS[0].habitat) / len(habitats)
    assert 0.65 < share < 0.85


def test_local_part_pairs():
    pairs = world.concept_pairs()
    assert len(pairs) >= 3
    for a, b in pairs:
        assert world.CONCEPTS[a].pair == world.CONCEPTS[b].name


def test_bundled_model_loads_strictly_through_the_adapter():
    from cortex_cli.backends.taming import load_vqgm
    from cortex_cli.models.registry import MINI_CONFIG, MINI_WEIGHTS

    vqgm = load_vqgm(MINI_CONFIG, MINI_WEIGHTS)
    assert (vqgm.grid, vqgm.image_size, vqgm.n_classes) == (16, 64, len(world.CONCEPTS))
    assert vqgm.codebook.dtype == torch.float32


def test_generated_concepts_are_recognised_by_a_judge():
    from cortex_cli.backends.base import SamplerSettings, image_streams
    from cortex_cli.backends.taming import load_vqgm
    from cortex_cli.models.classnames import ClassName
    from cortex_cli.judges.pixel_judges import mini_judges
    from cortex_cli.models.registry import MINI_CONFIG, MINI_WEIGHTS

    vqgm = load_vqgm(MINI_CONFIG, MINI_WEIGHTS)
    sampler = SamplerSettings(**vqgm.config.cortex.sampler)
    n = len(world.CONCEPTS)
    classes = [c for c in range(n) for _ in range(2)]
    concepts = [ClassName(c, world.CONCEPTS[c].name) for c in classes]
    tokens = vqgm.sample(concepts, image_streams(sampler, "mini", concepts, ["train"] * len(classes), list(range(len(classes)))), sampler)
    images = vqgm.decode_tokens(tokens)
    judge = mini_judges()[0]
    accuracy = (judge.probabilities(images).argmax(-1) == torch.tensor(classes)).float().mean().item()
    assert accuracy >= 0.6, f"judge accuracy on generated images {accuracy:.2f} (chance {1 / n:.2f})"


RED = ("red-capped bird", "red mushroom", "red sailboat", "house")


@pytest.mark.parametrize("concept", range(len(world.CONCEPTS)))
def test_red_attribute_mask_is_the_red_concepts_red_pixels(concept):
    name = world.CONCEPTS[concept].name
    for seed in range(3):
        s = world.sample(concept, seed, "loc")
        red = world.attribute_mask(s, "red")
        assert red.shape == s.mask.shape and red.dtype == bool
        if name not in RED:  # the goldfish and sun are orange, the brown mushroom brown: none of theirs is red
            assert not red.any(), name
            continue
        assert red.sum() >= 40 and not (red & ~s.mask).any()
        r, g, b = (s.image[red].astype(float).T)
        redness = (r >= 150) & (g <= 0.35 * r) & (b <= 0.35 * r)
        assert redness.mean() > 0.9, "the mask's pixels are drawn red"
        # and the object's other pixels are not: every red-looking object pixel away from an edge is in the mask
        inner = s.mask & ~red
        ir, ig, ib = (s.image[inner].astype(float).T)
        assert ((ir >= 150) & (ig <= 0.3 * ir) & (ib <= 0.3 * ir)).mean() < 0.05


def test_red_parts_exclude_what_is_drawn_over_them_or_beside_them():
    mushroom = world.sample(world.CONCEPT_INDEX["red mushroom"], 0, "loc")
    red = world.attribute_mask(mushroom, "red")
    assert not (red & ~mushroom.part_mask).any(), "a red mushroom's red is its cap (the stem is white)"
    dots = mushroom.part_mask & ~red  # the cap's white dots
    assert dots.sum() >= 5 and mushroom.image[dots].astype(int).min(axis=-1).mean() > 200
    bird = world.sample(world.CONCEPT_INDEX["red-capped bird"], 0, "loc")
    head = world.attribute_mask(bird, "red")
    beak_and_eye = bird.part_mask & ~head
    assert head.any() and beak_and_eye.sum() >= 5  # the head part holds an orange beak and a black eye, not red
    house = world.sample(world.CONCEPT_INDEX["house"], 0, "loc")
    roof = world.attribute_mask(house, "red")
    assert 0.8 < (roof & house.part_mask).sum() / house.part_mask.sum() <= 1.0  # the roof is the house's red


def test_attribute_masks_are_deterministic_and_named_loosely():
    concept = world.CONCEPT_INDEX["red sailboat"]
    a, b = world.sample(concept, 5, "loc"), world.sample(concept, 5, "loc")
    assert np.array_equal(world.attribute_mask(a, "red"), world.attribute_mask(b, " Red "))
    assert not np.array_equal(world.attribute_mask(a, "red"), world.attribute_mask(world.sample(concept, 6, "loc"), "red"))
    assert world.attribute_named("RED") == "red" and world.attribute_named("shiny") is None
    from cortex_cli.core.errors import CortexError

    with pytest.raises(CortexError, match="'shiny' is not an attribute of the mini world"):
        world.attribute_mask(a, "shiny")
