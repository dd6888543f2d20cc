"""attribution/methods.py: one signature, token_saliency's maps (closed forms and invariances)."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch

from attribution_helpers import LinearExtractor, OnePosition, SmallCNN, embeddings, freeze
from cortex_cli.attribution import METHODS, SaliencySettings, attribute, key_fields, token_saliency, top_positions


def test_the_four_methods_share_one_signature():
    assert list(METHODS) == ["smoothgrad", "gradient", "gradient-x-input", "integrated-gradients"]
    net, e = LinearExtractor(), embeddings()
    for name in METHODS:
        if name == "integrated-gradients":
            pytest.importorskip("captum")
        got = attribute(net, e, [0, 1], [3, 4], SaliencySettings(method=name, samples=2, steps=4))
        assert got.shape == e.shape and got.dtype == torch.float32, name


def test_run_key_is_every_key_field_and_the_default_is_todays_smoothgrad():
    assert key_fields() == tuple(f.name for f in fields(SaliencySettings) if f.name != "chunk")
    key = SaliencySettings(chunk=7).run_key()
    assert key == {"samples": 20, "alpha": 0.2, "top_n": 20, "reduce": "max-abs", "precision": "fp32", "seed": 0,
                   "method": "smoothgrad", "steps": 0, "baseline": "none", "noise": "philox"}
    # smoothgrad ignores IG's parameters, so they do not split its runs
    assert SaliencySettings(steps=9, baseline="codebook-mean").run_key() == key
    assert SaliencySettings(method="gradient").run_key() != SaliencySettings(method="gradient-x-input").run_key()


def test_every_field_has_cli_help():
    assert all(f.metadata.get("help") for f in fields(SaliencySettings))


def test_the_store_run_key_has_the_settings_key_fields():
    from cortex_cli.store.index import KEY_COLUMNS

    assert KEY_COLUMNS == ("extractor_id", *key_fields(), "target")  # and what the run explains (targets.py)


def test_linear_extractor_tsv_is_max_abs_weight():
    d, m = 3, 4
    ext = freeze(LinearExtractor(d, m, classes=5))
    e = torch.randn(2, d, m, m)
    tsv = token_saliency(ext, e, targets=[1, 4], keys=[10, 11], settings=SaliencySettings(samples=5, alpha=0.3))
    w = ext.linear.weight.view(5, d, m, m)
    expected = torch.stack([w[1].abs().amax(0), w[4].abs().amax(0)])
    assert tsv.shape == (2, m, m)
    torch.testing.assert_close(tsv, expected, rtol=1e-5, atol=1e-6)
    signed = token_saliency(ext, e, [1, 4], [10, 11], SaliencySettings(samples=3, reduce="signed-max"))
    torch.testing.assert_close(signed, torch.stack([w[1].amax(0), w[4].amax(0)]), rtol=1e-5, atol=1e-6)
    mean = token_saliency(ext, e, [1, 4], [10, 11], SaliencySettings(samples=3, reduce="mean"))
    torch.testing.assert_close(mean, torch.stack([w[1].abs().mean(0), w[4].abs().mean(0)]), rtol=1e-5, atol=1e-6)


def test_batch_size_and_order_do_not_change_results():
    ext = freeze(SmallCNN(d=4))
    e = torch.randn(7, 4, 6, 6)
    targets, keys = [0, 1, 2, 3, 0, 1, 2], [100, 101, 102, 103, 104, 105, 106]
    s = SaliencySettings(samples=6, chunk=16)
    together = token_saliency(ext, e, targets, keys, s)
    alone = torch.cat([token_saliency(ext, e[i:i + 1], targets[i:i + 1], keys[i:i + 1], SaliencySettings(samples=6, chunk=6)) for i in range(7)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-7)
    perm = [6, 2, 0, 5, 1, 3, 4]
    shuffled = token_saliency(ext, e[perm], [targets[i] for i in perm], [keys[i] for i in perm], s)
    torch.testing.assert_close(shuffled, together[perm], rtol=1e-5, atol=1e-7)
    for i in range(7):
        assert [p for p, _ in top_positions(together[i], 5)] == [p for p, _ in top_positions(alone[i], 5)]
    # a different seed draws different noise, hence a (slightly) different map
    assert not torch.equal(token_saliency(ext, e, targets, keys, SaliencySettings(samples=6, seed=1)), together)


def test_one_position_extractor_puts_that_position_first():
    d, m = 5, 8
    ext = freeze(OnePosition(d, r=3, c=6))
    e = torch.randn(4, d, m, m)
    tsv = token_saliency(ext, e, [0, 1, 2, 0], [1, 2, 3, 4], SaliencySettings(samples=8))
    for i in range(4):
        top = top_positions(tsv[i], 3)
        assert top[0][0] == 3 * m + 6
        assert top[0][1] > 0 and top[1][1] == 0.0
