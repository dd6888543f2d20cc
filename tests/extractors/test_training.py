"""Training an extractor on generated images: loss goes down, checkpoints round-trip, runs resume."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from cortex_cli import model_registry
from cortex_cli.errors import CortexError
from cortex_cli.extractors import (
    TrainConfig,
    default_configs,
    ensure_bundled_extractors,
    export_bundled,
    get_extractor,
    list_extractors,
    load_extractor,
    train_extractor,
)
from cortex_cli.extractors.evaluation import extractor_logits, load_split, topk_accuracy
from extractor_helpers import learnable_tiny_model

SMALL = dict(width=8, fc_width=16, epochs=3, batch_size=8, train_per_class=6, val_per_class=2, test_per_class=2)  # on `learnable` rows


def small(model, arch="ce", **over):
    return default_configs(model, arch, **{**SMALL, **over})


class Interrupt(Exception):
    pass


@pytest.fixture
def learnable(store, tiny_model_files, tmp_path):
    return learnable_tiny_model(store, tiny_model_files, tmp_path)


def test_presets_follow_the_paper_except_for_the_mini_model(tiny_model):
    cfg, tc = default_configs(tiny_model, "re")
    assert (cfg.in_channels, cfg.grid, cfg.n_classes, cfg.width, cfg.fc_width) == (16, 16, 4, 512, 2048)
    assert (tc.epochs, tc.batch_size, tc.lr, tc.weight_decay, tc.step_size, tc.gamma) == (80, 256, 1e-3, 1e-4, 20, 0.1)
    assert (tc.train_per_class, tc.val_per_class, tc.test_per_class) == (1000, 300, 50)
    mini = model_registry.ModelInfo(99, "mini", "", "", 128, 32, 16, 64, "mini", 13)
    cfg, tc = default_configs(mini, "ce")
    assert (cfg.in_channels, cfg.width, cfg.fc_width, cfg.n_classes) == (32, 64, 512, 13)
    assert (tc.epochs, tc.step_size, tc.train_per_class, tc.lr) == (30, 10, 300, 1e-3)
    with pytest.raises(CortexError, match="epochs must be at least 1"):
        default_configs(tiny_model, "ce", epochs=0)


def test_short_training_lowers_the_loss_and_registers_the_extractor(store, learnable, cortex_home):
    tiny_model = learnable
    cfg, tc = small(tiny_model, epochs=10, train_per_class=24, val_per_class=4, test_per_class=4, width=16, fc_width=32)
    result = train_extractor(store, tiny_model, cfg, tc)
    losses = [h["train_loss"] for h in result.history]
    assert [h["epoch"] for h in result.history] == list(range(1, 11))
    assert losses[-1] < 0.8 * losses[0]
    assert result.info.metrics["test"]["top1"] >= 0.75  # 4 classes: chance is 0.25
    assert result.resumed_from_epoch is None
    assert result.best_val_acc == max(h["val_acc"] for h in result.history)
    info = get_extractor(store, tiny_model)  # default name 'ce'
    assert info.name == "ce" and info.arch == "ce" and info.config == cfg
    assert info.hparams["epochs"] == 10 and info.hparams["preset"] == "paper"
    assert set(info.metrics["test"]) == {"top1", "top3", "top5", "top10"}
    assert info.ckpt_path.startswith(str(cortex_home / "extractors" / "tiny" / "ce"))
    assert [i.name for i in list_extractors(store, tiny_model)] == ["ce"]


def test_checkpoint_round_trip_gives_identical_logits(store, learnable, tmp_path):
    tiny_model = learnable
    cfg, tc = small(tiny_model, "re", epochs=2)
    result = train_extractor(store, tiny_model, cfg, tc, out_dir=tmp_path / "run")
    net = load_extractor(result.info)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    vqgm = model_registry.load_model(tiny_model)
    test = load_split(store, tiny_model, "test", tc.test_per_class)
    logits = extractor_logits(net, vqgm, test.tokens)
    # the metrics recorded by training (in-memory network) are reproduced by the loaded one
    assert topk_accuracy(logits, test.labels) == result.info.metrics["test"]
    from cortex_cli.extractors.architectures import build_extractor

    ref = build_extractor(cfg)
    ref.load_state_dict(load_file(result.info.ckpt_path))
    assert torch.equal(extractor_logits(ref, vqgm, test.tokens), logits)

    # fp16 bundle: registered for the mini model only, so check the files and their loading directly
    weights, meta = export_bundled(result.info, tmp_path / "bundle")
    assert all(v.dtype == torch.float16 for k, v in load_file(str(weights)).items() if v.is_floating_point())
    from dataclasses import replace
    from cortex_cli.extractors.registry import file_sha256

    half = load_extractor(replace(result.info, ckpt_path=str(weights), ckpt_sha256=file_sha256(weights)))
    assert torch.allclose(extractor_logits(half, vqgm, test.tokens), logits, atol=5e-2, rtol=1e-2)

    with open(result.info.ckpt_path, "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(CortexError, match="changed since it was registered"):
        load_extractor(result.info)


def test_interrupted_run_resumes_from_the_last_finished_epoch_with_identical_weights(store, learnable, tmp_path):
    tiny_model = learnable
    cfg, tc = small(tiny_model, epochs=3)
    full = train_extractor(store, tiny_model, cfg, tc, name="full", out_dir=tmp_path / "full")

    def crash_in_epoch_2(done, total, info=""):
        if info.startswith("epoch 2/3") and "val" not in info and done % 3 == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_extractor(store, tiny_model, cfg, tc, name="cut", out_dir=tmp_path / "cut", progress=crash_in_epoch_2)
    saved = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    assert saved["epoch"] == 1
    with pytest.raises(CortexError, match="no extractor named 'cut'"):
        get_extractor(store, tiny_model, "cut")

    seen = []
    resumed = train_extractor(store, tiny_model, cfg, tc, name="cut", out_dir=tmp_path / "cut",
                              progress=lambda d, t, info="": seen.append(info))
    assert resumed.resumed_from_epoch == 1
    assert not any(s.startswith("epoch 1/3") for s in seen)  # epoch 1 was not trained again
    assert resumed.history == full.history
    a, b = load_file(full.info.ckpt_path), load_file(resumed.info.ckpt_path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    last_a = torch.load(tmp_path / "full" / "last.pt", weights_only=False)["model"]
    last_b = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)

    # a finished run reruns as a no-op that re-registers; other settings are refused unless --restart
    again = train_extractor(store, tiny_model, cfg, tc, name="cut", out_dir=tmp_path / "cut")
    assert again.resumed_from_epoch == 3 and again.history == full.history
    other = TrainConfig(**{**tc.__dict__, "lr": 5e-4})
    with pytest.raises(CortexError, match="other settings.*--restart"):
        train_extractor(store, tiny_model, cfg, other, name="cut", out_dir=tmp_path / "cut")
    fresh = train_extractor(store, tiny_model, cfg, other, name="cut", out_dir=tmp_path / "cut", restart=True)
    assert fresh.resumed_from_epoch is None and get_extractor(store, tiny_model, "cut").hparams["lr"] == 5e-4


def test_sizes_that_do_not_fit_the_model_are_refused(store, tiny_model):
    cfg, tc = small(tiny_model)
    cfg.in_channels = 32
    with pytest.raises(CortexError, match="does not fit model 'tiny'"):
        train_extractor(store, tiny_model, cfg, tc)
    cfg, tc = small(tiny_model, n_classes=3)
    with pytest.raises(CortexError, match="3 outputs"):
        train_extractor(store, tiny_model, cfg, tc)


def test_bundled_extractors_register_for_the_mini_model_only_and_yield_to_user_ones(store, learnable, tmp_path):
    tiny_model = learnable
    cfg, tc = small(tiny_model, epochs=1)
    result = train_extractor(store, tiny_model, cfg, tc)
    bundle = tmp_path / "bundle"
    export_bundled(result.info, bundle)
    ensure_bundled_extractors(store, bundle)  # no 'mini' model in this database: nothing happens
    assert [i.name for i in list_extractors(store, tiny_model)] == ["ce"]
    # pretend the tiny model is the bundled mini model
    from sqlalchemy import update
    from cortex_cli.store.schema import ModelRow

    with store.session() as s, s.begin():
        s.execute(update(ModelRow).where(ModelRow.id == tiny_model.id).values(name="mini"))
    ensure_bundled_extractors(store, bundle)
    info = get_extractor(store, tiny_model, "ce")
    assert info.ckpt_path == result.info.ckpt_path  # the user's own 'ce' wins
    with store.session() as s, s.begin():
        from cortex_cli.store.schema import ExtractorRow

        s.execute(ExtractorRow.__table__.delete())
    ensure_bundled_extractors(store, bundle)
    info = get_extractor(store, tiny_model, "ce")
    assert info.ckpt_path == str((bundle / "extractor_ce.safetensors").resolve())
    assert info.metrics == result.info.metrics and info.config == cfg
    load_extractor(info)  # fp16 file, sha verified
