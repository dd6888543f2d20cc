"""Named concepts: stored per model, resolved after classes, indexed under their own target, counted over all members."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cortex_cli import CortexError, Workspace
from cortex_cli.models import concepts
from cortex_cli.models.subjects import Subject, classes, subject
from cortex_cli.cli import app
from cortex_cli.models.registry import get_model

RED = ["red-capped bird", "red mushroom", "red sailboat", "house"]
FAST = {"images": 3, "samples": 2}


@pytest.fixture(scope="module")
def red_home(tmp_path_factory):
    """A mini home with concept 'red' indexed (3 images of each member) and 'red-capped bird' indexed as a class."""
    home = tmp_path_factory.mktemp("concept-home")
    with Workspace(home=home, device="cpu") as ws:
        ws.add_concept("red", classes=",".join(RED))
        by_concept = ws.index("red", **FAST)
        by_class = ws.index("red-capped bird", **FAST)
    return home, by_concept, by_class


def test_a_concept_indexes_each_member_under_its_own_target(red_home):
    home, by_concept, by_class = red_home
    assert [(r.class_name, r.concept, r.added) for r in by_concept] == [(name, "red", 3) for name in RED]
    assert {r.target for r in by_concept} == {"log-prob:0,4,7,10"} and len({r.run_id for r in by_concept}) == 1
    # the class run of the same extractor and parameters is another run: the same images, another question
    assert by_class[0].target == "class" and by_class[0].run_id != by_concept[0].run_id and by_class[0].added == 3


def test_top_tokens_of_a_concept_count_every_members_images_and_a_class_still_reads_its_own_run(red_home):
    home, by_concept, by_class = red_home
    ws = Workspace(home=home, device="cpu")
    top = ws.top_tokens("red", k=5, baseline="frequency")
    assert top.run_id == by_concept[0].run_id and top.target == "log-prob:0,4,7,10"
    assert (top.concept, top.members, top.class_id, top.images_indexed, top.image_seeds) == ("red", RED, None, 12, "0-2")
    assert sum(r.count for r in top.rows) <= 12 * 20 and top.rows[0].count >= top.rows[-1].count
    assert ws.top_tokens("red", k=5, images=2).images_indexed == 8  # seeds 0..1 of every member
    own = ws.top_tokens("red-capped bird", k=5)
    assert own.run_id == by_class[0].run_id and own.target == "class" and own.images_indexed == 3
    with pytest.raises(CortexError, match=r"only 3 of the train seeds 0\.\.3 of 'red' \(member 'red-capped bird'\)"):
        ws.top_tokens("red", images=4)
    # the CLI prints exactly the API's result
    cli = CliRunner().invoke(app, ["top-tokens", "red", "-k", "5", "--baseline", "frequency", "--json"], env={"CORTEX_HOME": str(home)})
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout) == top.to_dict()


def test_a_concept_not_yet_indexed_says_what_to_run(red_home):
    home, _, _ = red_home
    ws = Workspace(home=home, device="cpu")
    ws.add_concept("night things", classes="lit candle,star")
    try:
        with pytest.raises(CortexError, match=r"concept 'night things' is not indexed yet; run `cortex index --class 'night things'"):
            ws.top_tokens("night things")
        assert [c.name for c in ws.concepts()] == ["night things", "red"]
    finally:
        ws.remove_concept("night things")
    assert [c.name for c in ws.concepts()] == ["red"]


def test_a_concept_name_works_where_a_class_name_does(red_home):
    home, _, _ = red_home
    ws = Workspace(home=home, device="cpu")
    info = get_model(ws.store, None)
    assert subject(ws.store, info, "0").name == "red-capped bird"  # digits: a class id
    assert subject(ws.store, info, "Red Bird").name == "red-capped bird"  # a synonym, any case
    assert subject(ws.store, info, "RED").concept == ws.concepts()[0]
    # in a --classes list of the evaluations a concept stands for its members, each class once
    assert [c.name for c in classes(ws.store, info, ["house", "red", "sun"])] == ["house", *RED[:3], "sun"]
    with pytest.raises(CortexError, match="did you mean"):
        subject(ws.store, info, "red mushrom")


@pytest.mark.parametrize(("name", "options", "message"), [
    ("house", {"classes": "sun"}, "'house' is already a class of model 'mini'"),
    ("cottage", {"classes": "sun"}, "already a class"),  # a synonym is a class's name too
    ("red", {"classes": "sun"}, "a concept named 'red' already exists"),
    ("x", {"classes": ""}, "needs at least one member class"),
    ("x", {"classes": "sun,nope"}, "unknown class 'nope'"),
    ("x", {"classes": "sun,sun"}, "names a class twice"),
    ("x", {"classes": "red,sun"}, "'red' is a concept; a concept's members are classes"),
    ("x", {"classes": "all"}, "a concept of every class"),
    ("x", {"prompt": "a sun"}, "model 'mini' is class-conditional"),
    ("x", {}, "give the concept's classes"),
    ("12", {"classes": "sun"}, "is a number"),
    ("a,b", {"classes": "sun"}, "cannot contain ','"),
    (" ", {"classes": "sun"}, "a concept needs a name"),
])
def test_bad_concepts_are_refused_and_nothing_is_stored(red_home, name, options, message):
    home, _, _ = red_home
    ws = Workspace(home=home, device="cpu")
    before = [c.to_dict() for c in ws.concepts()]
    with pytest.raises(CortexError, match=message):
        ws.add_concept(name, **options)
    assert [c.to_dict() for c in ws.concepts()] == before


def test_a_prompt_concept_adds_its_own_class_which_goes_with_it(store, tiny_model):
    made = concepts.add_concept(store, tiny_model, "doctor", prompt="a photo of  a doctor", text_conditional=True)
    assert made.kind == "prompt" and made.prompt == "a photo of a doctor"
    own = made.members[0]
    assert (own.class_id, own.name, own.prompt) == (4, "a photo of a doctor", "a photo of a doctor")  # the next free class id
    assert subject(store, tiny_model, "doctor") == Subject.of(made)
    assert subject(store, tiny_model, "a photo of a doctor") == Subject.of(own)  # the prompt's class is a class
    with pytest.raises(CortexError, match="already class 4"):
        concepts.add_concept(store, tiny_model, "medic", prompt="a photo of a doctor", text_conditional=True)
    concepts.remove_concept(store, tiny_model, "doctor")
    assert concepts.list_concepts(store, tiny_model) == []
    with pytest.raises(CortexError, match="unknown class"):
        subject(store, tiny_model, "a photo of a doctor")
