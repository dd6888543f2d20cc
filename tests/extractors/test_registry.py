"""extractors/registry.py: register, look up, load (checked against the stored sha256) and bundle extractors."""

from __future__ import annotations

import json

import pytest
import torch

from cortex_cli.core.errors import CortexError
from cortex_cli.extractors.architectures import build_extractor
from cortex_cli.extractors import registry as extractor_registry
from cortex_cli.extractors.registry import (export_bundled, file_sha256, get_extractor, list_extractors, load_extractor, open_with_bundled,
                                            read_state_dict, register_extractor)

from eval_helpers import register_small_extractor


def test_a_registered_extractor_loads_frozen_with_its_weights(store, tiny_model, tmp_path):
    info = register_small_extractor(store, tiny_model, tmp_path, "ce", "ce", seed=3)
    assert get_extractor(store, tiny_model) == info  # 'ce' is the default
    assert info.ckpt_sha256 == file_sha256(info.ckpt_path) and info.hparams == {"toy": True}
    net = load_extractor(info)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    torch.manual_seed(3)
    reference = build_extractor(info.config).eval()  # the same seed: the weights register_small_extractor saved
    e = torch.randn(2, tiny_model.embed_dim, tiny_model.grid, tiny_model.grid)
    torch.testing.assert_close(net(e), reference(e))
    # re-registering a name replaces that row; another name is another extractor
    again = register_small_extractor(store, tiny_model, tmp_path, "ce", "re", seed=4)
    register_small_extractor(store, tiny_model, tmp_path, "ace", "ce")
    assert again.id == info.id and get_extractor(store, tiny_model, "ce").arch == "re"
    assert [i.name for i in list_extractors(store, tiny_model)] == ["ace", "ce"]


def test_lookups_and_registrations_that_fail_say_what_to_do(store, tiny_model, tmp_path):
    with pytest.raises(CortexError, match=r"has no extractor named 're'; run `cortex train-extractor --model tiny --arch re` first"):
        get_extractor(store, tiny_model, "re")
    info = register_small_extractor(store, tiny_model, tmp_path)
    with pytest.raises(CortexError, match=r"no extractor named 'mine' \(registered: ce\).*--arch ce"):
        get_extractor(store, tiny_model, "mine")
    with pytest.raises(CortexError, match="must be letters, digits"):
        register_extractor(store, tiny_model, "a b", info.config, {}, info.ckpt_path, {})
    with pytest.raises(CortexError, match="does not exist"):
        register_extractor(store, tiny_model, "other", info.config, {}, tmp_path / "none.safetensors", {})


def test_a_changed_or_missing_checkpoint_is_refused(store, tiny_model, tmp_path):
    info = register_small_extractor(store, tiny_model, tmp_path)
    path = tmp_path / "ce.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CortexError, match="changed since it was registered"):
        load_extractor(info)
    path.unlink()
    with pytest.raises(CortexError, match="checkpoint of extractor 'ce' is missing"):
        load_extractor(info)


def test_torch_checkpoints_and_bundles_round_trip(store, tiny_model, tmp_path):
    info = register_small_extractor(store, tiny_model, tmp_path)
    state = read_state_dict(info.ckpt_path)
    torch.save({"model": state, "epoch": 3}, tmp_path / "wrapped.pt")
    assert read_state_dict(tmp_path / "wrapped.pt").keys() == state.keys()
    wrong = {k: v for k, v in state.items() if not k.endswith("bias")}
    torch.save(wrong, tmp_path / "wrong.pt")
    bad = register_extractor(store, tiny_model, "wrong", info.config, {}, tmp_path / "wrong.pt", {})
    with pytest.raises(CortexError, match="does not fit extractor 'wrong'"):
        load_extractor(bad)
    weights, meta = export_bundled(info, tmp_path / "bundle")
    assert all(v.dtype == torch.float16 for v in read_state_dict(weights).values() if v.is_floating_point())
    assert json.loads(meta.read_text())["trained_sha256"] == info.ckpt_sha256
    shipped = load_extractor(register_extractor(store, tiny_model, "shipped", info.config, {}, weights, {}))
    e = torch.randn(2, tiny_model.embed_dim, tiny_model.grid, tiny_model.grid)
    torch.testing.assert_close(shipped(e), load_extractor(info)(e), rtol=2e-2, atol=2e-2)  # fp16 weights, fp32 compute


def test_open_with_bundled_registers_the_mini_model_and_its_extractors_and_closes_on_failure(tmp_path, monkeypatch):
    from cortex_cli.models import registry as model_registry
    from cortex_cli.store.database import Store

    store = open_with_bundled(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        mini = model_registry.get_model(store, model_registry.MINI_NAME)
        assert {"ce", "re"} <= {e.name for e in list_extractors(store, mini)}
    finally:
        store.close()
    monkeypatch.setenv("CORTEX_DB", f"sqlite:///{tmp_path / 'env.db'}")
    open_with_bundled().close()  # no URL: $CORTEX_DB
    assert (tmp_path / "env.db").is_file()
    closed = []
    monkeypatch.setattr(Store, "close", lambda self: closed.append(self))

    def broken(store):
        raise CortexError("a broken bundle")

    monkeypatch.setattr(extractor_registry, "ensure_bundled_extractors", broken)
    with pytest.raises(CortexError, match="a broken bundle"):
        open_with_bundled(f"sqlite:///{tmp_path / 'b.db'}")
    assert len(closed) == 1
