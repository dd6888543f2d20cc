"""The train-mini pipeline end to end with tiny step counts (the recipe, not the quality)."""

from __future__ import annotations

import dataclasses
import json

from cortex_cli.backends.taming import load_vqgm
from cortex_cli.miniworld import training
from cortex_cli.miniworld.training import MiniRecipe, build_mini, train_mini
from cortex_cli.models.registry import BUNDLED_DIR, MINI_NAME


def test_build_mini_writes_loadable_weights_and_resumes(tmp_path):
    recipe = MiniRecipe(vq_images_per_concept=2, vq_steps=2, vq_batch=4, gpt_images_per_concept=2, gpt_steps=2,
                        gpt_batch=4, gpt_refine_images_per_concept=2, gpt_refine_steps=2, judge_images_per_concept=5, judge_epochs=1)
    out = tmp_path / "mini"
    report = build_mini(out, recipe)
    for name in ("config.yaml", "model.safetensors", "judge_resnet.safetensors", "judge_vit.safetensors", "recipe.json"):
        assert (out / name).is_file(), name
    vqgm = load_vqgm(out / "config.yaml", out / "model.safetensors")
    assert vqgm.n_embed == recipe.n_embed and vqgm.grid == 16
    record = json.loads((out / "recipe.json").read_text())
    assert record["recipe"]["seed"] == 0 and "torch" in record["versions"]
    before = (out / "model.safetensors").read_bytes()
    calls = []
    build_mini(out, recipe, progress=lambda stage: (lambda done, total, info: calls.append(stage)))
    assert calls == [], "finished stages must be loaded, not retrained"
    assert (out / "model.safetensors").read_bytes() == before
    assert set(report.seconds) == {"vqgan", "prior", "judge_resnet", "judge_vit"}
    assert (out / ".work" / "gpt_refined.safetensors").is_file()


def test_train_mini_fills_the_recipe_and_leads_each_stages_notes_with_its_name(monkeypatch, tmp_path):
    seen = {}

    def build(out_dir, recipe, work_dir=None, progress=None):
        seen.update(out=out_dir, recipe=recipe, work=work_dir, progress=progress)
        return "built"

    monkeypatch.setattr(training, "build_mini", build)
    notes = []
    assert train_mini(tmp_path / "m", work_dir=tmp_path / "w", seed=3, vq_steps=5, gpt_steps=0,
                      progress=lambda done, total, info="": notes.append((done, total, info))) == "built"
    assert (seen["out"], seen["work"]) == (tmp_path / "m", tmp_path / "w")
    assert seen["recipe"] == dataclasses.replace(MiniRecipe(seed=3), vq_steps=5)  # 0 steps: the recipe's
    seen["progress"]("judge vit")(1, 3, "loss 0.5")
    seen["progress"]("prior")(2, 3)
    assert notes == [(1, 3, "judge vit: loss 0.5"), (2, 3, "prior")]
    train_mini()
    assert (seen["out"], seen["recipe"], seen["work"], seen["progress"]) == (BUNDLED_DIR / MINI_NAME, MiniRecipe(), None, None)
