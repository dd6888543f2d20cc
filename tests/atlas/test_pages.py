"""atlas/pages.py: page paths, the region outlined on an edit card, and what a stored evaluation says about one concept."""

from __future__ import annotations

from cortex_cli.atlas.pages import _evaluation_lines, _region_box, concept_path, token_path
from cortex_cli.store.registered_models import ClassInfo


def _cls(class_id: int, name: str) -> ClassInfo:
    return ClassInfo(pk=class_id + 100, class_id=class_id, name=name, synonyms=())


def test_paths_are_stable_slugs():
    assert concept_path(_cls(1, "water ouzel, dipper")) == "concepts/1-water-ouzel-dipper.html"
    assert concept_path(_cls(7, "Crème brûlée!")) == "concepts/7-cr-me-br-l-e.html"
    assert concept_path(_cls(3, "???")) == "concepts/3-class.html"  # nothing left of the name
    assert len(concept_path(_cls(2, "a" * 200))) == len("concepts/2-.html") + 48
    assert token_path(42) == "tokens/42.html" and token_path("7") == "tokens/7.html"


def test_an_edit_region_is_outlined_unless_it_is_the_whole_grid_or_unreadable():
    assert _region_box("4:8,2:6", 16) == (4, 8, 2, 6)
    assert _region_box("0:16,0:16", 16) is None
    assert _region_box("nonsense", 16) is None


def test_each_evaluation_kind_speaks_only_of_the_concepts_it_covers():
    goldfinch, clock = _cls(0, "goldfinch"), _cls(3, "analog clock")
    loc = {"ns": [1, 5], "n_images": 12, "methods": {"ce": {"per_class_precision": {"goldfinch": 0.5}}, "re": {"per_class_precision": {}}}}
    lines, tokens = _evaluation_lines("localization", loc, goldfinch)
    assert lines == ["ground truth: precision@5 of the selected tokens on the object (12 world images of all concepts): ce 0.50"]
    assert tokens == {} and _evaluation_lines("localization", loc, clock) == ([], {})
    concept = {"k": 3, "concept_tokens": {"ce": {"goldfinch": [4, 9, 1]}, "baseline": {"goldfinch": [2], "analog clock": [5]}}}
    lines, tokens = _evaluation_lines("concept-level", concept, goldfinch)
    assert "k=3" in lines[0] and tokens == {"ce": [4, 9, 1], "baseline": [2]}
    assert _evaluation_lines("concept-level", concept, clock)[1] == {"baseline": [5]}
    edit = {"steps": 30, "items": [{"source": 0, "target": 3}, {"source": 0, "target": 1}, {"source": 2, "target": 0}]}
    assert _evaluation_lines("edit", edit, goldfinch)[0] == [
        "edit evaluation (30 steps): of its 3 source images, 2 show this concept and 1 are edited toward it"]
    assert _evaluation_lines("edit", edit, _cls(5, "other")) == ([], {})
