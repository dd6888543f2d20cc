"""A named concept as the target of `explain`, `show`, `edit` and `optimize` (issue 23), on the bundled mini model.

The concept 'red' is the union of three mini classes. Each command must optimise or explain the concept's score (not a
member's logit), name the concept in its result, store its target key, and score P(concept) as the sum of the members'
probabilities; a one-member concept is exactly its class.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from sqlalchemy import select
from typer.testing import CliRunner

from cortex_cli import Workspace
from cortex_cli.models import registry as model_registry
from cortex_cli.attribution import SaliencySettings, token_saliency
from cortex_cli.cli import app
from cortex_cli.core.errors import CortexError
from cortex_cli.extractors.registry import get_extractor, load_extractor
from cortex_cli.judges.pixel_judges import mini_judges
from cortex_cli.images.pngmeta import read_png
from cortex_cli.store.schema import ConceptSearchRow, EditRow, ImageRow
from cortex_cli.models.targets import ConceptScore

MEMBERS = ("red-capped bird", "red mushroom", "red sailboat")
GRADIENT = dict(method="gradient")  # no noise: fast, and a map does not depend on the image's key


@pytest.fixture
def mini(tmp_path):
    """A workspace (in the test's CORTEX_HOME, which the CLI uses too) with the concept 'red', and a generated
    'blue-capped bird' PNG (not a member) to edit or explain."""
    ws = Workspace(device="cpu")
    red = ws.add_concept("red", classes=",".join(MEMBERS))
    (made,) = ws.generate("blue-capped bird", 1, out=tmp_path / "png")
    yield ws, red, made.png_paths[0]
    ws.close()


def _extractor(ws):
    info = model_registry.get_model(ws.store)
    return info, model_registry.load_model(info), load_extractor(get_extractor(ws.store, info, "ce"), "cpu")


def _probs(ws, grids):
    info, vqgm, net = _extractor(ws)
    with torch.no_grad():
        logits = net(vqgm.embed(torch.as_tensor(grids).reshape(-1, info.grid, info.grid))).float()
    return logits, vqgm


def test_an_edit_toward_a_concept_raises_its_score_and_stores_its_key(mini, tmp_path):
    ws, red, png = mini
    result = ws.edit(png, "red", "4:12,4:12", steps=40, seed=1, init="random", out=tmp_path / "out")
    ids = [model_registry.resolve_class(ws.store, model_registry.get_model(ws.store), m).class_id for m in MEMBERS]
    key = f"logsumexp:{','.join(map(str, sorted(ids)))}"
    assert (result.concept, result.target_name, result.target, result.target_classes) == ("red", "red", key, ids)
    assert result.target_class == ids[0] and result.params["concept"] == "red"
    (row,) = ws.store.session().scalars(select(EditRow)).all()
    assert (row.target, row.target_class) == (key, ids[0])
    assert read_png(result.output_path).meta["target"] == key
    # the concept's score (logsumexp of the members' logits) rose; its P is the members' summed softmax
    logits, vqgm = _probs(ws, [result.source_tokens, result.result_tokens])
    score = torch.logsumexp(logits[:, ids], dim=1)
    assert score[1] > score[0] and result.loss_end < result.loss_start
    p = F.softmax(logits, dim=1)[:, ids].sum(dim=1)
    ext = result.probabilities[0]
    assert ext.scorer == "extractor:ce" and (ext.target_before, ext.target_after) == pytest.approx(p.tolist(), rel=1e-4)
    # each judge's P(red) is the sum of its probabilities of the members
    images = vqgm.decode_tokens(torch.tensor([result.source_tokens, result.result_tokens]))
    for judge in mini_judges("cpu"):
        probs = judge.probabilities(images)
        got = next(s for s in result.probabilities if s.scorer == f"judge:{judge.name}")
        assert (got.target_before, got.target_after) == pytest.approx(probs[:, ids].sum(dim=1).tolist(), abs=1e-5)


def test_a_one_member_concept_edits_exactly_as_its_class(mini, tmp_path):
    ws, _, png = mini
    ws.add_concept("toadstool", classes="red mushroom")
    concept = ws.edit(png, "toadstool", "2:6,2:6", steps=6, seed=3, init="random", out=tmp_path / "a")
    cls = ws.edit(png, "red mushroom", "2:6,2:6", steps=6, seed=3, init="random", out=tmp_path / "b")
    assert concept.result_tokens == cls.result_tokens and concept.target == cls.target == "class"
    assert concept.concept == "toadstool" and cls.concept is None
    assert [p.target_after for p in concept.probabilities] == [p.target_after for p in cls.probabilities]


def test_a_log_prob_edit_maximises_the_concepts_summed_probability(mini, tmp_path):
    ws, red, png = mini
    result = ws.edit(png, "red", "4:12,4:12", steps=4, objective="log-prob", out=tmp_path / "out")
    assert result.target == red.target("log-prob").key and result.params["objective"] == "log-prob"


def test_a_concept_search_is_stored_under_its_own_key_and_scores_the_concept(mini, tmp_path):
    ws, red, _ = mini
    first = red.members[0]
    concept = ws.optimize("red", region="4:8,4:8", restarts=1, steps=5, seed=2, out=tmp_path / "c")
    cls = ws.optimize(first.name, region="4:8,4:8", restarts=1, steps=5, seed=2, out=tmp_path / "c")
    assert concept.search_key != cls.search_key and concept.restarts[0].seed != cls.restarts[0].seed
    assert (concept.concept, concept.class_name, concept.target, concept.class_id) == ("red", "red", red.target("logsumexp").key, first.class_id)
    assert (cls.concept, cls.target) == (None, "class")
    with ws.store.session() as s:
        rows = {r.search_key: r for r in s.scalars(select(ConceptSearchRow))}
    assert (rows[concept.search_key].target, rows[concept.search_key].class_pk) == (red.target("logsumexp").key, first.pk)
    assert rows[cls.search_key].target == "class"
    logits, vqgm = _probs(ws, [concept.tokens])
    assert concept.objective == pytest.approx(float(torch.logsumexp(logits[0, red.class_ids], dim=0)), rel=1e-4)
    assert concept.p_target == pytest.approx(float(F.softmax(logits, dim=1)[0, red.class_ids].sum()), rel=1e-4)
    image = vqgm.decode_tokens(torch.tensor([concept.tokens]))
    for judge in mini_judges("cpu"):
        summed = float(judge.probabilities(image)[0, red.class_ids].sum())
        assert concept.restarts[0].judges[judge.name] == pytest.approx(summed, abs=1e-5)
    again = ws.optimize("red", region="4:8,4:8", restarts=1, steps=5, seed=2, out=tmp_path / "c")
    assert (again.computed, again.reused, again.tokens) == (0, 1, concept.tokens)


def test_explain_and_show_a_concepts_score(mini, tmp_path):
    ws, red, png = mini
    got = ws.explain(png, top_n=4, target="red", **GRADIENT)
    assert (got.concept, got.class_id, got.class_name, got.target, got.target_key) == ("red", None, "red", "given concept", red.target().key)
    # the map is the gradient of the concept's score (ConceptScore), not of a member's logit
    info, vqgm, net = _extractor(ws)
    tokens = read_png(png).tokens
    emb = vqgm.embed(tokens[None])
    wanted = token_saliency(ConceptScore(net, red.target().rule, red.class_ids), emb, [0], [0], SaliencySettings(**GRADIENT), codebook=vqgm.codebook)[0]
    flat = tokens.reshape(-1)
    best = torch.argsort(wanted.reshape(-1), descending=True)[:4].tolist()
    assert [t.position for t in got.top] == best and [t.token for t in got.top] == [int(flat[p]) for p in best]
    member = ws.explain(png, top_n=4, target=red.members[0].name, **GRADIENT)
    assert (member.concept, member.class_id, member.target, member.target_key) == (None, red.members[0].class_id, "given class", "class")
    assert [t.position for t in member.top] != [t.position for t in got.top] or member.top[0].tsv != got.top[0].tsv


def test_show_reads_the_concepts_own_run_and_token_figures_span_its_members(mini, tmp_path):
    ws, red, _ = mini
    ws.index("red", images=1, samples=2)
    ws.index("red mushroom", images=1, samples=2)  # a class run over a member's image too
    mushroom = next(m for m in red.members if m.name == "red mushroom")
    with ws.store.session() as s:
        stored = s.scalars(select(ImageRow.id).where(ImageRow.class_pk == mushroom.pk)).all()
    shown = ws.show(stored[0], tmp_path / "red.png", target="red", top_n=3)
    plain = ws.show(stored[0], tmp_path / "plain.png", top_n=3)
    assert shown.tsv_from.startswith("index run ") and shown.concept == "red" and shown.target_key == red.target().key
    assert plain.tsv_from.startswith("index run ") and plain.concept is None and plain.target == "stored class"
    assert shown.tsv_from != plain.tsv_from  # the concept's run, not the class run (and the other way round)
    assert read_png(shown.out).meta["concept"] == "red"
    token = shown.top[0].token
    fig = ws.show_token("red", token, tmp_path / "fig.png")
    assert (fig.concept, fig.class_id, fig.target_key) == ("red", None, red.target().key)
    assert stored[0] in fig.image_ids and fig.images_with_token >= 1
    assert f"index run {fig.run_id}" == shown.tsv_from


@pytest.mark.parametrize("args, fragment", [
    (["edit", "{png}", "--target", "crimson", "--region", "all", "--steps", "2"], "'crimson'"),
    (["optimize", "--class", "crimson", "--steps", "2", "--restarts", "1"], "'crimson'"),
    (["explain", "{png}", "--target", "crimson"], "'crimson'"),
    (["show", "1", "--target", "crimson", "--out", "{out}/x.png"], "'crimson'"),
    (["show", "--class", "red", "--token", "3", "--target", "red", "--out", "{out}/x.png"], "--target goes with IMAGE"),
    (["explain", "{png}", "--target", "red", "--score", "max"], "--score must be one of"),
])
def test_an_unknown_concept_is_one_line_and_stores_nothing(mini, tmp_path, args, fragment):
    ws, _, png = mini
    ws.close()
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["--device", "cpu", *[a.format(png=png, out=out) for a in args]])
    assert res.exit_code == 1, res.output
    assert fragment in res.stderr and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
    check = Workspace(device="cpu")
    with check.store.session() as s:
        assert s.scalars(select(EditRow)).all() == [] and s.scalars(select(ConceptSearchRow)).all() == []
    check.close()
    assert not out.exists() or not any(out.iterdir())


def test_the_cli_names_the_concept_it_edited(mini, tmp_path):
    ws, red, png = mini
    ws.close()
    res = CliRunner().invoke(app, ["--device", "cpu", "edit", str(png), "--target", "red", "--region", "6:10,6:10", "--steps", "3",
                                   "--out", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert (data["concept"], data["target_name"], data["target"]) == ("red", "red", red.target("logsumexp").key)
    with pytest.raises(CortexError, match="'crimson'"):
        Workspace(device="cpu").show_token("crimson", 3, tmp_path / "x.png")
