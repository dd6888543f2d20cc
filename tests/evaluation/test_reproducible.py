"""Evaluations give the same bytes whatever the database held, count exactly the images asked for,
and fail when the saliency ranking is turned upside down."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cortex_cli.models import registry as model_registry
from cortex_cli.evaluation import image_level
from cortex_cli.evaluation.concept_level import ConceptLevelSettings, run_concept_level
from cortex_cli.evaluation.image_level import ImageLevelSettings, run_image_level
from cortex_cli.index.build import index_class
from cortex_cli.judges.pixel_judges import Judge
from cortex_cli.attribution import SaliencySettings
from cortex_cli.store.database import open_store

from eval_helpers import register_small_extractor, toy_judge
from index_helpers import store_random_images


def _home(tmp_path, tiny_model_files, name: str, prefill: bool):
    """A store with the tiny model, one small extractor and random images of two classes; optionally used before."""
    store = open_store(f"sqlite:///{tmp_path / name}.db")
    config, ckpt, labels = tiny_model_files
    model = model_registry.add_model(store, "tiny", config, ckpt, str(labels))
    every = model_registry.classes(store, model)
    if prefill:  # unrelated rows first, so every later row id differs from the fresh store's
        store_random_images(store, model, every[3], 7, split="val", seed=40)
        store_random_images(store, model, every[2], 5, split="test", seed=3)
    info = register_small_extractor(store, model, tmp_path, "ce", "ce")
    for cls in every[:2]:
        store_random_images(store, model, cls, 2, split="test", vocab=40)
    for cls in every:  # the specific baseline compares the training images of every class
        store_random_images(store, model, cls, 3, split="train", vocab=40)
    if prefill:  # and an index that covers more training images than the evaluation asks for
        from cortex_cli.extractors.registry import load_extractor

        for cls in every[:2]:
            index_class(store, model, info, cls, n_images=3, settings=SaliencySettings(samples=2, top_n=4), extractor=load_extractor(info))
    return store, model, tuple(c.name for c in every[:2])


def test_results_do_not_depend_on_database_history(tmp_path, tiny_model_files):
    outputs = []
    for name, prefill in (("fresh", False), ("used", True)):
        store, model, names = _home(tmp_path, tiny_model_files, name, prefill)
        out = tmp_path / f"out-{name}"
        il = run_image_level(store, model, settings=ImageLevelSettings(images_per_class=2, ns=(5, 40), random_draws=2, classes=names, samples=2, train_images=3),
                             out_dir=out, judges=[toy_judge()])
        # the used store indexed 3 training images per class; the evaluation asks for 2 and must count 2
        cl = run_concept_level(store, model, settings=ConceptLevelSettings(k=5, top_n=4, train_images=2, images_per_class=2, classes=names, samples=2),
                               out_dir=out, judges=[toy_judge()])
        outputs.append(((out / "image_level.json").read_bytes(), (out / "concept_level.json").read_bytes(), cl))
        assert il.evaluation_id > 0 and b'"seconds"' not in outputs[-1][0]
        store.close()
    (il_fresh, cl_fresh, fresh), (il_used, cl_used, used) = outputs
    assert il_fresh == il_used
    assert cl_fresh == cl_used
    assert fresh.concept_tokens == used.concept_tokens and set(fresh.methods) >= {"ce", "baseline", "specific"}


class LeftHalfExtractor(nn.Module):
    """Logits from the mean embedding of the grid's left half: only left-half tokens carry saliency."""

    def __init__(self, d: int, classes: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(d, classes, generator=torch.Generator().manual_seed(0)), requires_grad=False)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return e[..., : e.shape[-1] // 2].mean(dim=(2, 3)) @ self.w


class LeftHalfJudge(nn.Module):
    """A judge that looks at the left half of the picture only (mean colour)."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, classes, generator=torch.Generator().manual_seed(1)) * 2, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : x.shape[-1] // 2].mean(dim=(2, 3)) @ self.w


def test_masking_salient_tokens_beats_random_and_a_reversed_ranking_fails(store, tiny_model, tmp_path, monkeypatch):
    """Figure 3 on a planted case: the salient tokens are where the judge looks; least-salient-first is not."""
    register_small_extractor(store, tiny_model, tmp_path, "ce", "ce")
    every = model_registry.classes(store, tiny_model)
    for cls in every[:2]:
        store_random_images(store, tiny_model, cls, 3, split="test", vocab=64)
    monkeypatch.setattr("cortex_cli.extractors.registry.load_extractor",
                        lambda info, device="cpu": LeftHalfExtractor(tiny_model.embed_dim, tiny_model.n_classes).eval())
    judge = Judge("left", LeftHalfJudge().eval(), lambda x: x)
    settings = ImageLevelSettings(images_per_class=3, ns=(20,), random_draws=4, classes=tuple(c.name for c in every[:2]), samples=2, train_images=3)

    def effects(out: str) -> tuple[float, float]:
        curves = run_image_level(store, tiny_model, settings=settings, out_dir=tmp_path / out, judges=[judge]).probability["left"]
        return abs(curves["ce"][1] - curves["ce"][0]), abs(curves["random"][1] - curves["random"][0])

    ours, rnd = effects("right")
    assert ours > 1e-3 and ours > 1.5 * rnd
    # the same evaluation with the ranking reversed (least salient first) masks only the right half
    monkeypatch.setattr(image_level, "ranked_positions", lambda scores: torch.sort(scores.reshape(-1).float(), stable=True).indices)
    reversed_ours, _ = effects("reversed")
    assert not (reversed_ours > 1e-3 and reversed_ours > 1.5 * rnd)
