"""What edit and concept search share: the aim, the picture's grid, P(target), the prior NLL pair, the PNGs, the result tail."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from cortex_cli.core.errors import CortexError
from cortex_cli.images.pngmeta import read_png, save_png
from cortex_cli.models.concepts import ConceptInfo
from cortex_cli.models.registry import ClassInfo
from cortex_cli.models.subjects import Subject
from cortex_cli.models.targets import BINARY, Target
from cortex_cli.search.concept_search import ConceptSearchResult
from cortex_cli.search.edit import EditResult
from cortex_cli.search.outcome import (Outcome, aim_at, check_members, encoded_picture, prior_nll_pair, source_tokens,
                                       strip_labels, write_pngs)

GOLD, OUZEL, GROUSE = ClassInfo(1, 0, "goldfinch", ()), ClassInfo(2, 1, "water ouzel", ()), ClassInfo(3, 2, "black grouse", ())
BIRDS = ConceptInfo(7, "tiny", "birds", "classes", [GROUSE, GOLD])
CE = SimpleNamespace(name="ce", config=SimpleNamespace())
MODEL = SimpleNamespace(name="tiny", n_classes=4, grid=4, n_embed=16, image_size=16)


def test_a_class_aims_at_its_logit_and_a_concept_at_its_score():
    one = aim_at(CE, OUZEL, "logit")
    assert (one.goal, one.objective, one.class_ids, one.binary) == (Target(), 1, [1], False)
    assert (one.concept_params(), one.concept_meta()) == ({}, {})
    assert one.outcome_fields() == {"target": "class", "concept": None, "target_classes": [1]}
    many = aim_at(CE, BIRDS, "logit")
    assert many.goal == many.objective == Target("logsumexp", (2, 0))  # 'logit' -> the union's logsumexp
    assert aim_at(CE, Subject.of(BIRDS), "log-prob").objective == Target("log-prob", (2, 0))
    assert many.concept_params() == {"concept": "birds"}
    assert many.concept_meta() == {"concept": "birds", "target": "logsumexp:0,2"}
    assert many.outcome_fields() == {"target": "logsumexp:0,2", "concept": "birds", "target_classes": [2, 0]}
    lone = aim_at(CE, ConceptInfo(8, "tiny", "lone", "classes", [GROUSE]), "logit")
    assert (lone.goal, lone.objective, lone.outcome_fields()["concept"]) == (Target(), 2, "lone")  # its member's logit
    own = aim_at(SimpleNamespace(name="birds-ce", config=SimpleNamespace(concept="birds")), BIRDS, "logit")
    assert own.binary and own.objective == Target(BINARY)


def test_p_target_is_a_class_probability_a_members_sum_or_a_binary_output():
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    torch.testing.assert_close(aim_at(CE, OUZEL, "logit").p_target(probs), torch.tensor([0.2, 0.3]))
    torch.testing.assert_close(aim_at(CE, BIRDS, "logit").p_target(probs), torch.tensor([0.4, 0.6]))
    assert aim_at(CE, ClassInfo(9, 7, "far", ()), "logit").p_target(probs) is None  # beyond these outputs
    own = aim_at(SimpleNamespace(name="birds-ce", config=SimpleNamespace(concept="birds")), BIRDS, "logit")
    torch.testing.assert_close(own.p_target(torch.tensor([[0.25, 0.75]])), torch.tensor([0.75]))
    assert own.p_target(probs) is None


def test_members_are_checked_with_the_callers_words():
    check_members(Subject.of(BIRDS), MODEL, "edit toward", "target class")
    with pytest.raises(CortexError, match="concept 'empty' has no member class to search for"):
        check_members(Subject.of(ConceptInfo(9, "tiny", "empty", "classes", [])), MODEL, "search for", "class")
    with pytest.raises(CortexError, match="target class 7 is outside model 'tiny''s classes"):
        check_members(Subject.of(ClassInfo(9, 7, "far", ())), MODEL, "edit toward", "target class")


class Prior:
    """A VQGM stand-in whose prior NLL of a grid is its first token plus its class id, recording each call."""

    grid = 4

    def __init__(self):
        self.calls = []

    def prior_nll(self, grids, classes):
        self.calls.append((grids.clone(), [c.class_id for c in classes]))
        return grids[:, 0, 0].float() + torch.tensor([float(c.class_id) for c in classes])


def test_the_prior_nll_pair_is_the_result_and_the_source_under_the_lead_class():
    vqgm, result, source = Prior(), torch.full((4, 4), 3), torch.full((4, 4), 5)
    assert prior_nll_pair(vqgm, result, source, Subject.of(BIRDS)) == (5.0, 7.0)  # class 2: a concept's first member
    assert vqgm.calls[-1][1] == [2, 2] and torch.equal(vqgm.calls[-1][0][0], result)
    assert prior_nll_pair(vqgm, result, None, Subject.of(OUZEL)) == (4.0, None)
    assert prior_nll_pair(SimpleNamespace(grid=4), result, source, Subject.of(OUZEL)) == (None, None)  # no prior_nll


def test_strip_labels_and_the_written_pngs(tmp_path):
    assert strip_labels([1, 5], 8, "source") == ["source", "step 1", "step 5", "final (8)"]
    assert strip_labels([], 3) == ["final (3)"]
    tiles = [Image.new("RGB", (16, 16), (i * 60, 0, 0)) for i in range(3)]
    tokens = torch.arange(16).reshape(4, 4)
    written = []
    out, strip = write_pngs(tmp_path / "x", MODEL, tiles[-1], tokens, tiles, strip_labels([2], 4, "start"), ((0, 2), (1, 3)),
                            {"a": 1}, final_meta={"a": 1, "step": 4}, written=written)
    assert (out, strip) == (tmp_path / "x.png", tmp_path / "x-strip.png") and written == [out, strip]
    final = read_png(out)
    assert torch.equal(final.tokens, tokens) and final.meta == {"a": 1, "step": 4} and final.model_name == "tiny"
    strip_png = read_png(strip)
    assert strip_png.tokens is None and strip_png.meta == {"a": 1} and strip_png.image.width > 3 * 16


def test_a_pictures_grid_comes_from_its_metadata_checked_or_from_the_vqgan(tmp_path):
    path = tmp_path / "p.png"
    tokens = torch.randint(0, 16, (4, 4), generator=torch.Generator().manual_seed(0))
    save_png(Image.new("RGB", (16, 16)), path, tokens, "tiny", {}, n_embed=16)
    notices = []
    assert torch.equal(source_tokens(read_png(path), MODEL, path, notices), tokens) and notices == []
    with pytest.raises(CortexError, match="made by model 'tiny'; pass --model tiny"):
        source_tokens(read_png(path), SimpleNamespace(**{**vars(MODEL), "name": "other"}), path, notices)
    with pytest.raises(CortexError, match="carries a 4x4 token grid; model 'tiny' uses 8x8"):
        source_tokens(read_png(path), SimpleNamespace(**{**vars(MODEL), "grid": 8}), path, notices)
    with pytest.raises(CortexError, match="token ids up to"):
        source_tokens(read_png(path), SimpleNamespace(**{**vars(MODEL), "n_embed": 2}), path, notices)
    plain = tmp_path / "plain.png"
    Image.new("RGB", (20, 16)).save(plain)
    assert source_tokens(read_png(plain), MODEL, plain, notices) is None
    vqgm = SimpleNamespace(encode_images=lambda x: torch.zeros(x.shape[0], 4, 4, dtype=torch.long))
    assert encoded_picture(read_png(plain), plain, MODEL, vqgm, notices).shape == (4, 4)
    assert notices == ["plain.png carries no cortex tokens; encoded it with the VQGAN at 16x16 px (centre-cropped and resized)"]


@pytest.mark.parametrize(("result", "first"), [(EditResult, "edit_id"), (ConceptSearchResult, "model")])
def test_results_end_with_the_outcome_fields_in_their_order(result, first):
    names = [f.name for f in dataclasses.fields(result)]
    tail = [f.name for f in dataclasses.fields(Outcome)]
    assert names[0] == first and names[-len(tail):] == tail and len(set(names)) == len(names)
    assert tail == ["params", "notices", "target", "concept", "target_classes", "prior_nll", "prior_nll_source"]
