"""Shared helpers of the extractor tests: the tiny model with class-dependent stored images."""

from __future__ import annotations

import torch

from cortex_cli.models import registry as model_registry


def learnable_tiny_model(store, tiny_model_files, tmp_path, n_train: int = 24, n_eval: int = 4):
    """The tiny model with a trained-scale codebook, and stored images whose tokens depend on the class.

    The tiny model's random-init codebook has entries of size ~1/K (E std 0.009), far below what a
    trained VQGAN has; its batch-norm running variances would need hundreds of steps to settle, so
    the codebook is scaled by 100 (E std ~0.9). Class c draws 80% of its tokens from 16c..16c+15.
    The rows carry the seeds and sampler label that `ensure_images` looks for, so training finds
    them instead of sampling the untrained tiny prior (whose tokens barely depend on the class).
    """
    config, ckpt, labels = tiny_model_files
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    key = "first_stage_model.quantize.embedding.weight"
    state["state_dict"][key] = state["state_dict"][key] * 100
    scaled = tmp_path / "scaled.ckpt"
    torch.save(state, scaled)
    tiny_model = model_registry.add_model(store, "tiny", config, scaled, str(labels))
    from cortex_cli.images.generation import default_sampler
    from cortex_cli.store.schema import ImageRow
    from cortex_cli.images.token_blobs import pack_tokens

    label = default_sampler(model_registry.load_model(tiny_model)).label()
    gen = torch.Generator().manual_seed(0)
    rows = []
    for cls in model_registry.classes(store, tiny_model):
        for split, n in (("train", n_train), ("val", n_eval), ("test", n_eval)):
            for seed in range(n):
                own = torch.randint(16 * cls.class_id, 16 * cls.class_id + 16, (16, 16), generator=gen)
                noise = torch.randint(0, 64, (16, 16), generator=gen)
                grid = torch.where(torch.rand(16, 16, generator=gen) < 0.8, own, noise)
                rows.append(ImageRow(model_id=tiny_model.id, class_pk=cls.pk, split=split, seed=seed, sampler=label,
                                     tokens=pack_tokens(grid, tiny_model.n_embed)))
    with store.session() as s, s.begin():
        s.add_all(rows)
    return tiny_model
