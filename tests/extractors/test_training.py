"""Training an extractor on generated images: loss goes down, checkpoints round-trip, runs resume."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from cortex_cli.models import registry as model_registry
from cortex_cli.core.errors import CortexError
from cortex_cli.extractors import TrainConfig, default_configs, ensure_bundled_extractors, export_bundled, get_extractor, list_extractors, load_extractor, train_extractor
from cortex_cli.extractors.accuracy import extractor_logits, load_split, topk_accuracy
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


def test_train_from_options_reads_a_subset_or_a_concept_and_checks_first(store, learnable, tmp_path):
    from cortex_cli.extractors.training import train_from_options
    from cortex_cli.models import concepts

    tiny_model = learnable
    recipe = {**SMALL, "epochs": 1}
    concepts.add_concept(store, tiny_model, "dark birds", classes=[model_registry.resolve_class(store, tiny_model, n) for n in (1, 2)])
    for options, message in [
        ({"bundle": True}, "--bundle ships extractors of the bundled mini model only, not of 'tiny'"),
        ({"classes": "0,2", "concept": "dark birds", "name": "x"}, "not both"),
        ({"classes": "0,2"}, "a subset extractor needs its own name"),
        ({"concept": "dark birds"}, "--name dark-birds-ce"),
        ({"concept": "bright birds", "name": "x"}, "has no concept 'bright birds'"),
        ({"name": "x", "epochs": 0}, "epochs must be at least 1"),
    ]:
        with pytest.raises(CortexError, match=message):
            train_from_options(store, tiny_model, "ce", **{**recipe, **options})
    assert list_extractors(store, tiny_model) == []  # refused before anything was trained
    trained = train_from_options(store, tiny_model, "ce", name="birds-ce", classes="goldfinch, black grouse", **recipe)
    assert (trained.model, trained.bundled, trained.result.info.name) == ("tiny", [], "birds-ce")
    assert trained.result.info.config.class_ids == [0, 2] and len(trained.result.history) == 1


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


# -- the training loop at the benchmark's speed (issue 29): precision, no host sync, sharded validation -------------

from cortex_cli.extractors.architectures import ExtractorConfig, build_extractor  # noqa: E402
from cortex_cli.extractors.training import _fingerprint, keeps_resident, make_optimizer, memory_format, train_epoch, validate


class TableVQGM:
    """The one part of a VQGM the loop reads: `embed`, a fixed random codebook (d=4, m=8, K=16)."""

    def __init__(self):
        self.codebook = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))

    def embed(self, tokens):
        return self.codebook[tokens.long()].permute(0, 3, 1, 2).contiguous()


def toy(n=40, seed=0):
    """(config, network, tokens, labels) of a tiny CE on 8x8 grids whose tokens depend on the class."""
    cfg = ExtractorConfig("ce", in_channels=4, grid=8, width=8, fc_width=16, n_classes=3)
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    tokens = torch.where(torch.rand(n, 8, 8, generator=gen) < 0.7, (labels * 5)[:, None, None] + torch.randint(0, 5, (n, 8, 8), generator=gen),
                         torch.randint(0, 16, (n, 8, 8), generator=gen)).to(torch.int32)
    torch.manual_seed(seed)
    return cfg, build_extractor(cfg), tokens, labels


def test_fp32_runs_keep_the_identity_they_had_before_precision_existed(tiny_model):
    import hashlib
    import json
    from dataclasses import asdict, replace

    cfg, tc = small(tiny_model)
    assert tc.precision == "fp32" and "precision" not in tc.record()
    before = {"model": [tiny_model.name, tiny_model.ckpt_path], "config": cfg.to_dict(),
              "train": {k: v for k, v in asdict(tc).items() if k != "precision"}}  # the payload of older cortex
    assert _fingerprint(tiny_model, cfg, tc) == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()
    bf16 = replace(tc, precision="bf16")
    assert bf16.record()["precision"] == "bf16" and _fingerprint(tiny_model, cfg, bf16) != _fingerprint(tiny_model, cfg, tc)
    with pytest.raises(CortexError, match=r"^--precision must be one of fp32, bf16, got 'fp16'$"):
        default_configs(tiny_model, "ce", precision="fp16")


def test_an_epoch_sums_on_the_device_what_the_per_step_host_reads_summed():
    import copy
    import torch.nn.functional as F

    cfg, net, tokens, labels = toy()
    ref_net = copy.deepcopy(net)
    tc = TrainConfig(lr=1e-2)
    opt, ref_opt = make_optimizer(net, tc, "cpu"), torch.optim.Adam(ref_net.parameters(), lr=1e-2, weight_decay=tc.weight_decay)
    vqgm, batches, order = TableVQGM(), [(0, 16), (16, 32), (32, 40)], torch.randperm(40, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(3)  # dropout
    loss_sum, correct, seen = train_epoch(net, opt, vqgm, tokens, labels, order, batches, device=torch.device("cpu"))
    # the loop this replaced: two host reads a step
    torch.manual_seed(3)
    ref_loss, ref_correct, ref_seen = 0.0, 0, 0
    for lo, hi in batches:
        idx = order[lo:hi]
        logits = ref_net(vqgm.embed(tokens[idx]).float())
        loss = F.cross_entropy(logits, labels[idx])
        ref_opt.zero_grad(set_to_none=True)
        loss.backward()
        ref_opt.step()
        ref_loss += float(loss.detach()) * len(idx)
        ref_correct += int((logits.argmax(1) == labels[idx]).sum())
        ref_seen += len(idx)
    assert isinstance(loss_sum, torch.Tensor) and isinstance(correct, torch.Tensor)  # unread until the epoch ends
    assert (float(loss_sum), int(correct), seen) == (ref_loss, ref_correct, ref_seen)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ref_net.state_dict().values()))

    # a rank's share: its every world_size-th sample of each batch
    _, net2, _, _ = toy()
    _, _, seen1 = train_epoch(net2, make_optimizer(net2, tc, "cpu"), vqgm, tokens, labels, order, batches, device=torch.device("cpu"),
                              rank=1, world_size=3)
    assert seen1 == sum(len(range(lo, hi)[1::3]) for lo, hi in batches)


def test_bf16_autocasts_forward_and_loss_and_leaves_weights_fp32():
    cfg, net, tokens, labels = toy()
    seen_dtypes = []
    net.register_forward_hook(lambda module, inputs, output: seen_dtypes.append(output.dtype))
    opt = make_optimizer(net, TrainConfig(), "cpu")
    loss_sum, _, _ = train_epoch(net, opt, TableVQGM(), tokens, labels, torch.arange(40), [(0, 20), (20, 40)],
                                 device=torch.device("cpu"), precision="bf16")
    assert seen_dtypes == [torch.bfloat16, torch.bfloat16] and torch.isfinite(loss_sum)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert all(s["exp_avg"].dtype == torch.float32 for s in opt.state.values())


def test_devices_pick_their_optimizer_layout_and_token_residence():
    _, net, _, _ = toy()
    tc = TrainConfig()
    plain = torch.optim.Adam(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    assert make_optimizer(net, tc, "cpu").defaults == plain.defaults  # the CPU keeps the Adam it always had
    assert make_optimizer(net, tc, "cuda").defaults["fused"] is True  # (built on CPU parameters: the flag is what is checked)
    assert memory_format("cuda") == torch.channels_last and memory_format("cpu") == torch.contiguous_format
    assert not keeps_resident(1, "cpu")
    assert keeps_resident(25, "cuda", free_bytes=100) and not keeps_resident(26, "cuda", free_bytes=100)


def _validate_on_rank(rank, world_size, init, out):
    import torch.distributed as tdist
    from cortex_cli.core.distributed import DistContext

    tdist.init_process_group("gloo", init_method=init, rank=rank, world_size=world_size)
    ctx = DistContext(rank=rank, world_size=world_size, backend="gloo")
    _, net, tokens, labels = toy(n=37)
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_mean.fill_(0.5 * rank)  # as after a DDP epoch: each rank's own last update of the statistics
    ctx.broadcast_tensors(net.buffers())
    got = validate(net, TableVQGM(), tokens, labels, 8, device=torch.device("cpu"), dist=ctx)
    torch.save({"result": got, "mean": bn.running_mean.clone()}, out / f"rank{rank}.pt")
    ctx.destroy()


def test_validation_sharded_over_ranks_equals_one_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_validate_on_rank, args=(2, f"file://{tmp_path / 'rendezvous'}", tmp_path), nprocs=2)
    _, net, tokens, labels = toy(n=37)
    next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)).running_mean.fill_(0.0)  # rank 0's
    loss, acc = validate(net, TableVQGM(), tokens, labels, 8, device=torch.device("cpu"))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for r in ranks:
        assert torch.equal(r["mean"], torch.zeros_like(r["mean"]))  # rank 1 took rank 0's statistics
        assert r["result"][0] == pytest.approx(loss, rel=1e-6) and r["result"][1] == pytest.approx(acc, rel=1e-6)
    assert 0 < acc < 1  # a real accuracy of 37 images, not a degenerate one


def test_bf16_training_on_the_cpu_stays_within_a_margin_of_fp32(store, learnable, tmp_path):
    tiny_model = learnable
    runs = {}
    for precision in ("fp32", "bf16"):
        cfg, tc = small(tiny_model, epochs=5, lr=1e-2, train_per_class=24, val_per_class=4, test_per_class=4, precision=precision)
        runs[precision] = train_extractor(store, tiny_model, cfg, tc, name=precision, out_dir=tmp_path / precision)
    fp32, bf16 = runs["fp32"], runs["bf16"]
    assert "precision" not in fp32.info.hparams and bf16.info.hparams["precision"] == "bf16"
    assert bf16.history != fp32.history  # autocast changed the arithmetic
    losses = [h["train_loss"] for h in bf16.history]
    assert losses[-1] < 0.8 * losses[0]
    # the margin: 4 of the 16 test images (4 classes, chance 0.25)
    assert bf16.info.metrics["test"]["top1"] >= fp32.info.metrics["test"]["top1"] - 0.25
    assert bf16.info.metrics["test"]["top1"] >= 0.75


def test_bad_precision_is_a_one_line_error(db_url, learnable):
    from typer.testing import CliRunner
    from cortex_cli.cli import app

    result = CliRunner().invoke(app, ["--db", db_url, "train-extractor", "--arch", "ce", "--model", "tiny", "--precision", "bad"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "--precision must be one of fp32, bf16, got 'bad'" in lines[0]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here; runs where a GPU is present")
def test_a_cuda_epoch_is_channels_last_fused_and_never_syncs():
    device = torch.device("cuda")
    _, net, tokens, labels = toy()
    net = net.to(device, memory_format=memory_format("cuda"))
    opt = make_optimizer(net, TrainConfig(), "cuda")
    vqgm = TableVQGM()
    vqgm.codebook = vqgm.codebook.to(device)
    tokens, labels, order = tokens.to(device), labels.to(device), torch.arange(40, device=device)
    train_epoch(net, opt, vqgm, tokens, labels, order, [(0, 20)], device=device, precision="bf16")  # warm-up: Adam's state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss_sum, correct, seen = train_epoch(net, opt, vqgm, tokens, labels, order, [(0, 20), (20, 40)], device=device, precision="bf16")
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert opt.defaults["fused"] and next(p for p in net.parameters() if p.dim() == 4).is_contiguous(memory_format=torch.channels_last)
    assert torch.isfinite(loss_sum) and 0 <= int(correct) <= seen == 40
