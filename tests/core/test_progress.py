"""One progress shape: library functions call `progress(done, total, info)`; `report` hides no errors."""

from __future__ import annotations

import pytest
import torch

from cortex_cli.models import registry as model_registry
from cortex_cli.extractors.accuracy import load_split
from cortex_cli.search.token_selection import OptimizeSettings, optimize_tokens
from cortex_cli.core.progress import named, report


class Strict:
    """A callback with exactly the protocol's parameters (no defaults, no **kwargs)."""

    def __init__(self):
        self.calls: list[tuple[int, int, str]] = []

    def __call__(self, done, total, info):
        self.calls.append((done, total, info))


def assert_well_formed(calls: list[tuple[int, int, str]]) -> None:
    assert calls, "the function reported no progress"
    for done, total, info in calls:
        assert isinstance(done, int) and isinstance(total, int) and isinstance(info, str)
        assert 0 <= done <= total
    assert calls[-1][0] == calls[-1][1]  # it ends at 100%


def toy_search():
    """(extractor, codebook, source tokens, region mask) of a 4x4 grid over a 16-entry codebook."""
    gen = torch.Generator().manual_seed(0)
    codebook = torch.randn(16, 4, generator=gen)
    extractor = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 3))
    source = torch.randint(0, 16, (4, 4), generator=gen)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1:3, 1:3] = True
    return extractor, codebook, source, mask


def test_optimize_tokens_reports_every_call_in_the_protocol_shape():
    cb = Strict()
    optimize_tokens(*toy_search(), 2, OptimizeSettings(steps=5), progress=cb)
    assert_well_formed(cb.calls)
    assert [done for done, _, _ in cb.calls] == [1, 2, 3, 4, 5]


def test_load_split_reports_generation_in_the_protocol_shape(store, tiny_model):
    cb = Strict()
    data = load_split(store, tiny_model, "val", 1, progress=cb)
    assert_well_formed(cb.calls)
    n_classes = len(model_registry.classes(store, tiny_model))
    assert len(data) == n_classes and cb.calls[-1][:2] == (n_classes, n_classes)
    assert all(info.startswith("val images: ") for _, _, info in cb.calls)


def test_report_without_a_callback_does_nothing():
    assert report(None, 1, 2, "info") is None


def test_report_passes_errors_of_the_callback_through():
    def broken(done, total, info):
        raise TypeError("a bug inside the callback")

    with pytest.raises(TypeError, match="a bug inside the callback"):
        report(broken, 1, 2)
    with pytest.raises(TypeError, match="a bug inside the callback"):
        optimize_tokens(*toy_search(), 2, OptimizeSettings(steps=2), progress=broken)


def test_report_rejects_a_callback_of_the_old_two_argument_shape():
    with pytest.raises(TypeError):
        report(lambda done, total: None, 1, 2)


def test_named_leads_the_note_with_its_name_and_keeps_none():
    calls = []
    update = named(lambda done, total, info="": calls.append((done, total, info)), "saliency")
    update(1, 4, "goldfinch")
    update(2, 4)
    assert calls == [(1, 4, "saliency: goldfinch"), (2, 4, "saliency")]
    assert named(None, "saliency") is None
