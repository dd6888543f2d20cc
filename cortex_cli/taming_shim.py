"""Import shim for the upstream taming-transformers code under current libraries.

Two imports of taming 0.0.6 no longer resolve:
- `pytorch_lightning.utilities.distributed.rank_zero_only` (taming/main.py): the module
  was removed in Lightning 2.x; `rank_zero_only` lives in `pytorch_lightning.utilities.rank_zero`.
- `transformers.top_k_top_p_filtering` (taming/modules/transformer/mingpt.py): removed from
  transformers (and transformers is not a dependency of cortex at all).
`install()` makes both resolve, then imports taming. It is idempotent, and it leaves no fake
`transformers` package behind in `sys.modules`.
"""

from __future__ import annotations

import importlib
import sys
import types

import torch


def top_k_top_p_filtering(
    logits: torch.Tensor,
    top_k: int = 0,
    top_p: float = 1.0,
    filter_value: float = -float("inf"),
    min_tokens_to_keep: int = 1,
) -> torch.Tensor:
    """Mask logits outside the top-k and outside the nucleus of mass top_p (last dim)."""
    logits = logits.clone()
    if top_k and top_k > 0:
        top_k = min(max(top_k, min_tokens_to_keep), logits.size(-1))
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1, None]
        logits = logits.masked_fill(logits < kth, filter_value)
    if top_p is not None and top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative > top_p
        # keep the first token that crosses the threshold, and at least min_tokens_to_keep
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., :min_tokens_to_keep] = False
        logits = logits.masked_fill(remove.scatter(-1, sorted_idx, remove), filter_value)
    return logits


def _patch_lightning() -> None:
    name = "pytorch_lightning.utilities.distributed"
    if name in sys.modules:
        return
    try:
        importlib.import_module(name)
        return
    except ImportError:
        pass
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    module = types.ModuleType(name)
    module.rank_zero_only = rank_zero_only
    sys.modules[name] = module


def _import_mingpt() -> types.ModuleType:
    target = "taming.modules.transformer.mingpt"
    if target in sys.modules:
        return sys.modules[target]
    try:
        import transformers  # noqa: F401

        if not hasattr(transformers, "top_k_top_p_filtering"):
            transformers.top_k_top_p_filtering = top_k_top_p_filtering
        return importlib.import_module(target)
    except ImportError:
        pass
    placeholder = types.ModuleType("transformers")
    placeholder.top_k_top_p_filtering = top_k_top_p_filtering
    sys.modules["transformers"] = placeholder
    try:
        return importlib.import_module(target)
    finally:
        if sys.modules.get("transformers") is placeholder:
            del sys.modules["transformers"]


def install() -> types.ModuleType:
    """Make taming importable; returns `taming.main` (for `instantiate_from_config`)."""
    _patch_lightning()
    _import_mingpt()
    return importlib.import_module("taming.main")
