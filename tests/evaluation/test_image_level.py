"""evaluation/image_level.py on the tiny model (real taming decoder, real SQLite, toy judge): masking curves, and
several attribution methods compared on the same images (one curve per extractor and method)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cortex_cli.models import registry as model_registry
from cortex_cli.core.errors import CortexError
from cortex_cli.evaluation.common import latest_variants
from cortex_cli.evaluation.image_level import ImageLevelSettings, auc_comparisons, curve_name, run_image_level
from cortex_cli.evaluation.masking import background_token
from cortex_cli.evaluation.metrics import curve_auc, paired_bootstrap_ci
from cortex_cli.images.generation import image_tokens, list_images

from eval_helpers import toy_judge


def test_image_level_curves_start_at_the_unmasked_probability(store, setup, tmp_path):
    model, names = setup
    judge = toy_judge()
    settings = ImageLevelSettings(images_per_class=2, ns=(5, 40), random_draws=2, classes=names, samples=2, train_images=3)
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
    # insertion starts from the fully black image, the same for every selection, and deletion is Figure 3's curve
    black = judge.probabilities(torch.full_like(images, -1.0)).gather(1, labels[:, None]).mean().item()
    for name in ("ce", "random", "frequency"):
        assert result.curves["toy"][name]["insertion"][0] == pytest.approx(black, abs=1e-5)
    assert result.curves["toy"]["ce"]["deletion"] == pytest.approx(curves["ce"], abs=1e-6)
    assert set(result.auc["toy"]) == {"ce", "random", "frequency"} and set(result.auc_ci["toy"]["ce"]) == {"random", "frequency"}
    assert Path(result.plot_path).stat().st_size > 1000 and json.loads(Path(result.json_path).read_text())["ns"] == [0, 5, 40]
    [stored] = latest_variants(store, model)["image-level"]
    assert stored.result["probability"]["toy"]["ce"] == curves["ce"] and stored.plot_path == result.plot_path
    # the seed drives the random floor (history independence is tests/evaluation/test_reproducible.py)
    other = run_image_level(store, model, settings=replace(settings, seed=1), out_dir=tmp_path / "out2", judges=[judge])
    assert other.probability["toy"]["random"][1:] != curves["random"][1:]


def test_image_level_compares_two_methods_on_the_same_images(store, setup, tmp_path):
    model, names = setup
    judge = toy_judge()
    both = ImageLevelSettings(images_per_class=2, ns=(5, 40), random_draws=1, classes=names, samples=2, train_images=3,
                              methods=("smoothgrad", "gradient-x-input"))
    result = run_image_level(store, model, settings=both, out_dir=tmp_path / "both", judges=[judge])
    curves = result.probability["toy"]
    assert set(curves) == {"ce/smoothgrad", "ce/gradient-x-input", "random"} and result.methods == ["smoothgrad", "gradient-x-input"]
    assert set(result.cortex_beats_random["toy"]) == {"ce/smoothgrad", "ce/gradient-x-input"}
    assert curves["ce/smoothgrad"][0] == curves["ce/gradient-x-input"][0]  # the same unmasked images
    # each method's curve is the one a single-method run gives
    alone = run_image_level(store, model, settings=ImageLevelSettings(images_per_class=2, ns=(5, 40), random_draws=1, classes=names,
                                                                     samples=2, train_images=3), out_dir=tmp_path / "one", judges=[judge])
    assert alone.probability["toy"]["ce"] == curves["ce/smoothgrad"]
    assert alone.probability["toy"]["random"] == curves["random"]


def test_unknown_method_is_refused_before_any_work():
    with pytest.raises(CortexError, match="unknown attribution method 'lime'"):
        ImageLevelSettings(methods=("smoothgrad", "lime")).validate(16)
    assert curve_name("ce", "gradient", ["gradient"]) == "ce"


def test_eval_method_option_takes_a_list_or_all():
    from cortex_cli.attribution import METHODS
    from cortex_cli.cli.eval_cmd import _methods

    assert _methods("smoothgrad, gradient,smoothgrad") == ("smoothgrad", "gradient")
    assert _methods("all") == tuple(METHODS)


def test_insertion_and_deletion_with_the_token_fill(store, setup, tmp_path):
    model, names = setup
    judge = toy_judge()
    settings = ImageLevelSettings(images_per_class=2, ns=(5, 256), random_draws=1, classes=names, samples=2, fill="tokens",
                                  train_images=3, bootstrap=200)
    result = run_image_level(store, model, settings=settings, out_dir=tmp_path / "tok", judges=[judge])
    payload = json.loads(Path(result.json_path).read_text())
    assert payload["fill"] == "tokens" and payload["ns"] == [0, 5, 256] and payload["auc_range"] == [0.0, 1.0]
    assert set(payload["auc"]["toy"]) == {"ce", "random", "frequency"}
    assert all(set(v) == {"deletion", "insertion"} for v in payload["auc"]["toy"].values())
    ci = payload["auc_ci"]["toy"]["ce"]["random"]
    assert ci["insertion"]["low"] <= ci["insertion"]["mean"] <= ci["insertion"]["high"] and ci["insertion_verdict"] in ("win", "loss", "n.s.")
    test = list_images(store, model, None, "test")
    tokens = image_tokens(store, model, [i for i, _, _ in test])
    labels = torch.tensor([c for _, c, _ in test])
    vqgm = model_registry.load_model(model)

    def p_true(grids):
        return judge.probabilities(vqgm.decode_tokens(grids)).gather(1, labels[:, None]).mean().item()

    original = p_true(tokens)
    # n = 0: insertion judges the fully filled grid (every position the test set's background token), deletion the original;
    # n = m^2: insertion has put every token back (the original), deletion has refilled everything
    filled = p_true(torch.full_like(tokens, background_token(tokens)))
    for name in ("ce", "random", "frequency"):
        curve = result.curves["toy"][name]
        assert curve["insertion"][0] == pytest.approx(filled, abs=1e-5) and curve["insertion"][-1] == pytest.approx(original, abs=1e-5)
        assert curve["deletion"][0] == pytest.approx(original, abs=1e-5) and curve["deletion"][-1] == pytest.approx(filled, abs=1e-5)
        for kind in ("deletion", "insertion"):  # the AUC is the trapezoid over n / m^2 (here the whole range)
            assert result.auc["toy"][name][kind] == pytest.approx(curve_auc([0, 5 / 256, 1], curve[kind]).item(), abs=1e-6)
    assert result.probability["toy"]["ce"] == pytest.approx(result.curves["toy"]["ce"]["deletion"], abs=1e-6)


def test_auc_intervals_are_paired_over_images_and_deterministic_for_a_seed():
    gen = torch.Generator().manual_seed(0)
    per_image = {name: {kind: torch.rand(12, generator=gen, dtype=torch.float64) for kind in ("deletion", "insertion")}
                 for name in ("ce", "random", "frequency")}
    per_image["ce"]["insertion"] = per_image["random"]["insertion"] + 0.2  # planted: CE inserts better on every image
    found = auc_comparisons(per_image, ["ce"], seed=5, resamples=300)
    assert found == auc_comparisons(per_image, ["ce"], seed=5, resamples=300)
    ins = found["ce"]["random"].insertion
    assert ins.mean == pytest.approx(0.2) and ins.low == pytest.approx(0.2) and found["ce"]["random"].insertion_verdict == "win"
    expected = paired_bootstrap_ci(per_image["ce"]["deletion"], per_image["frequency"]["deletion"], seed=5, resamples=300)
    assert found["ce"]["frequency"].deletion == expected
    assert auc_comparisons(per_image, ["ce"], seed=6, resamples=300)["ce"]["frequency"].deletion != expected


def test_unknown_fill_is_refused_with_the_choices():
    with pytest.raises(CortexError, match="black, mean, blur, tokens"):
        ImageLevelSettings(fill="purple").validate(16)
