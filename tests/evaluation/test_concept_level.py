"""evaluation/concept_level.py on the tiny model (real taming decoder, real SQLite, toy judge): T*_concept masking."""

from __future__ import annotations

import pytest
import torch

from cortex_cli.models import registry as model_registry
from dataclasses import replace

from cortex_cli.core.errors import CortexError
from cortex_cli.evaluation.concept_level import ConceptLevelSettings, cut_positions, positions_of, run_concept_level
from cortex_cli.evaluation.masking import background_token, fill_tokens
from cortex_cli.images.generation import image_tokens, list_images

from eval_helpers import toy_judge


def test_concept_level_masks_exactly_the_set_tokens(store, setup, tmp_path):
    model, names = setup
    settings = ConceptLevelSettings(k=5, top_n=4, train_images=3, images_per_class=2, classes=names, samples=2)
    result = run_concept_level(store, model, settings=settings, out_dir=tmp_path, judges=[toy_judge()])
    assert result.methods == ["ce", "baseline", "specific", "baseline@ce"]
    cells = result.table["toy"]
    test = list_images(store, model, None, "test")
    tokens = image_tokens(store, model, [i for i, _, _ in test])
    by_id = {c.class_id: c.name for c in model_registry.classes(store, model)}
    expected_n = [len(positions_of(t, result.concept_tokens["ce"][by_id[c]])) for t, (_, c, _) in zip(tokens, test)]
    assert cells["ce"].mean_n == pytest.approx(sum(expected_n) / len(expected_n))
    assert cells["baseline@ce"].mean_n <= cells["ce"].mean_n + 1e-9
    assert all(len(v) == 5 for v in result.concept_tokens["baseline"].values())
    for e in cells.values():  # before-numbers are shared, deltas are after - before
        assert e.acc == cells["ce"].acc and e.delta_p == pytest.approx(e.p_after - e.p)


def test_positions_and_cut_positions():
    grid = torch.tensor([[3, 1], [3, 2]])
    assert positions_of(grid, [3]) == [0, 2]
    assert cut_positions(grid, [2, 3], 2) == [3, 0]  # token 2 ranks first, then the first 3 in raster order
    assert cut_positions(grid, [9], 3) == []


def test_concept_level_with_the_token_fill_judges_the_decoded_refilled_grids(store, setup, tmp_path):
    model, names = setup
    judge = toy_judge()
    settings = ConceptLevelSettings(k=5, top_n=4, train_images=3, images_per_class=2, classes=names, samples=2, fill="tokens")
    result = run_concept_level(store, model, settings=settings, out_dir=tmp_path / "tok", judges=[judge])
    black = run_concept_level(store, model, settings=replace(settings, fill="black"), out_dir=tmp_path / "black", judges=[judge])
    test = list_images(store, model, None, "test")
    tokens = image_tokens(store, model, [i for i, _, _ in test])
    labels = torch.tensor([c for _, c, _ in test])
    by_id = {c.class_id: c.name for c in model_registry.classes(store, model)}
    positions = [positions_of(t, result.concept_tokens["ce"][by_id[int(c)]]) for t, c in zip(tokens, labels)]
    vqgm = model_registry.load_model(model)
    refilled = fill_tokens(tokens, positions, fallback=background_token(tokens))
    kept = torch.tensor([not p for p in positions])
    images = torch.where(kept[:, None, None, None], vqgm.decode_tokens(tokens), vqgm.decode_tokens(refilled))
    expected = judge.probabilities(images).gather(1, labels[:, None]).mean().item()
    cell = result.table["toy"]["ce"]
    assert cell.p_after == pytest.approx(expected, abs=1e-5)
    assert cell.mean_n == black.table["toy"]["ce"].mean_n and cell.p == black.table["toy"]["ce"].p  # same positions, same before
    assert result.settings["fill"] == "tokens"
    with pytest.raises(CortexError, match="tokens"):
        run_concept_level(store, model, settings=replace(settings, fill="purple"), out_dir=tmp_path / "bad", judges=[judge])
