"""atlas/named.py: a page per named concept (members, T* of its own run beside the frequency baseline, localisation, audits)."""

from __future__ import annotations

import json

from cortex_cli.models import concepts, registry as model_registry
from cortex_cli.atlas import PageSettings, build_atlas
from cortex_cli.attribution import SaliencySettings
from cortex_cli.index.build import index_class
from cortex_cli.index.rankings import top_tokens
from cortex_cli.store.database import open_store
from cortex_cli.store.evaluations import insert_evaluation

from index_helpers import ToyExtractor, index_three_classes

SALIENCY = SaliencySettings(samples=2, top_n=8)
SMALL = PageSettings(top_k=3, crops=1, overlays=1, context_classes=1, context_crops=1, neighbours=1, cross_class=2, token_classes=2)


def _text(path) -> str:
    return path.read_text(encoding="utf-8")


def test_named_concept_pages_show_their_own_run_evaluations_and_go_when_the_concept_goes(tmp_path, tiny_model_files):
    store = open_store(f"sqlite:///{tmp_path / 'index.db'}")
    config, ckpt, labels = tiny_model_files
    model = model_registry.add_model(store, "tiny", config, ckpt, str(labels))
    extractor, classes = index_three_classes(store, model, SALIENCY)
    pair = concepts.add_concept(store, model, "pair", classes=classes[:2])
    concepts.add_concept(store, model, "later", classes=[classes[1], classes[2]])
    for member in pair.members:  # the concept indexed under its own target, with the class run's extractor and parameters
        index_class(store, model, extractor, member, n_images=5, settings=SALIENCY, extractor=ToyExtractor(), target=pair.target(),
                    concept=pair.name)
    audit = {"neutral": "pair", "images": 10, "groups": [{"name": classes[0].name, "tokens": [1, 2], "share": 0.7, "share_ci": [0.5, 0.9]},
                                                          {"name": classes[1].name, "tokens": [3], "share": 0.2, "share_ci": [0.1, 0.4]}],
             "cliff_delta": 0.41, "cliff_delta_ci": [0.2, 0.6]}
    insert_evaluation(store, model.id, "audit", "{}", json.dumps(audit), "")
    localization = {"ns": [1, 5], "ground_truth": {"pair": "object"},
                    "methods": {"ce": {"per_class_precision": {"pair": 0.625}}, "random": {"per_class_precision": {"pair": 0.25}}}}
    insert_evaluation(store, model.id, "localization", "{}", json.dumps(localization), "")

    site = tmp_path / "site"
    result = build_atlas(store, model, site, settings=SMALL)
    assert result.named_concepts == 2 and result.concepts == 3  # the class pages read the class run, as before
    page = _text(site / "named" / "pair.html")
    expected = top_tokens(store, model, pair, k=3, baseline="frequency")
    assert expected.target == pair.target().key and f"target <code>{expected.target}</code>" in page
    assert f"saliency run {expected.run_id}," in page and f"{expected.images_indexed} indexed images" in page
    for row in expected.rows:
        assert f"alt=\"token {row.token}\">{row.token}" in page
    assert "ground truth object" in page and "ce: 0.625" in page and "random: 0.250" in page
    assert "audit #" in page and "Cliff's delta 0.41" in page and "share 0.7 (95% CI [0.5, 0.9])" in page
    assert "not indexed yet; run `cortex index --class &#x27;later&#x27;" in _text(site / "named" / "later.html")
    index = _text(site / "index.html")
    assert "Named concepts (2)" in index and "named/pair.html" in index

    # a removed concept's page goes with the next build; a named page is rewritten only when its HTML changes
    concepts.remove_concept(store, model, "later")
    again = build_atlas(store, model, site, settings=SMALL)
    assert "named/later.html" in again.removed and not (site / "named" / "later.html").exists()
    assert "named/pair.html" not in again.written
    store.close()
