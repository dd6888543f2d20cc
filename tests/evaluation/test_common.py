"""evaluation/common.py: stored evaluations (the newest of each kind wins), and what an evaluation runs on (classes, extractors)."""

from __future__ import annotations

import pytest

from cortex_cli.core.errors import CortexError
from cortex_cli.evaluation.common import latest_variants, record_evaluation, resolve_classes, resolve_extractors

from eval_helpers import register_small_extractor


def test_the_newest_evaluation_of_each_kind_is_read_back_as_json(store, tiny_model, tmp_path):
    assert latest_variants(store, tiny_model) == {}
    record_evaluation(store, tiny_model, "stability", {"seeds": (0, 1)}, {"n": 1}, None)
    newest = record_evaluation(store, tiny_model, "stability", {"seeds": (0, 2), "out": tmp_path}, {"n": 2}, tmp_path / "s.png")
    record_evaluation(store, tiny_model, "edit", {}, {"n": 3}, "")
    variants = latest_variants(store, tiny_model)
    assert set(variants) == {"stability", "edit"} and all(len(v) == 1 for v in variants.values())
    latest = {kind: evs[0] for kind, evs in variants.items()}
    stab = latest["stability"]
    assert (stab.id, stab.model, stab.kind, stab.result) == (newest, "tiny", "stability", {"n": 2})
    assert stab.params == {"seeds": [0, 2], "out": str(tmp_path)}  # tuples and paths stored as JSON
    assert stab.plot_path == str(tmp_path / "s.png") and latest["edit"].plot_path == ""


def test_classes_and_extractors_by_name_or_all(store, tiny_model, tmp_path):
    assert [c.class_id for c in resolve_classes(store, tiny_model, None)] == [0, 1, 2, 3]
    assert [c.name for c in resolve_classes(store, tiny_model, ["3", " goldfinch ", ""])] == ["analog clock", "goldfinch"]
    with pytest.raises(CortexError, match="no extractors; run `cortex train-extractor --model tiny --arch ce` first"):
        resolve_extractors(store, tiny_model)
    register_small_extractor(store, tiny_model, tmp_path, "ce", "ce")
    register_small_extractor(store, tiny_model, tmp_path, "re", "re")
    assert [e.name for e in resolve_extractors(store, tiny_model)] == ["ce", "re"]
    assert [e.name for e in resolve_extractors(store, tiny_model, "re, ce")] == ["re", "ce"]
    with pytest.raises(CortexError, match="nope"):
        resolve_extractors(store, tiny_model, "nope")
