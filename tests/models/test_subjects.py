"""The one resolver: a name or id to a class or a named concept (`Subject`), lists of them, and `--classes` subsets."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from types import SimpleNamespace

from cortex_cli.cli import app
from cortex_cli.core.errors import CortexError
from cortex_cli.extractors.architectures import ExtractorConfig, build_extractor
from cortex_cli.extractors.registry import register_extractor
from cortex_cli.models import concepts, registry as model_registry
from cortex_cli.models.concepts import ConceptInfo
from cortex_cli.models.registry import ClassInfo
from cortex_cli.models.subjects import Subject, classes, concept_members, index_target, name_concept, parse_names, subject, subjects
from cortex_cli.models.targets import BINARY, Target

runner = CliRunner()


def test_parse_inline_and_file(tmp_path):
    assert parse_names(" goldfinch, black grouse ,3,") == ["goldfinch", "black grouse", "3"]
    path = tmp_path / "birds.txt"
    path.write_text("# Table 3 birds\ngoldfinch\n\nwater ouzel  # the dipper\nblack grouse, 0\n")
    assert parse_names(f"@{path}") == ["goldfinch", "water ouzel", "black grouse", "0"]
    with pytest.raises(CortexError, match="cannot read"):
        parse_names(f"@{tmp_path / 'missing.txt'}")
    with pytest.raises(CortexError, match="names no class"):
        parse_names(" , ")


GOLD, OUZEL, GROUSE = ClassInfo(1, 0, "goldfinch", ()), ClassInfo(2, 1, "water ouzel", ("dipper",)), ClassInfo(3, 2, "black grouse", ())


def test_a_class_is_a_subject_of_one_member_and_a_concept_keeps_what_is_stored():
    one = Subject.of(OUZEL)
    assert (one.name, one.members, one.is_class, one.kind, one.lead) == ("water ouzel", (OUZEL,), True, "class", OUZEL)
    assert (one.class_id, one.concept_name, one.class_ids, one.class_pks, one.ref) == (1, None, [1], [2], 1)
    assert one.target("logsumexp") == Target() and Subject.of(one) is one
    birds = ConceptInfo(7, "tiny", "birds", "classes", [GROUSE, GOLD])
    many = Subject.of(birds)
    assert (many.name, many.members, many.is_class, many.kind, many.lead, many.concept) == ("birds", (GROUSE, GOLD), False, "concept", GROUSE, birds)
    assert (many.class_id, many.concept_name, many.class_ids, many.class_pks, many.ref) == (None, "birds", [2, 0], [3, 1], "birds")
    assert many.target("logsumexp") == Target("logsumexp", (2, 0)) and many.target().key == "log-prob:0,2"
    # a concept of one member is read as its class (its logit), yet stays a concept by name
    lone = Subject.of(ConceptInfo(8, "tiny", "lone", "classes", [GOLD]))
    assert lone.target() == Target() and not lone.is_class and lone.class_id is None
    assert len({one, Subject.of(OUZEL), many}) == 2  # subjects of the same class are equal (and hashable)


def test_index_target_reads_a_concept_off_a_class_extractor_or_its_own():
    birds = Subject.of(ConceptInfo(7, "tiny", "birds", "classes", [GROUSE, GOLD]))
    ce = SimpleNamespace(name="ce", config=SimpleNamespace())
    assert index_target(ce, OUZEL) == Target() and index_target(ce, birds, "logsumexp") == Target("logsumexp", (2, 0))
    own = SimpleNamespace(name="birds-ce", config=SimpleNamespace(concept="Birds", concept_class_ids=[0, 2]))
    assert index_target(own, birds) == Target(BINARY) and index_target(own, OUZEL) == Target()
    with pytest.raises(CortexError, match="trained for concept 'fish', not 'birds'"):
        index_target(SimpleNamespace(name="fish-ce", config=SimpleNamespace(concept="fish")), birds)
    with pytest.raises(CortexError, match=r"now has \[0, 2\]; train it again"):
        index_target(SimpleNamespace(name="old", config=SimpleNamespace(concept="birds", concept_class_ids=[0])), birds)


def test_resolution_order_a_class_then_a_concept(store, tiny_model):
    birds = concepts.add_concept(store, tiny_model, "Birds", classes=[model_registry.resolve_class(store, tiny_model, n) for n in (2, 0)])
    assert subject(store, tiny_model, "1") == subject(store, tiny_model, 1) == Subject.of(model_registry.resolve_class(store, tiny_model, 1))
    assert subject(store, tiny_model, " Dipper ").name == "water ouzel"  # a synonym, any case and spacing
    found = subject(store, tiny_model, "birds")
    assert found.concept == birds and found.class_ids == [2, 0]
    assert subject(store, tiny_model, found) is found and subject(store, tiny_model, GOLD) == Subject.of(GOLD)
    with pytest.raises(CortexError, match="did you mean 'goldfinch'"):
        subject(store, tiny_model, "goldfinc")
    with pytest.raises(CortexError, match="class id 9 does not exist"):
        subject(store, tiny_model, 9)


def test_lists_keep_order_and_drop_repeats_and_a_concept_stands_for_its_members(store, tiny_model):
    got = classes(store, tiny_model, "black grouse,goldfinch,2,0")
    assert [c.class_id for c in got] == [2, 0]
    assert len(classes(store, tiny_model, "all")) == 4 and [s.name for s in subjects(store, tiny_model, " ALL ")][:1] == ["goldfinch"]
    assert [c.class_id for c in classes(store, tiny_model, [3, "3", "dipper"])] == [3, 1] and classes(store, tiny_model, 2)[0].name == "black grouse"
    with pytest.raises(CortexError, match="goldfinch"):
        classes(store, tiny_model, "goldfinc")
    with pytest.raises(CortexError, match="got float"):
        subjects(store, tiny_model, 1.5)
    concepts.add_concept(store, tiny_model, "birds", classes=[model_registry.resolve_class(store, tiny_model, n) for n in (2, 0)])
    assert [(s.name, s.kind) for s in subjects(store, tiny_model, "analog clock,birds,birds,3")] == [("analog clock", "class"), ("birds", "concept")]
    assert [c.class_id for c in classes(store, tiny_model, "3,birds,0")] == [3, 2, 0]
    assert [c.class_id for c in classes(store, tiny_model, "birds")] == [2, 0]  # a lone concept name too


def test_a_new_concepts_members_are_classes_named_any_way(store, tiny_model):
    assert [c.class_id for c in concept_members(store, tiny_model, "x", "black grouse, 0")] == [2, 0]
    assert [c.class_id for c in concept_members(store, tiny_model, "x", [2, "dipper"])] == [2, 1]
    assert [c.class_id for c in concept_members(store, tiny_model, "x", 3)] == [3]
    assert [c.class_id for c in concept_members(store, tiny_model, "x", "0,0")] == [0, 0]  # a repeat is `add_concept`'s to refuse
    for spec, message in [(" ", "'x' needs at least one member class"), ("All", "every class explains nothing"),
                          ("goldfinc", "did you mean 'goldfinch'")]:
        with pytest.raises(CortexError, match=message):
            concept_members(store, tiny_model, "x", spec)
    birds = name_concept(store, tiny_model, "birds", classes="black grouse,goldfinch")
    assert birds == concepts.get_concept(store, tiny_model, "birds") and birds.class_ids == [2, 0] and birds.kind == "classes"
    with pytest.raises(CortexError, match="'birds' is a concept; a concept's members are classes"):
        name_concept(store, tiny_model, "more", classes=["birds", 3])
    with pytest.raises(CortexError, match="model 'tiny' is class-conditional"):
        name_concept(store, tiny_model, "doctor", prompt="a doctor")  # the model's shape decides
    with pytest.raises(CortexError, match="give the concept's classes"):
        name_concept(store, tiny_model, "nothing")
    assert [c.name for c in concepts.list_concepts(store, tiny_model)] == ["birds"]


def test_generate_and_index_a_subset(store, tiny_model, db_url, tmp_path):
    torch.manual_seed(0)
    cfg = ExtractorConfig("ce", in_channels=16, grid=16, width=8, n_classes=4, fc_width=16)
    path = tmp_path / "ce.safetensors"
    save_file({k: v.contiguous() for k, v in build_extractor(cfg).eval().state_dict().items()}, str(path))
    register_extractor(store, tiny_model, "ce", cfg, {}, path, {})
    subset = tmp_path / "subset.txt"
    subset.write_text("black grouse\ngoldfinch\n")

    gen = runner.invoke(app, ["--db", db_url, "generate", "--model", "tiny", "--classes", f"@{subset}", "-n", "2", "--json"])
    assert gen.exit_code == 0, gen.output
    assert [(r["class_name"], r["added"]) for r in json.loads(gen.stdout)] == [("black grouse", 2), ("goldfinch", 2)]

    res = runner.invoke(app, ["--db", db_url, "index", "--model", "tiny", "--classes", "goldfinch,2", "--images", "2",
                              "--samples", "2", "--top-n", "3", "--json"])
    assert res.exit_code == 0, res.output
    assert [(r["class_id"], r["added"], r["skipped"]) for r in json.loads(res.stdout)] == [(0, 2, 0), (2, 2, 0)]

    both = runner.invoke(app, ["--db", db_url, "index", "--model", "tiny", "--class", "goldfinch", "--classes", "2"])
    assert both.exit_code == 1 and "one of --class" in both.output
