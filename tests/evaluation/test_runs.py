"""The evaluation runs end to end on the tiny model (real taming decoder, real SQLite, toy judge)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cortex_cli import model_registry
from cortex_cli.evaluation.common import latest_evaluations
from cortex_cli.evaluation.concept_level import ConceptLevelSettings, cut_positions, positions_of, run_concept_level
from cortex_cli.evaluation.image_level import ImageLevelSettings, run_image_level
from cortex_cli.evaluation.stability import StabilitySettings, noise_seed, run_stability
from cortex_cli.generation import image_tokens, list_images

from eval_helpers import register_small_extractor, toy_judge
from index_helpers import store_random_images


@pytest.fixture
def setup(store, tiny_model, tmp_path):
    register_small_extractor(store, tiny_model, tmp_path, "ce", "ce")
    classes = model_registry.classes(store, tiny_model)[:2]
    for cls in classes:
        store_random_images(store, tiny_model, cls, 2, split="test", vocab=40)
    for cls in model_registry.classes(store, tiny_model):  # the specific baseline compares every class
        store_random_images(store, tiny_model, cls, 3, split="train", vocab=40)
    return tiny_model, tuple(c.name for c in classes)


def test_image_level_curves_start_at_the_unmasked_probability(store, setup, tmp_path):
    model, names = setup
    judge = toy_judge()
    settings = ImageLevelSettings(images_per_class=2, ns=(5, 40), random_draws=2, classes=names, samples=2)
    result = run_image_level(store, model, settings=settings, out_dir=tmp_path / "out", judges=[judge])
    assert result.ns == [0, 5, 40] and result.n_images == 4
    curves = result.probability["toy"]
    assert set(curves) == {"ce", "random"}
    # n = 0 masks nothing: every selection starts at the judge's probability of the clean images
    ids = [i for i, _, _ in list_images(store, model, None, "test")]
    images = model_registry.load_model(model).decode_tokens(image_tokens(store, model, ids))
    labels = torch.tensor([c for _, c, _ in list_images(store, model, None, "test")])
    p0 = judge.probabilities(images).gather(1, labels[:, None]).mean().item()
    assert curves["ce"][0] == pytest.approx(p0, abs=1e-5) and curves["random"][0] == pytest.approx(p0, abs=1e-5)
    assert curves["ce"][1] != curves["ce"][2]  # masking 40 of 256 patches black moves a mean-colour judge
    assert Path(result.plot_path).stat().st_size > 1000 and json.loads(Path(result.json_path).read_text())["ns"] == [0, 5, 40]
    stored = latest_evaluations(store, model)["image-level"]
    assert stored.result["probability"]["toy"]["ce"] == curves["ce"] and stored.plot_path == result.plot_path
    # the seed drives the random floor (history independence is tests/evaluation/test_reproducible.py)
    from dataclasses import replace

    other = run_image_level(store, model, settings=replace(settings, seed=1), out_dir=tmp_path / "out2", judges=[judge])
    assert other.probability["toy"]["random"][1:] != curves["random"][1:]


def test_concept_level_masks_exactly_the_set_tokens(store, setup, tmp_path):
    model, names = setup
    settings = ConceptLevelSettings(k=5, top_n=4, train_images=3, images_per_class=2, classes=names, samples=2)
    result = run_concept_level(store, model, settings=settings, out_dir=tmp_path, judges=[toy_judge()])
    assert result.methods == ["ce", "baseline", "specific", "baseline@ce"]
    cells = result.table["toy"]
    test = list_images(store, model, None, "test")
    tokens = image_tokens(store, model, [i for i, _, _ in test])
    by_id = {c.class_id: c.name for c in model_registry.classes(store, model)}
    expected_n = [len(positions_of(t, result.concept_tokens["ce"][by_id[c]])) for t, (_, c, _) in zip(tokens, test)]
    assert cells["ce"].mean_n == pytest.approx(sum(expected_n) / len(expected_n))
    assert cells["baseline@ce"].mean_n <= cells["ce"].mean_n + 1e-9
    assert all(len(v) == 5 for v in result.concept_tokens["baseline"].values())
    for e in cells.values():  # before-numbers are shared, deltas are after - before
        assert e.acc == cells["ce"].acc and e.delta_p == pytest.approx(e.p_after - e.p)


def test_positions_and_cut_positions():
    grid = torch.tensor([[3, 1], [3, 2]])
    assert positions_of(grid, [3]) == [0, 2]
    assert cut_positions(grid, [2, 3], 2) == [3, 0]  # token 2 ranks first, then the first 3 in raster order
    assert cut_positions(grid, [9], 3) == []


def test_stability_same_seed_same_map(store, setup, tmp_path, monkeypatch):
    from cortex_cli.evaluation import common

    model, names = setup
    settings = StabilitySettings(images_per_class=1, seeds=(0, 1), sample_counts=(2, 4), ns=(5,), default_samples=2, classes=names)
    maps: list[dict] = []
    real = common.saliency_of

    def recorded(net, vqgm, tokens, labels, keys, s, **kwargs):
        out = real(net, vqgm, tokens, labels, keys, s, **kwargs)
        maps[-1][(s.samples, s.seed, s.precision)] = out.clone()
        return out

    monkeypatch.setattr(common, "saliency_of", recorded)
    for _ in range(2):  # the same evaluation twice: every (N, seed) map again, bit for bit
        maps.append({})
        result = run_stability(store, model, settings=settings, out_dir=tmp_path)
    first, second = maps
    assert first.keys() == second.keys() and len(first) >= 4
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first[(2, noise_seed(2, 0), "fp32")], first[(2, noise_seed(2, 1), "fp32")])  # another seed, another map
    st = result.extractors["ce"]
    # every (N, seed) map has its own noise: N=2's copies are not the first two of N=4's
    from cortex_cli.attribution import seeded_noise

    small, large = seeded_noise((2, 3, 3), [7], noise_seed(2, 0), 2), seeded_noise((2, 3, 3), [7], noise_seed(4, 0), 4)
    assert not torch.allclose(small, large[:, :2])
    assert set(st.vs_largest_n) == {"2", "4"} and set(st.rank_gap) == {"5"} and st.rank_gap["5"] >= 0
    for cells in st.across_seeds.values():
        assert 0.0 <= cells["5"] <= 1.0
    assert 0.0 <= st.fp32_vs_bf16["5"] <= 1.0
    assert Path(result.plot_path).is_file()
