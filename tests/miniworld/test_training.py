"""The train-mini pipeline end to end with tiny step counts (the recipe, not the quality)."""

from __future__ import annotations

import json

from cortex_cli.backends.taming import load_vqgm
from cortex_cli.miniworld.training import MiniRecipe, build_mini


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
