"""`cortex eval image-level` compares attribution methods on the same images: one curve per extractor and method."""

from __future__ import annotations

import pytest

from cortex_cli.errors import CortexError
from cortex_cli.evaluation.image_level import ImageLevelSettings, curve_name, run_image_level

from eval_helpers import toy_judge
from tests.evaluation.test_runs import setup  # noqa: F401  (a fixture: the tiny model, a ce extractor, test images)


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
