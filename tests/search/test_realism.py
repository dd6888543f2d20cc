"""realism: the generated prior-NLL range of a class and the adversarial flag, on the bundled mini model."""

import pytest
import torch

from cortex_cli.models import registry as model_registry
from cortex_cli.search import realism
from cortex_cli.models.classnames import ClassName
from cortex_cli.core.errors import CortexError
from cortex_cli.images.generation import ensure_images, image_tokens


@pytest.fixture
def mini(store):
    model_registry.ensure_bundled(store)
    return model_registry.get_model(store, model_registry.MINI_NAME)


def test_generated_range_is_the_nll_of_the_class_train_images(store, mini):
    cls = model_registry.classes(store, mini)[0]
    rng = realism.generated_range(store, mini, cls, n=4)
    ids = ensure_images(store, mini, cls, "train", 4)
    vqgm = model_registry.load_model(mini)
    nll = vqgm.prior_nll(image_tokens(store, mini, ids), [cls] * 4).double()
    assert rng.n == 4 and rng.class_id == cls.class_id
    assert rng.mean == pytest.approx(float(nll.mean()), rel=1e-5)
    assert rng.p5 == pytest.approx(float(torch.quantile(nll, 0.05)), rel=1e-5)
    assert rng.p95 == pytest.approx(float(torch.quantile(nll, 0.95)), rel=1e-5)
    assert rng.p5 <= rng.mean <= rng.p95 <= rng.maximum
    assert rng.threshold == pytest.approx(rng.p95 + realism.MARGIN * (rng.p95 - rng.p5))
    # the model's own samples lie in their range; a uniformly random grid is far outside it
    assert all(realism.flag(float(v), rng) == realism.IN_RANGE for v in nll if v <= rng.p95)
    noise = torch.randint(0, mini.n_embed, (1, mini.grid, mini.grid), generator=torch.Generator().manual_seed(0))
    assert realism.flag(float(vqgm.prior_nll(noise, [cls])[0]), rng) == realism.ADVERSARIAL


def test_flag_uses_the_documented_margin():
    rng = realism.range_of(0, [1.0, 2.0, 3.0, 4.0, 5.0])
    assert (rng.p5, rng.p95) == (pytest.approx(1.2), pytest.approx(4.8))
    assert rng.threshold == pytest.approx(4.8 + realism.MARGIN * 3.6)
    assert realism.flag(rng.maximum, rng) == realism.IN_RANGE
    assert realism.flag(rng.threshold - 1e-6, rng) == realism.IN_RANGE
    assert realism.flag(rng.threshold + 1e-6, rng) == realism.ADVERSARIAL
    with pytest.raises(CortexError, match="no generated images"):
        realism.range_of(0, [])


def test_backends_without_prior_nll_give_none():
    class NoPrior:
        grid = 2

    class Raising:
        grid = 2

        def prior_nll(self, tokens, classes):
            raise CortexError("not available")

    grids = torch.zeros(1, 2, 2, dtype=torch.long)
    assert realism.prior_nll_or_none(NoPrior(), grids, [ClassName(0, "goldfinch")]) is None
    assert realism.prior_nll_or_none(Raising(), grids, [ClassName(0, "goldfinch")]) is None


def test_prior_nll_or_none_hands_the_backend_the_class_objects():
    seen = []

    class Recording:
        grid = 2

        def prior_nll(self, tokens, classes):
            seen.append((tokens.shape, classes))
            return torch.arange(len(classes), dtype=torch.float32)

    classes = [ClassName(3, "analog clock"), ClassName(0, "goldfinch")]
    assert realism.prior_nll_or_none(Recording(), torch.zeros(2, 4, dtype=torch.long), classes) == [0.0, 1.0]
    assert seen == [((2, 2, 2), classes)]


def test_too_small_a_range_is_refused(store, mini):
    with pytest.raises(CortexError, match="at least 2 images"):
        realism.generated_range(store, mini, model_registry.classes(store, mini)[0], n=1)


def test_edit_reports_the_prior_nll_of_its_grids_under_the_target(store, tiny_model, tmp_path, monkeypatch):
    from cortex_cli.search.edit import edit_image
    from cortex_cli.search.regions import parse_region
    from cortex_cli.search.token_selection import OptimizeSettings
    from tests.search.test_edit import register_tiny_ce, tiny_png

    register_tiny_ce(store, tiny_model, tmp_path)
    src = tmp_path / "src" / "bird.png"
    tiny_png(tiny_model, src)
    target = model_registry.resolve_class(store, tiny_model, "water ouzel")
    settings = OptimizeSettings(steps=4, seed=1, init="random")
    result = edit_image(store, tiny_model, src, target, parse_region("4:8,4:8", tiny_model.grid), settings, out_dir=tmp_path / "o")
    vqgm = model_registry.load_model(tiny_model)
    grids = torch.tensor([result.result_tokens, result.source_tokens])
    expected = vqgm.prior_nll(grids, [target] * 2)
    assert result.prior_nll == pytest.approx(float(expected[0]), rel=1e-5)
    assert result.prior_nll_source == pytest.approx(float(expected[1]), rel=1e-5)
    goldfinch = model_registry.resolve_class(store, tiny_model, 0)
    assert result.prior_nll != pytest.approx(float(vqgm.prior_nll(grids[:1], [goldfinch])[0]), rel=1e-6)  # the target's class
    as_json = result.to_dict()
    assert as_json["prior_nll"] == pytest.approx(result.prior_nll) and "prior_nll_source" in as_json

    # a backend without the capability: the fields are None, no error
    monkeypatch.setattr(type(vqgm), "prior_nll", lambda self, t, c: (_ for _ in ()).throw(CortexError("not available")))
    again = edit_image(store, tiny_model, src, target, parse_region("4:8,4:8", tiny_model.grid), settings, out_dir=tmp_path / "o2")
    assert again.prior_nll is None and again.prior_nll_source is None


def test_optimize_reports_the_prior_nll_of_its_best_grid(store, tiny_model, tmp_path):
    from cortex_cli.search.concept_search import search_concept
    from cortex_cli.search.regions import parse_region
    from cortex_cli.search.token_selection import OptimizeSettings
    from tests.search.test_edit import register_tiny_ce

    info = register_tiny_ce(store, tiny_model, tmp_path)
    cls = model_registry.resolve_class(store, tiny_model, 2)
    result = search_concept(store, tiny_model, cls, settings=OptimizeSettings(steps=3, seed=3), extractor_info=info,
                            region=parse_region("0:4,0:4", tiny_model.grid), init="random", restarts=1, out_dir=tmp_path / "out")
    vqgm = model_registry.load_model(tiny_model)
    expected = float(vqgm.prior_nll(torch.tensor([result.tokens]), [cls])[0])
    assert result.prior_nll == pytest.approx(expected, rel=1e-5)
    assert result.prior_nll_source is None  # a random start has no source
    assert result.to_dict()["prior_nll"] == pytest.approx(expected)
