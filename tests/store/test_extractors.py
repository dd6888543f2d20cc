"""store/extractors.py: one extractor row per (model, name), overwritten in place by a new registration (both backends)."""

from __future__ import annotations

import pytest

from cortex_cli.store.extractors import model_extractors, upsert_extractor

from store_rows import add_model

pytestmark = pytest.mark.both_backends


def _register(store, model_id, name, arch="ce", sha="0"):
    return upsert_extractor(store, model_id, name, arch=arch, hparams='{"config": {}}', ckpt_path=f"/x/{name}.safetensors",
                            ckpt_sha256=sha * 64, metrics='{"val_acc": 0.5}')


def test_a_name_is_registered_once_and_overwritten_in_place(store):
    a, b = add_model(store, "a"), add_model(store, "b")
    ce = _register(store, a.id, "ce")
    assert (ce.model_id, ce.name, ce.arch, ce.ckpt_path, ce.metrics) == (a.id, "ce", "ce", "/x/ce.safetensors", '{"val_acc": 0.5}')
    again = _register(store, a.id, "ce", arch="re", sha="1")
    assert again.id == ce.id and (again.arch, again.ckpt_sha256) == ("re", "1" * 64)  # same row, new values
    other = _register(store, b.id, "ce")  # the same name under another model is another extractor
    assert other.id != ce.id
    _register(store, a.id, "ace")
    assert [(r.name, r.arch) for r in model_extractors(store, a.id)] == [("ace", "ce"), ("ce", "re")]  # by name
    assert [r.id for r in model_extractors(store, b.id)] == [other.id]
