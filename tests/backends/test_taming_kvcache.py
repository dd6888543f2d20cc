"""The preallocated KV cache against taming's own `forward_with_past` (which re-concatenates the past)."""

import contextlib
import io

import torch

from cortex_cli.backends.taming import KVCache, forward_cached, load_vqgm


def test_cached_logits_are_bit_identical_to_taming_forward_with_past(tiny_model_files):
    config, ckpt, _ = tiny_model_files
    with contextlib.redirect_stdout(io.StringIO()):
        vqgm = load_vqgm(config, ckpt)
    gpt = vqgm.net.transformer
    batch, steps = 3, 40
    _, cond = vqgm.net.encode_to_c(torch.tensor([[0], [1], [3]]))
    fed = torch.randint(0, vqgm.n_embed, (batch, steps), generator=torch.Generator().manual_seed(0))
    cache = KVCache(gpt, batch, cond.shape[1] + steps, vqgm.device, torch.float32)
    past, x_ref, x_ours = [], cond, cond
    with torch.no_grad():
        for n in range(steps):
            logits, _, present = gpt.forward_with_past(x_ref, past=past or None, past_length=(n + cond.shape[1] - 1) if past else None)
            past.append(present)
            ours = forward_cached(gpt, x_ours, cache)
            assert torch.equal(ours[:, -1], logits[:, -1]), f"step {n}"
            x_ref = x_ours = fed[:, n:n + 1]
    assert cache.length == cond.shape[1] + steps - 1  # the prompt, then one fed token per later step


def test_cache_follows_autocast_dtype(tiny_model_files):
    config, ckpt, _ = tiny_model_files
    with contextlib.redirect_stdout(io.StringIO()):
        vqgm = load_vqgm(config, ckpt)
    gpt = vqgm.net.transformer
    cache = KVCache(gpt, 2, 8, vqgm.device, torch.bfloat16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = forward_cached(gpt, torch.tensor([[0], [1]]), cache)
        logits = forward_cached(gpt, torch.tensor([[5], [6]]), cache)
    assert cache.keys.dtype == torch.bfloat16 and logits.shape[:2] == (2, 1) and torch.isfinite(logits.float()).all()
