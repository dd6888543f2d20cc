"""Taming config builders (plain dicts, dumped to yaml) for the mini model and for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def net2net_config(
    *,
    n_classes: int,
    n_embed: int = 256,
    embed_dim: int = 32,
    resolution: int = 64,
    ch: int = 32,
    ch_mult: tuple[int, ...] = (1, 2, 2),
    num_res_blocks: int = 1,
    z_channels: int = 32,
    attn_resolutions: tuple[int, ...] = (),
    n_layer: int = 4,
    n_head: int = 4,
    n_embd: int = 128,
) -> dict[str, Any]:
    """A taming `Net2NetTransformer` config (taming's GroupNorm needs ch a multiple of 32): VQGAN first stage, `Labelator` condition, GPT prior.

    Same targets as taming's `cin_transformer` config; only sizes differ. The grid side is
    resolution / 2**(len(ch_mult) - 1).
    """
    grid = resolution // 2 ** (len(ch_mult) - 1)
    return {
        "model": {
            "target": "taming.models.cond_transformer.Net2NetTransformer",
            "params": {
                "first_stage_key": "image",
                "cond_stage_key": "class_label",
                "transformer_config": {
                    "target": "taming.modules.transformer.mingpt.GPT",
                    "params": {
                        "vocab_size": max(n_embed, n_classes),
                        "block_size": grid * grid + 1,
                        "n_layer": n_layer,
                        "n_head": n_head,
                        "n_embd": n_embd,
                    },
                },
                "first_stage_config": {
                    "target": "taming.models.vqgan.VQModel",
                    "params": {
                        "embed_dim": embed_dim,
                        "n_embed": n_embed,
                        "ddconfig": {
                            "double_z": False,
                            "z_channels": z_channels,
                            "resolution": resolution,
                            "in_channels": 3,
                            "out_ch": 3,
                            "ch": ch,
                            "ch_mult": list(ch_mult),
                            "num_res_blocks": num_res_blocks,
                            "attn_resolutions": list(attn_resolutions),
                            "dropout": 0.0,
                        },
                        "lossconfig": {"target": "taming.modules.losses.DummyLoss"},
                    },
                },
                "cond_stage_config": {
                    "target": "taming.modules.util.Labelator",
                    "params": {"n_classes": n_classes},
                },
            },
        }
    }


def write_config(config: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
