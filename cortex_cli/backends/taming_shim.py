"""Import shim for the upstream taming-transformers code under current libraries.

Two imports of taming 0.0.6 no longer resolve:
- `pytorch_lightning.utilities.distributed.rank_zero_only` (taming/main.py): the module
  was removed in Lightning 2.x; `rank_zero_only` lives in `pytorch_lightning.utilities.rank_zero`.
- `transformers.top_k_top_p_filtering` (taming/modules/transformer/mingpt.py): removed from
  transformers; mingpt gets cortex's own (`backends.base.top_k_top_p_filtering`).
`install()` makes both resolve, then imports taming. It is idempotent, and it leaves no fake
`transformers` package behind in `sys.modules` (a real one, imported or not, stays as it was).
Only `backends/taming.py` calls it.
"""

from __future__ import annotations

import importlib
import sys
import types

from .base import top_k_top_p_filtering

__all__ = ["install", "top_k_top_p_filtering"]


def _patch_lightning() -> None:
    name = "pytorch_lightning.utilities.distributed"
    if name in sys.modules:
        return
    try:
        importlib.import_module(name)
        return
    except ImportError:
        pass
    from pytorch_lightning.utilities.rank_zero import rank_zero_only  # heavy, and needed only when taming loads

    module = types.ModuleType(name)
    module.rank_zero_only = rank_zero_only
    sys.modules[name] = module


def _import_mingpt() -> types.ModuleType:
    target = "taming.modules.transformer.mingpt"
    if target in sys.modules:
        return sys.modules[target]
    # mingpt only wants `top_k_top_p_filtering` from transformers: a placeholder module serves it
    # without importing the real transformers (seconds), and whatever was in sys.modules comes back
    previous = sys.modules.get("transformers")
    placeholder = types.ModuleType("transformers")
    placeholder.top_k_top_p_filtering = top_k_top_p_filtering
    sys.modules["transformers"] = placeholder
    try:
        return importlib.import_module(target)
    finally:
        if previous is not None:
            sys.modules["transformers"] = previous
        elif sys.modules.get("transformers") is placeholder:
            del sys.modules["transformers"]


def install() -> types.ModuleType:
    """Make taming importable; returns `taming.main` (for `instantiate_from_config`)."""
    _patch_lightning()
    _import_mingpt()
    return importlib.import_module("taming.main")
