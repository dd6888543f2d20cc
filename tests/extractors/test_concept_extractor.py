"""A binary extractor for a named concept (`train-extractor --concept`, paper §3.2): balanced Y / not-Y data,
2 outputs, stored config, binary accuracy, indexing the concept under target 'binary', and the guards."""

from __future__ import annotations

import json

import pytest
import torch

from cortex_cli import Workspace
from cortex_cli.models import concepts, registry as model_registry
from cortex_cli.core.errors import CortexError
from cortex_cli.evaluation.common import resolve_extractors
from cortex_cli.extractors import ExtractorConfig, default_configs, get_extractor, load_concept_split, load_extractor, load_split, train_extractor
from cortex_cli.extractors import accuracy as extractor_evaluation
from cortex_cli.extractors.accuracy import binary_accuracy, concept_counts, extractor_logits
from cortex_cli.extractors.subsets import ConceptHead, require_classes
from extractor_helpers import learnable_tiny_model

# the tiny model's classes: 0 goldfinch, 1 water ouzel, 2 black grouse, 3 analog clock
SMALL = dict(width=16, fc_width=32, epochs=10, batch_size=8, train_per_class=24, val_per_class=4, test_per_class=4)


@pytest.fixture
def learnable(store, tiny_model_files, tmp_path):
    return learnable_tiny_model(store, tiny_model_files, tmp_path)


def add(store, model, name, *members):
    by_name = {c.name: c for c in model_registry.classes(store, model)}
    return concepts.add_concept(store, model, name, classes=[by_name[m] for m in members])


def concept_configs(model, concept, arch="ce", **over):
    return default_configs(model, arch, concept=concept.name, concept_class_ids=concept.class_ids, **{**SMALL, **over})


def test_not_y_is_spread_evenly_over_the_other_classes_in_class_id_order(store, tiny_model):
    classes = model_registry.classes(store, tiny_model)
    one = concept_counts(4, classes[1:2], [classes[3], classes[0], classes[2]])  # 4 Y images: 2 + 1 + 1 not-Y
    assert [(c.class_id, n) for c, n in one] == [(1, 4), (0, 2), (2, 1), (3, 1)]
    two = concept_counts(3, [classes[2], classes[0]], [classes[1], classes[3]])
    assert [(c.class_id, n) for c, n in two] == [(0, 3), (2, 3), (1, 3), (3, 3)]
    few = concept_counts(1, classes[:1], classes[1:])  # 1 Y image: one other class gives it, the rest none
    assert [(c.class_id, n) for c, n in few] == [(0, 1), (1, 1)]
    with pytest.raises(CortexError, match="no image is not the concept"):
        concept_counts(2, classes, [])


def test_a_concept_split_is_balanced_labels_its_members_y_and_reuses_the_class_images(store, learnable):
    data = load_concept_split(store, learnable, "train", 6, [1])
    assert len(data) == 12 and int(data.labels.sum()) == 6  # 6 Y, 6 not-Y
    assert data.classes.tolist() == [1] * 6 + [0] * 2 + [2] * 2 + [3] * 2
    assert data.labels.tolist() == [int(c == 1) for c in data.classes.tolist()]
    # the same images (seeds 0..) a class extractor trains on: no new generation, identity-keyed
    whole = load_split(store, learnable, "train", 6)
    first = {cid: whole.image_ids[6 * cid: 6 * cid + n] for cid, n in ((1, 6), (0, 2), (2, 2), (3, 2))}
    assert data.image_ids == first[1] + first[0] + first[2] + first[3]
    assert torch.equal(data.tokens[:6], whole.tokens[6:12])
    pair = load_concept_split(store, learnable, "val", 4, [0, 3])
    assert data.split == "train" and pair.split == "val"
    assert pair.classes.tolist() == [0] * 4 + [3] * 4 + [1] * 4 + [2] * 4 and pair.labels.tolist() == [1] * 8 + [0] * 8


def test_binary_accuracy_counts_each_side():
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    labels = torch.tensor([1, 1, 0, 0])
    assert binary_accuracy(logits, labels) == {"binary": 0.5, "y": 0.5, "not_y": 0.5}
    assert binary_accuracy(logits, torch.tensor([1, 0, 0, 1]))["binary"] == 1.0


def test_a_config_round_trips_its_concept_and_older_rows_load_as_before(tiny_model):
    cfg, _ = default_configs(tiny_model, "ce", concept="pair", concept_class_ids=[3, 0])
    assert cfg.n_outputs == 2 and cfg.concept_class_ids == [0, 3]
    assert ExtractorConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    plain, _ = default_configs(tiny_model, "ce")
    assert "concept" not in plain.to_dict() and "concept_class_ids" not in plain.to_dict()  # old fingerprints unchanged
    old = {k: v for k, v in plain.to_dict().items()}
    assert ExtractorConfig.from_dict(old).concept is None and ExtractorConfig.from_dict(old).n_outputs == 4
    with pytest.raises(CortexError, match="not both"):
        ExtractorConfig("ce", n_classes=4, grid=16, class_ids=[0, 1], concept="pair", concept_class_ids=[0])
    with pytest.raises(CortexError, match="both its concept's name and its member classes"):
        ExtractorConfig("ce", n_classes=4, grid=16, concept="pair")
    with pytest.raises(CortexError, match="every class as a member"):
        ExtractorConfig("ce", n_classes=2, grid=16, concept="all of it", concept_class_ids=[0, 1])


def test_a_concept_extractor_trains_on_balanced_data_registers_and_resumes(store, learnable, db_url, tmp_path):
    pair = add(store, learnable, "pair", "goldfinch", "analog clock")
    cfg, tc = concept_configs(learnable, pair)
    result = train_extractor(store, learnable, cfg, tc, name="pair-ce")
    info = get_extractor(store, learnable, "pair-ce")
    assert info.config == cfg and info.config.concept == "pair" and info.config.concept_class_ids == [0, 3]
    assert info.hparams["data"] == "concept-balanced" and info.hparams["epochs"] == 10
    m = info.metrics
    assert (m["n_train"], m["n_val"], m["n_test"]) == (96, 16, 16)  # 2 members x 24 + 48 of the 2 others
    assert set(m["test"]) == {"binary", "y", "not_y"} and m["test"]["binary"] >= 0.75  # the classes' tokens differ
    net = load_extractor(info)
    assert isinstance(net, ConceptHead) and net.concept == "pair"
    vqgm = model_registry.load_model(learnable)
    test = load_concept_split(store, learnable, "test", 4, [0, 3])
    logits = extractor_logits(net, vqgm, test.tokens)
    assert logits.shape == (16, 2)
    assert binary_accuracy(logits, test.labels) == pytest.approx(m["test"])  # output 1 is the concept
    # the same command again resumes; another concept under the same name is refused, naming both
    again = train_extractor(store, learnable, cfg, tc, name="pair-ce")
    assert again.resumed_from_epoch == 10 and again.info.ckpt_sha256 == result.info.ckpt_sha256
    other = add(store, learnable, "birds", "goldfinch", "water ouzel")
    with pytest.raises(CortexError, match=r"for concept 'pair' \(member ids 0, 3\), not concept 'birds'"):
        train_extractor(store, learnable, *concept_configs(learnable, other), name="pair-ce")
    # Table 1: the class extractor's top-k beside the concept extractor's binary accuracy; evaluations skip it
    train_extractor(store, learnable, *default_configs(learnable, "ce", **{**SMALL, "epochs": 1, "train_per_class": 4}))
    scores = {s.name: s for s in extractor_evaluation.test_extractors(store, learnable)}
    assert set(scores["ce"].accuracy) == {"top1", "top3", "top5", "top10"} and scores["ce"].concept == ""
    own = scores["pair-ce"]
    assert own.concept == "pair" and own.classes == ["goldfinch", "analog clock"] and own.n_images == 16
    assert own.accuracy == pytest.approx(m["test"]) and set(own.per_class_top1) == {"goldfinch", "water ouzel", "black grouse", "analog clock"}
    assert [i.name for i in resolve_extractors(store, learnable, "all")] == ["ce"]
    with pytest.raises(CortexError, match="trained for concept 'pair' and explains no class"):
        resolve_extractors(store, learnable, "ce,pair-ce")


def test_indexing_the_concept_with_its_extractor_uses_target_binary_and_guards_the_rest(store, learnable, db_url, cortex_home):
    pair = add(store, learnable, "pair", "goldfinch", "analog clock")
    add(store, learnable, "birds", "goldfinch", "water ouzel")
    train_extractor(store, learnable, *concept_configs(learnable, pair, epochs=1, train_per_class=4, val_per_class=2, test_per_class=2),
                    name="pair-ce")
    ws = Workspace(home=cortex_home, db=db_url, device="cpu")
    results = ws.index("pair", images=2, model="tiny", extractor="pair-ce", samples=2)
    assert [(r.class_name, r.concept, r.target, r.added) for r in results] == [("goldfinch", "pair", "binary", 2),
                                                                                ("analog clock", "pair", "binary", 2)]
    assert ws.top_tokens("pair", k=3, model="tiny", extractor="pair-ce").target == "binary"
    with pytest.raises(CortexError, match="extractor 'pair-ce' was trained for concept 'pair', not 'birds'"):
        ws.index("birds", images=2, model="tiny", extractor="pair-ce", samples=2)
    with pytest.raises(CortexError, match="trained for concept 'pair'.*not class 1; pick another --extractor"):
        ws.index("water ouzel", images=2, model="tiny", extractor="pair-ce", samples=2)
    net = load_extractor(get_extractor(store, learnable, "pair-ce"))
    with pytest.raises(CortexError, match="explains that concept only"):
        require_classes(net, [0])  # what explain / edit / optimize ask of it
    require_classes(net, [])
