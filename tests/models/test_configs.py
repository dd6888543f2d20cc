"""model_configs.py: taming Net2NetTransformer configs whose sizes taming itself builds and cortex reads back."""

from __future__ import annotations

import yaml

from cortex_cli.models.configs import net2net_config, write_config


def test_sizes_follow_from_the_arguments():
    cfg = net2net_config(n_classes=10, n_embed=64, ch_mult=(1, 1, 1), resolution=64, n_layer=2, n_embd=32)
    params = cfg["model"]["params"]
    gpt = params["transformer_config"]["params"]
    assert gpt["block_size"] == 16 * 16 + 1  # 64 px / 2**2 -> 16x16 tokens, plus the class token
    assert (gpt["vocab_size"], gpt["n_layer"], gpt["n_embd"]) == (64, 2, 32)
    assert net2net_config(n_classes=1000, n_embed=64)["model"]["params"]["transformer_config"]["params"]["vocab_size"] == 1000
    assert net2net_config(n_classes=4, ch_mult=(1, 2, 2, 4), resolution=128)["model"]["params"]["transformer_config"]["params"]["block_size"] == 16 * 16 + 1
    first = params["first_stage_config"]["params"]
    assert first["n_embed"] == 64 and first["ddconfig"]["ch_mult"] == [1, 1, 1] and first["ddconfig"]["resolution"] == 64
    assert params["cond_stage_config"]["params"] == {"n_classes": 10}


def test_written_config_reads_back_and_the_registry_sees_its_sizes(tmp_path, tiny_model):
    cfg = net2net_config(n_classes=3, n_embed=32, embed_dim=8)
    path = write_config(cfg, tmp_path / "deep" / "dir" / "config.yaml")
    assert yaml.safe_load(path.read_text()) == cfg
    # the tiny model of the tests is net2net_config(..., n_embed=64, embed_dim=16, ch_mult=(1, 1, 1)), built by taming
    assert (tiny_model.grid, tiny_model.n_embed, tiny_model.embed_dim, tiny_model.image_size, tiny_model.n_classes) == (16, 64, 16, 64, 4)
