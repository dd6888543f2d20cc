"""attribution/methods.py and settings.py: methods by name, one signature, settings' fields listed once."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch

from attribution_helpers import LinearExtractor, embeddings
from cortex_cli.attribution import METHODS, SaliencySettings, attribute, key_fields, method_named
from cortex_cli.errors import CortexError


def test_the_four_methods_share_one_signature():
    assert list(METHODS) == ["smoothgrad", "gradient", "gradient-x-input", "integrated-gradients"]
    net, e = LinearExtractor(), embeddings()
    for name in METHODS:
        if name == "integrated-gradients":
            pytest.importorskip("captum")
        got = attribute(net, e, [0, 1], [3, 4], SaliencySettings(method=name, samples=2, steps=4))
        assert got.shape == e.shape and got.dtype == torch.float32, name


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(CortexError, match="unknown attribution method 'occlusion'; use one of smoothgrad, gradient, gradient-x-input, integrated-gradients"):
        SaliencySettings(method="occlusion").validate()
    with pytest.raises(CortexError):
        method_named("")


def test_run_key_is_every_key_field_and_the_default_is_todays_smoothgrad():
    assert key_fields() == tuple(f.name for f in fields(SaliencySettings) if f.name != "chunk")
    key = SaliencySettings(chunk=7).run_key()
    assert key == {"samples": 20, "alpha": 0.2, "top_n": 20, "reduce": "max-abs", "precision": "fp32", "seed": 0,
                   "method": "smoothgrad", "steps": 0, "baseline": "none"}
    # smoothgrad ignores IG's parameters, so they do not split its runs
    assert SaliencySettings(steps=9, baseline="codebook-mean").run_key() == key
    assert SaliencySettings(method="gradient").run_key() != SaliencySettings(method="gradient-x-input").run_key()


def test_every_field_has_cli_help():
    assert all(f.metadata.get("help") for f in fields(SaliencySettings))


def test_the_store_run_key_has_the_settings_key_fields():
    from cortex_cli.store.index import KEY_COLUMNS

    assert KEY_COLUMNS == ("extractor_id", *key_fields())
