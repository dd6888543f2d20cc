import sys

import torch

from cortex_cli.backends import taming_shim


def test_install_imports_taming_and_is_idempotent():
    main = taming_shim.install()
    assert main is taming_shim.install()
    assert callable(main.instantiate_from_config)
    from taming.models.cond_transformer import Net2NetTransformer  # noqa: F401
    from taming.modules.transformer import mingpt

    assert hasattr(mingpt.GPT, "forward_with_past")


def test_lightning_distributed_module_resolves():
    taming_shim.install()
    from pytorch_lightning.utilities.distributed import rank_zero_only
    from pytorch_lightning.utilities.rank_zero import rank_zero_only as real

    assert rank_zero_only is real


def test_no_fake_transformers_left_behind():
    before = sys.modules.get("transformers")
    taming_shim.install()
    from taming.modules.transformer import mingpt

    assert mingpt.top_k_top_p_filtering is taming_shim.top_k_top_p_filtering
    after = sys.modules.get("transformers")
    assert after is before  # absent stays absent, a real one stays the same object
    assert after is None or getattr(after, "__file__", None)


def test_top_k_keeps_exactly_k_largest():
    torch.manual_seed(0)
    logits = torch.randn(3, 50)
    out = taming_shim.top_k_top_p_filtering(logits, top_k=5)
    kept = torch.isfinite(out)
    assert kept.sum(dim=1).tolist() == [5, 5, 5]
    assert torch.equal(kept, torch.zeros_like(kept).scatter(1, logits.topk(5, dim=1).indices, True))
    assert torch.equal(out[kept], logits[kept])  # kept logits unchanged
    assert torch.equal(taming_shim.top_k_top_p_filtering(logits, top_k=0), logits)  # 0: off
    assert torch.isfinite(taming_shim.top_k_top_p_filtering(logits, top_k=500)).all()  # k > vocab: all


def test_top_p_keeps_the_nucleus_in_any_order():
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])  # sorted: 0.5, 0.3, 0.15, 0.05
    logits = probs.log()[None]
    keep = lambda p: torch.isfinite(taming_shim.top_k_top_p_filtering(logits, top_p=p))[0].tolist()  # noqa: E731
    assert keep(0.45) == [False, True, False, False]  # 0.5 already covers 0.45
    assert keep(0.7) == [False, True, False, True]  # 0.5 + 0.3 crosses 0.7
    assert keep(0.9) == [False, True, True, True]
    assert keep(1.0) == [True, True, True, True]
    both = torch.isfinite(taming_shim.top_k_top_p_filtering(logits, top_k=1, top_p=0.9))[0].tolist()
    assert both == [False, True, False, False]
