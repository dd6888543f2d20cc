"""Pieces of the ground-truth localization evaluation."""

from __future__ import annotations

import pytest
import torch

from cortex_cli.evaluation.localization import frequency_ranking, unit_images
from cortex_cli.evaluation.metrics import mean, patches_inside, precision_at_n, random_floor
from cortex_cli.models.registry import ClassInfo


def test_frequency_ranking_orders_positions_by_class_frequency():
    tokens = torch.tensor([[5, 1], [5, 7]])
    counts = torch.zeros(8)
    counts[5], counts[7], counts[1] = 10, 3, 0
    ranking = frequency_ranking(tokens, counts, torch.Generator().manual_seed(0))
    assert sorted(ranking[:2].tolist()) == [0, 2]  # both token-5 positions first (tie order is seeded)
    assert ranking[2:].tolist() == [3, 1]
    again = frequency_ranking(tokens, counts, torch.Generator().manual_seed(0))
    assert torch.equal(ranking, again)


def test_unit_images_carry_their_masks():
    classes = [ClassInfo(1, 0, "red-capped bird", ()), ClassInfo(2, 9, "sun", ())]
    found = unit_images(classes, 2, seed=0)
    images, labels, masks = found.images, found.labels, found.masks
    assert images.shape == (4, 3, 64, 64) and labels.tolist() == [0, 0, 9, 9] and found.units == [0, 0, 1, 1]
    assert images.min() >= -1 and images.max() <= 1
    inside = patches_inside(masks[0], 16)
    assert 0 < inside.sum() < 256
    # a ranking that lists the object's patches first is perfectly precise
    ranking = torch.sort(inside.reshape(-1).float(), descending=True, stable=True).indices
    assert precision_at_n(ranking, inside, int(inside.sum())) == 1.0


def test_unit_targets_read_a_concept_off_a_class_extractor_and_keep_concept_extractors_to_their_own():
    from types import SimpleNamespace

    from cortex_cli.models.concepts import ConceptInfo
    from cortex_cli.evaluation.localization import unit_targets
    from cortex_cli.models.targets import BINARY, Target

    members = [ClassInfo(1, 0, "red-capped bird", ()), ClassInfo(5, 4, "red mushroom", ())]
    red = ConceptInfo(1, "mini", "red", "classes", members)
    house = ClassInfo(11, 10, "house", ())
    ce = SimpleNamespace(name="ce", config=SimpleNamespace())
    assert unit_targets(ce, [red, house], "log-prob") == [Target("log-prob", (0, 4)), Target()]
    own = SimpleNamespace(name="red-vs-rest", config=SimpleNamespace(concept="Red"))
    assert unit_targets(own, [red], "logsumexp") == [Target(BINARY)]
    assert unit_targets(own, [red, house], "logsumexp") is None  # it has no class logit
    other = SimpleNamespace(name="blue-vs-rest", config=SimpleNamespace(concept="blue"))
    assert unit_targets(other, [red], "logsumexp") is None


@pytest.fixture
def mini(store):
    from cortex_cli.models import concepts, registry as model_registry

    model_registry.ensure_bundled(store)
    model = model_registry.get_model(store, "mini")
    members = [model_registry.resolve_class(store, model, n) for n in ("red-capped bird", "red mushroom", "red sailboat", "house")]
    concepts.add_concept(store, model, "red", classes=members)
    concepts.add_concept(store, model, "roofed", classes=members[3:])  # one member, not an attribute: the house's logit, objects
    return store, model


def _settings(**kw):
    from cortex_cli.evaluation.localization import LocalizationSettings

    return LocalizationSettings(**{"images_per_class": 1, "ns": (1, 5, 20), "random_draws": 2, "samples": 2, "train_images": 1} | kw)


def test_a_concept_is_one_unit_scored_on_its_attribute_and_a_class_as_before(mini, tmp_path):
    from cortex_cli.models import registry as model_registry
    from cortex_cli.attribution import SaliencySettings
    from cortex_cli.evaluation import common
    from cortex_cli.evaluation.localization import LocalizationSettings, run_localization
    from cortex_cli.evaluation.metrics import ranked_positions
    from cortex_cli.extractors.registry import get_extractor, load_extractor
    from cortex_cli.miniworld import world
    from cortex_cli.core.seeding import derive_seed
    from cortex_cli.models.targets import DEFAULT_RULE

    store, model = mini
    assert LocalizationSettings().score == DEFAULT_RULE
    run = lambda **kw: run_localization(store, model, extractors="ce", settings=_settings(**kw), out_dir=tmp_path).to_dict()
    units = ("red", "sun", "roofed", "house")
    summed = run(classes=units, score="logsumexp")
    assert summed["ground_truth"] == {"red": "attribute:red", "sun": "object", "roofed": "object", "house": "object"}
    assert summed["n_images"] == 4 + 1 + 1 + 1  # one image of each of red's four members, then one of each other unit
    assert summed["settings"]["score"] == "logsumexp"
    for method in ("ce", "frequency", "specific", "random"):
        assert set(summed["methods"][method]["per_class_precision"]) == set(units)
    # the truth is the red pixels for red (a small share of the positions: the random floor's expectation), objects else
    red_share = [random_floor(patches_inside(torch.from_numpy(world.attribute_mask(world.sample(c, 0, "loc"), "red")), 16))
                 for c in (0, 4, 7, 10)]
    other_share = [random_floor(patches_inside(torch.from_numpy(world.sample(c, 0, "loc").mask), 16)) for c in (9, 10, 10)]
    assert summed["object_share"] == pytest.approx(mean(red_share + other_share), abs=1e-6)
    # the concept's score is what CORTEX explains: log P(red | E) ranks red's images' positions otherwise
    prob = run(classes=units, score="log-prob")
    per, per_prob = summed["methods"]["ce"]["per_class_precision"], prob["methods"]["ce"]["per_class_precision"]
    assert prob["methods"]["ce"]["precision"] != summed["methods"]["ce"]["precision"]
    assert {u: per_prob[u] for u in units[1:]} == {u: per[u] for u in units[1:]}  # classes keep their own logit
    for baseline in ("frequency", "specific", "random"):  # no extractor: the score does not matter
        assert prob["methods"][baseline] == summed["methods"][baseline]
    # a one-member concept that is no attribute: its member's object masks and logit, so the house's own numbers
    assert per["roofed"] == per["house"]
    # a plain class is evaluated as before: its own logit on its object mask (the reference path, recomputed here)
    vqgm = model_registry.load_model(model, "cpu")
    sun = unit_images([model_registry.resolve_class(store, model, "sun")], 1, seed=0)
    images, labels, masks = sun.images, sun.labels, sun.masks
    net = load_extractor(get_extractor(store, model, "ce"), "cpu")
    tsv = common.saliency_of(net, vqgm, vqgm.encode_images(images), labels.tolist(), [derive_seed("localization", 9, 0)],
                             SaliencySettings(samples=2, seed=0))
    assert per["sun"] == precision_at_n(ranked_positions(tsv[0]), patches_inside(masks[0], 16), 5)


def test_bad_concept_evaluations_are_one_line_errors(mini, tmp_path):
    from cortex_cli.core.errors import CortexError
    from cortex_cli.evaluation.localization import run_localization

    store, model = mini
    with pytest.raises(CortexError, match="--score must be one of logsumexp, log-prob, got 'prob'"):
        run_localization(store, model, extractors="ce", settings=_settings(classes=("red",), score="prob"), out_dir=tmp_path)
    with pytest.raises(CortexError, match="did you mean"):
        run_localization(store, model, extractors="ce", settings=_settings(classes=("red mushrom",)), out_dir=tmp_path)
