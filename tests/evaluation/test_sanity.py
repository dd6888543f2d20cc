"""The sanity checks (Adebayo et al. 2018): layers, their randomisation, the metrics, a tiny end-to-end run on mini."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from cortex_cli.evaluation.metrics import top_n_overlap
from cortex_cli.cli import app
from cortex_cli.evaluation.sanity import SanitySettings, average_ranks, layers_of, random_pairs, randomised, run_sanity, spearman, train_permuted


@pytest.fixture
def mini(store):
    from cortex_cli.models import registry as model_registry
    from cortex_cli.extractors.registry import ensure_bundled_extractors

    model_registry.ensure_bundled(store)
    ensure_bundled_extractors(store)
    return store, model_registry.get_model(store, "mini")


def _net(mini, name: str):
    from cortex_cli.extractors.registry import get_extractor, load_extractor

    store, model = mini
    info = get_extractor(store, model, name)
    return info, load_extractor(info, "cpu")


def _parametrised(net: nn.Module) -> list[str]:
    return [n for n, m in net.named_modules() if any(True for _ in m.parameters(recurse=False))]


def test_layers_run_output_to_input_with_each_batch_norm_beside_its_weights(mini):
    _, ce = _net(mini, "ce")
    layers = layers_of(ce)
    assert layers[0] == ["classifier.8"]  # the output layer first
    assert layers[1] == ["classifier.5", "classifier.6"] and layers[2] == ["classifier.1", "classifier.2"]
    assert layers[-1] == ["features.0", "features.1"]  # the first conv and its batch norm last
    assert len(layers) == 3 + 8  # CE: 3 linear + 8 conv layers
    assert sorted(n for layer in layers for n in layer) == sorted(_parametrised(ce))  # every module once
    _, re = _net(mini, "re")
    layers = layers_of(re)
    assert layers[0] == ["head.4"] and layers[1] == ["head.0", "head.1"] and layers[-1] == ["stem.0", "stem.1"]
    assert ["layer2.2.se.fc.2"] in layers and ["layer2.2.body.3", "layer2.2.body.4"] in layers  # SE linears stand alone
    assert sorted(n for layer in layers for n in layer) == sorted(_parametrised(re))


def test_randomising_changes_exactly_that_layer_and_never_the_stored_extractor(mini):
    from cortex_cli.extractors.registry import file_sha256

    info, ce = _net(mini, "ce")
    before = {k: v.clone() for k, v in ce.state_dict().items()}
    layer = layers_of(ce)[1]  # a linear and its batch norm
    variant = randomised(ce, [layer], seed=0)
    after = variant.state_dict()
    for key, value in before.items():
        module = key.rsplit(".", 1)[0]
        if module in layer and not key.endswith("num_batches_tracked"):
            assert not torch.equal(after[key], value), key
        elif module not in layer:
            assert torch.equal(after[key], value), key
    assert torch.equal(after["classifier.6.weight"], torch.ones_like(after["classifier.6.weight"]))  # BN's own reset
    assert all(torch.equal(ce.state_dict()[k], v) for k, v in before.items())  # the loaded network is untouched
    assert file_sha256(info.ckpt_path) == info.ckpt_sha256  # and so are the stored weights
    # the stream is keyed by (layer, seed): same seed same weights, another seed others, one layer at a time = all at once
    assert torch.equal(randomised(ce, [layer], seed=0).state_dict()["classifier.5.weight"], after["classifier.5.weight"])
    assert not torch.equal(randomised(ce, [layer], seed=1).state_dict()["classifier.5.weight"], after["classifier.5.weight"])
    first, second = layers_of(ce)[:2]
    stepwise = randomised(randomised(ce, [first], 0), [second], 0).state_dict()
    assert all(torch.equal(stepwise[k], v) for k, v in randomised(ce, [first, second], 0).state_dict().items())


def test_metrics_on_known_maps():
    x = torch.arange(256.0).reshape(16, 16)
    assert spearman(x, x) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert spearman(x, x ** 3) == pytest.approx(1.0)  # ranks only
    assert average_ranks(torch.tensor([3.0, 1.0, 2.0, 2.0])).tolist() == [4.0, 1.0, 2.5, 2.5]
    assert spearman(torch.tensor([1.0, 2.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0, 4.0])) == pytest.approx(0.9486833, abs=1e-6)
    assert top_n_overlap(x, x, 20) == 1.0 and top_n_overlap(x, -x, 20) == 0.0
    overlap, rho = random_pairs(list(range(20)), 256, seed=0, draws=10)
    assert overlap == pytest.approx(20 / 256, abs=0.03) and abs(rho) < 0.05  # the floor: unrelated rankings
    assert random_pairs(list(range(20)), 256, seed=0, draws=10) == (overlap, rho)


def test_the_label_permuted_extractor_is_cached_and_retrains_to_the_same_weights(mini, cortex_home):
    import shutil

    from cortex_cli.models import registry as model_registry
    from cortex_cli.extractors.registry import get_extractor, list_extractors

    store, model = mini
    info = get_extractor(store, model, "ce")
    vqgm = model_registry.load_model(model, "cpu")
    settings = SanitySettings(permuted_per_class=2, permuted_epochs=1)
    net, training = train_permuted(store, model, info, settings, vqgm)
    assert training["n_train"] == 2 * 13 and training["epochs"] == 1
    cached = cortex_home / "extractors" / "mini" / "ce-permuted-0"
    assert (cached / "weights.safetensors").is_file()
    again, _ = train_permuted(store, model, info, settings, vqgm)  # read back
    shutil.rmtree(cached)
    fresh, _ = train_permuted(store, model, info, settings, vqgm)  # trained again from nothing
    for k, v in net.state_dict().items():
        assert torch.equal(again.state_dict()[k], v) and torch.equal(fresh.state_dict()[k], v), k
    assert [i.name for i in list_extractors(store, model)] == ["ce", "re"]  # not registered: no 'all' sees it


def test_a_tiny_run_has_the_issues_keys_and_randomised_maps_leave_the_trained_ones(mini, tmp_path):
    from cortex_cli.evaluation.report import tables_for, write_report

    store, model = mini
    settings = SanitySettings(images_per_class=1, samples=2, random_draws=2, permuted_per_class=2, permuted_epochs=1,
                              classes=("sun", "house"))
    result = run_sanity(store, model, extractors="ce", settings=settings, out_dir=tmp_path)
    data = result.to_dict()
    assert {"cascade", "label_permuted", "random_floor"} <= set(data)
    step_keys = {"layers", "spearman", "top20_overlap", "precision_at_5"}
    assert all(set(step) == step_keys for step in data["cascade"] + data["independent"]) and set(data["label_permuted"]) == step_keys
    assert "top20_overlap" in data["random_floor"] and data["random_floor"]["expected_top20_overlap"] == 20 / 256
    layers = data["layers"]
    assert len(data["cascade"]) == len(data["independent"]) == len(layers) == 11 and data["n_images"] == 2
    assert data["cascade"][0]["layers"] == layers[0] and data["cascade"][-1]["layers"] == [n for layer in layers for n in layer]
    assert [s["layers"] for s in data["independent"]] == layers
    assert data["cascade"][-1]["top20_overlap"] < 1.0  # below the trained maps' overlap with themselves
    assert data["independent"][-1]["spearman"] < 1.0
    assert set(data["checks"]) == {"cascade_overlap", "cascade_precision", "permuted_overlap", "permuted_precision"}
    assert data["passed"] == all(data["checks"].values())
    assert (tmp_path / "sanity.json").is_file() and (tmp_path / "sanity.png").stat().st_size > 1000
    spec = tables_for("sanity", data)[0]
    assert spec.rows[0][:4] == ["CE trained", "none", "1.000", "1.000"] and spec.rows[-1][0] == "random floor"
    assert ("PASSED" if data["passed"] else "FAILED") in spec.title
    report = write_report(store, model, tmp_path / "report.md")
    assert "sanity" in report.kinds and "Sanity checks" in (tmp_path / "report.md").read_text()


def test_cli_refuses_a_bad_permuted_source_in_one_line():
    res = CliRunner().invoke(app, ["eval", "sanity", "--permuted-source", "pixels", "--classes", "sun"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.output.strip() == "error: --permuted-source must be one of world, generated, got 'pixels'"
