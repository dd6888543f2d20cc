"""The atlas's evaluations page: the trust summary, one section per stored run (and fill), unreadable old layouts."""

from __future__ import annotations

import re
from dataclasses import asdict

from cortex_cli.atlas.evaluations import anchor_of, evaluations_page
from cortex_cli.atlas.html import render_evaluations
from cortex_cli.evaluation.common import StoredEvaluation
from cortex_cli.evaluation.localization import LocalizationResult, MethodScores

STEP = {"layers": ["fc"], "spearman": 0.1, "top20_overlap": 0.3, "precision_at_5": 0.05}
SANITY = {"extractor": "ce", "n_images": 4, "random_floor": {"top20_overlap": 0.08, "precision_at_5": 0.1, "spearman": 0.0},
          "cascade": [STEP], "label_permuted": STEP, "independent": [], "trained_precision_at_5": 0.6,
          "permuted_training": {"acc_permuted_labels": 0.9, "acc_true_labels": 0.1},
          "checks": {"cascade_overlap": False, "cascade_precision": True, "permuted_overlap": False, "permuted_precision": True}}


def _stored(kind: str, result: dict, params: dict | None = None, plot: str = "") -> StoredEvaluation:
    return StoredEvaluation(1, "tiny", kind, params or {}, result, plot, "2026-12-04T23:00:00")


def test_sections_follow_the_report_each_fill_apart_and_an_old_layout_says_to_rerun():
    localization = asdict(LocalizationResult("tiny", 12, [1, 5], 0.5, 0.2, {"ce": MethodScores({"1": 0.75, "5": 0.375}, 0.625, {})}, 1.0))
    variants = {
        "localization": [_stored("localization", localization, plot="/plots/loc.png")],
        "sanity": [_stored("sanity", SANITY)],
        # an image-level run stored before AUCs and fills were kept: no 'ns' in it
        "image-level": [_stored("image-level", {"fill": "black"}), _stored("image-level", {"fill": "tokens"}, {"fill": "tokens"})],
    }
    copied = []
    page = evaluations_page("tiny", variants, lambda path: copied.append(path) or "img/loc.png")
    assert [s.anchor for s in page.sections] == ["image-level", anchor_of("image-level", "tokens"), "localization", "sanity"]
    assert anchor_of("image-level", "tokens") == "image-level-tokens" and copied == ["/plots/loc.png"]
    old = page.sections[0]
    assert old.tables == [] and "rerun cortex eval image-level --model tiny" in old.unreadable and "'ns'" in old.unreadable
    assert page.sections[1].title.endswith("(tokens fill)") and "--fill tokens" in page.sections[1].command
    # the trust summary reads the sanity run; the image-level runs have no AUCs, so they add no rows
    [trust] = page.trust
    assert [row[0] for row in trust.rows] == ["sanity, CE full cascade", "sanity, CE label-permuted"]
    assert [row[2] for row in trust.rows] == ["FAILED", "FAILED"]

    html = render_evaluations(page, "tiny <b>", "crumbs", "footer")
    assert "tiny &lt;b&gt;" in html and "tiny <b>" not in html  # the model's name is escaped
    ids = re.findall(r'<h2 id="([^"]+)"', html)
    assert ids == ["trust", "image-level", "image-level-tokens", "localization", "sanity"]
    assert set(re.findall(r'href="#([^"]+)"', html)) <= set(ids)  # the contents list points at headings that exist
    assert "<td>CORTEX CE</td><td>0.750</td><td>0.375</td><td>0.625</td>" in html and 'src="img/loc.png"' in html
    assert "rerun cortex eval image-level" in html


def test_no_stored_runs_no_trust_summary():
    page = evaluations_page("tiny", {}, lambda path: None)
    assert page.trust == [] and page.sections == []
    assert 'id="trust"' not in render_evaluations(page, "tiny", "c", "f")
