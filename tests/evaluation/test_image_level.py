"""evaluation/image_level.py on the tiny model (real taming decoder, real SQLite, toy judge): masking curves, and
several attribution methods compared on the same images (one curve per extractor and method)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cortex_cli import model_registry
from cortex_cli.errors import CortexError
from cortex_cli.evaluation.common import latest_evaluations
from cortex_cli.evaluation.image_level import ImageLevelSettings, curve_name, run_image_level
from cortex_cli.generation import image_tokens, list_images

from eval_helpers import toy_judge


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
    other = run_image_level(store, model, settings=replace(settings, seed=1), out_dir=tmp_path / "out2", judges=[judge])
    assert other.probability["toy"]["random"][1:] != curves["random"][1:]


def test_image_level_compares_two_methods_on_the_same_images(store, setup, tmp_path):
    model, names = setup
    judge = toy_judge()
    both = ImageLevelSettings(images_per_class=2, ns=(5, 40), random_draws=1, classes=names, samples=2,
                              methods=("smoothgrad", "gradient-x-input"))
    result = run_image_level(store, model, settings=both, out_dir=tmp_path / "both", judges=[judge])
    curves = result.probability["toy"]
    assert set(curves) == {"ce/smoothgrad", "ce/gradient-x-input", "random"} and result.methods == ["smoothgrad", "gradient-x-input"]
    assert set(result.cortex_beats_random["toy"]) == {"ce/smoothgrad", "ce/gradient-x-input"}
    assert curves["ce/smoothgrad"][0] == curves["ce/gradient-x-input"][0]  # the same unmasked images
    # each method's curve is the one a single-method run gives
    alone = run_image_level(store, model, settings=ImageLevelSettings(images_per_class=2, ns=(5, 40), random_draws=1, classes=names,
                                                                     samples=2), out_dir=tmp_path / "one", judges=[judge])
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
