import sys

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
