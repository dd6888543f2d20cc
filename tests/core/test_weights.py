"""Shipped weight files: fp16, or int8 per output channel, and back."""

from __future__ import annotations

import torch

from cortex_cli.models.registry import BUNDLED_DIR
from cortex_cli.core.weights import SCALE_SUFFIX, load_weights, save_weights


def test_int8_round_trip_is_within_half_a_step_per_channel_and_smaller(tmp_path):
    gen = torch.Generator().manual_seed(0)
    state = {
        "conv.weight": torch.randn(8, 3, 3, 3, generator=gen) * torch.logspace(-3, 0, 8).view(-1, 1, 1, 1),
        "bn.weight": torch.rand(8, generator=gen), "bn.num_batches_tracked": torch.tensor(5),
    }
    save_weights(state, tmp_path / "half.safetensors")
    save_weights(state, tmp_path / "int8.safetensors", int8=True)
    assert (tmp_path / "int8.safetensors").stat().st_size < (tmp_path / "half.safetensors").stat().st_size
    back = load_weights(tmp_path / "int8.safetensors")
    assert set(back) == set(state) and back["bn.num_batches_tracked"].item() == 5
    step = state["conv.weight"].abs().flatten(1).amax(1) / 127  # per channel: tiny channels keep their precision
    err = (back["conv.weight"] - state["conv.weight"]).abs().flatten(1).amax(1)
    assert torch.all(err <= step * 0.5 + 1e-3 * step + 1e-6)
    torch.testing.assert_close(back["bn.weight"], state["bn.weight"].half().float())  # vectors stay fp16
    torch.testing.assert_close(load_weights(tmp_path / "half.safetensors")["conv.weight"], state["conv.weight"].half().float())


def test_the_bundled_resnet_judge_ships_as_int8_under_8_mb():
    from safetensors import safe_open

    path = BUNDLED_DIR / "mini" / "judge_resnet.safetensors"
    assert path.stat().st_size < 8 * 2**20
    with safe_open(str(path), "pt") as f:
        assert any(k.endswith(SCALE_SUFFIX) for k in f.keys())
