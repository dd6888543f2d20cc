import dataclasses
import json
from collections import Counter

import pytest
import torch
import yaml
from sqlalchemy import select

from cortex_cli.images import generation
from cortex_cli.models import registry as model_registry
from cortex_cli.backends.base import SamplerSettings, image_generators, image_streams
from cortex_cli.cli import app
from cortex_cli.core.errors import CortexError
from cortex_cli.images.pngmeta import read_png
from cortex_cli.core.seeding import derive_seed
from cortex_cli.store.schema import ImageRow, TokenCountRow
from typer.testing import CliRunner


pytestmark = pytest.mark.both_backends  # store/db_url tests run on SQLite and PostgreSQL


def _counts(store, model):
    with store.session() as s:
        rows = s.scalars(select(TokenCountRow).where(TokenCountRow.model_id == model.id)).all()
        return {(r.class_pk, r.split, r.token): (r.count, r.n_images) for r in rows}


def _recount(store, model):
    """token_counts recomputed in Python from the stored grids."""
    out: dict = {}
    with store.session() as s:
        rows = s.execute(select(ImageRow.id, ImageRow.class_pk, ImageRow.split).where(ImageRow.model_id == model.id)).all()
    for image_id, class_pk, split in rows:
        tokens = generation.image_tokens(store, model, [image_id])[0].flatten().tolist()
        for token, occurrences in Counter(tokens).items():
            count, n_images = out.get((class_pk, split, token), (0, 0))
            out[(class_pk, split, token)] = (count + occurrences, n_images + 1)
    return out


def test_generate_is_idempotent_and_counts_tokens(store, tiny_model):
    cls = model_registry.resolve_class(store, tiny_model, "goldfinch")
    first = generation.generate(store, tiny_model, cls, 3, seed=10, batch_size=2)
    assert (first.added, first.skipped, first.requested, first.split) == (3, 0, 3, "train")
    assert first.sampler == "top_k=64,top_p=0.92,temperature=1,noise=philox"  # ImageNet default, top-k capped at K
    counts = _counts(store, tiny_model)
    assert counts == _recount(store, tiny_model)
    assert sum(c for c, _ in counts.values()) == 3 * 256
    again = generation.generate(store, tiny_model, cls, 3, seed=10, batch_size=3)
    assert (again.added, again.skipped, again.image_ids) == (0, 3, first.image_ids)
    assert _counts(store, tiny_model) == counts
    more = generation.generate(store, tiny_model, cls, 5, seed=10, batch_size=3)
    assert (more.added, more.skipped, more.image_ids[:3]) == (2, 3, first.image_ids)
    assert _counts(store, tiny_model) == _recount(store, tiny_model)
    assert [seed for _, _, seed in generation.list_images(store, tiny_model, cls, "train")] == [10, 11, 12, 13, 14]


def test_rows_follow_seed_split_and_class_not_batching(store, tiny_model):
    gold, clock = (model_registry.resolve_class(store, tiny_model, c) for c in ("goldfinch", "analog clock"))
    one = generation.generate(store, tiny_model, gold, 3, split="train", seed=0, batch_size=1)
    test = generation.generate(store, tiny_model, gold, 3, split="test", seed=0, batch_size=3)
    other = generation.generate(store, tiny_model, clock, 1, split="train", seed=0)
    a, b = generation.image_tokens(store, tiny_model, one.image_ids), generation.image_tokens(store, tiny_model, test.image_ids)
    assert a.shape == (3, 16, 16) and not any(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], generation.image_tokens(store, tiny_model, other.image_ids)[0])
    vqgm = model_registry.load_model(tiny_model)
    sampler = generation.default_sampler(vqgm)
    classes = [gold] * 3
    expected = vqgm.sample(classes, image_streams(sampler, "tiny", classes, ["test"] * 3, [0, 1, 2]), sampler)
    assert torch.equal(b, expected)  # batch of 3 == what batch 1 would store (sampling is batch-independent)
    reversed_ids = list(reversed(one.image_ids))
    assert torch.equal(generation.image_tokens(store, tiny_model, reversed_ids), a.flip(0))
    listed = generation.list_images(store, tiny_model, None, None)
    assert [i for i, _, _ in listed] == sorted(one.image_ids + test.image_ids + other.image_ids)
    assert {c for _, c, _ in generation.list_images(store, tiny_model, clock, None)} == {3}
    with pytest.raises(CortexError, match="not images of model 'tiny'"):
        generation.image_tokens(store, tiny_model, [one.image_ids[0], 999])


def test_ensure_images_generates_only_missing(store, tiny_model):
    cls = model_registry.resolve_class(store, tiny_model, 1)
    done = []
    ids = generation.ensure_images(store, tiny_model, cls, "val", 2, seed=5, progress=lambda d, t, info="": done.append((d, t)))
    assert done[-1] == (2, 2) and len(ids) == 2
    assert generation.ensure_images(store, tiny_model, cls, "val", 3, seed=5)[:2] == ids
    assert len(generation.list_images(store, tiny_model, cls, "val")) == 3


def test_pngs_carry_tokens_and_are_written_for_existing_rows(store, tiny_model, tmp_path):
    cls = model_registry.resolve_class(store, tiny_model, "water ouzel")
    result = generation.generate(store, tiny_model, cls, 2, split="test", seed=3, out_dir=tmp_path / "a")
    assert [p.rsplit("/", 1)[1] for p in result.png_paths] == ["water-ouzel_test_3.png", "water-ouzel_test_4.png"]
    stored = generation.image_tokens(store, tiny_model, result.image_ids)
    for path, tokens, image_id in zip(result.png_paths, stored, result.image_ids):
        png = read_png(path)
        assert torch.equal(png.tokens, tokens) and png.model_name == "tiny" and png.image.size == (64, 64)
        assert png.meta["image_id"] == image_id and png.meta["seed"] in (3, 4) and png.meta["split"] == "test"
    rerun = generation.generate(store, tiny_model, cls, 2, split="test", seed=3, out_dir=tmp_path / "b")
    assert rerun.added == 0 and all(torch.equal(read_png(p).tokens, t) for p, t in zip(rerun.png_paths, stored))


def test_bad_requests(store, tiny_model, tmp_path):
    cls = model_registry.resolve_class(store, tiny_model, 0)
    blocker = tmp_path / "file"
    blocker.write_text("")
    for kwargs, message in [
        (dict(n=0), "positive number"),
        (dict(n=1, split="dev"), "unknown split 'dev'"),
        (dict(n=1, batch_size=0), "batch size"),
        (dict(n=1, out_dir=blocker / "x"), "cannot write PNGs"),
        (dict(n=1, sampler=SamplerSettings(top_p=0.0)), "top-p"),
        (dict(n=1, sampler=SamplerSettings(temperature=0.0)), "temperature"),
    ]:
        n = kwargs.pop("n")
        with pytest.raises(CortexError, match=message):
            generation.generate(store, tiny_model, cls, n, **kwargs)
    with store.session() as s:
        assert s.scalars(select(ImageRow)).all() == []


def test_generate_classes_is_one_job_with_named_progress_and_sampler_overrides(store, tiny_model):
    gold, clock = (model_registry.resolve_class(store, tiny_model, c) for c in ("goldfinch", "analog clock"))
    notes = []
    both = generation.generate_classes(store, tiny_model, [gold, clock], 2, split="val", seed=4, batch_size=3,
                                       progress=lambda done, total, info="": notes.append((done, total, info)))
    assert [(r.class_name, r.requested, r.added, r.split) for r in both] == [("goldfinch", 2, 2, "val"), ("analog clock", 2, 2, "val")]
    assert notes[-1][:2] == (4, 4) and all(info.startswith("goldfinch, analog clock") for _, _, info in notes)
    alone = generation.generate(store, tiny_model, gold, 2, split="val", seed=4)
    assert alone.image_ids == both[0].image_ids and alone.added == 0  # the default sampler: the same rows
    hotter = generation.generate_classes(store, tiny_model, [gold], 1, split="val", seed=4, temperature=2.0)
    assert hotter[0].sampler == "top_k=64,top_p=0.92,temperature=2,noise=philox" and hotter[0].added == 1
    with pytest.raises(CortexError, match="positive number"):
        generation.generate_classes(store, tiny_model, [gold], 0, temperature=0.0)  # the request is checked first
    with pytest.raises(CortexError, match="temperature"):
        generation.generate_classes(store, tiny_model, [gold], 1, temperature=0.0)


def test_default_sampler_reads_the_config_section(tmp_path, tiny_model_files):
    from cortex_cli.backends.taming import load_vqgm

    config, ckpt, _ = tiny_model_files
    cfg = yaml.safe_load(config.read_text())
    cfg["cortex"] = {"sampler": {"top_k": 16, "top_p": 0.9, "temperature": 0.8}}
    path = tmp_path / "with_sampler.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert generation.default_sampler(load_vqgm(path, ckpt)) == SamplerSettings(top_k=16, top_p=0.9, temperature=0.8)
    assert generation.default_sampler(load_vqgm(config, ckpt)) == SamplerSettings(top_k=64, top_p=0.92, temperature=1.0)


def test_default_sampler_of_the_mini_recipe():
    from omegaconf import OmegaConf

    from cortex_cli.backends.taming import TamingVQGM
    from cortex_cli.miniworld.training import MiniRecipe

    class Configured(TamingVQGM):  # default_sampler reads only .config and .n_embed
        def __init__(self):
            self.config = OmegaConf.create(MiniRecipe().config())
            self.n_embed = 128

    assert generation.default_sampler(Configured()) == SamplerSettings(top_k=MiniRecipe().sampler_top_k, top_p=1.0, temperature=1.0)


def test_generate_cli_json_rerun_and_first_seed(db_url, tiny_model, tmp_path):
    runner = CliRunner()
    args = ["--db", db_url, "generate", "--model", "tiny", "--class", "Dipper", "-n", "2", "--first-seed", "7", "--json", "--top-k", "8"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    payload = json.loads(first.stdout)
    assert (payload["class_name"], payload["added"], payload["sampler"]) == ("water ouzel", 2, "top_k=8,top_p=0.92,temperature=1,noise=philox")
    second = json.loads(runner.invoke(app, args).stdout)
    assert (second["added"], second["skipped"], second["image_ids"]) == (0, 2, payload["image_ids"])
    shifted = runner.invoke(app, [*args, "--first-seed", "8"])  # seeds 8, 9: only 9 is new
    assert json.loads(shifted.stdout)["added"] == 1
    out = tmp_path / "pngs"
    human = runner.invoke(app, ["--db", db_url, "generate", "-m", "tiny", "-c", "0", "-n", "1", "--out", str(out), "--quiet"])
    assert human.exit_code == 0 and "added 1" in human.stdout and str(out) in human.stdout
    assert (out / "goldfinch_train_0.png").is_file()


def test_a_grid_is_the_same_alone_at_batch_2_or_mixed_with_other_classes_at_batch_7(db_url, tiny_model, tmp_path):
    """Issue 29's check: PNG tokens of one class generated alone vs in a job mixed over three classes."""

    runner = CliRunner()
    alone, mixed = tmp_path / "alone", tmp_path / "mixed"
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert runner.invoke(app, ["--db", other, "models", "add", "tiny", "--config", tiny_model.config_path, "--ckpt",
                               tiny_model.ckpt_path, "--labels", tiny_model.labels]).exit_code == 0
    first = runner.invoke(app, ["--db", db_url, "generate", "--model", "tiny", "--class", "goldfinch", "-n", "4", "-b", "2", "--out", str(alone)])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["--db", other, "generate", "--model", "tiny", "--classes", "analog clock,goldfinch,Dipper", "-n", "4",
                                 "-b", "7", "--out", str(mixed)])
    assert second.exit_code == 0, second.output
    names = sorted(p.name for p in alone.iterdir())
    assert len(names) == 4 and len(list(mixed.iterdir())) == 12
    for name in names:
        assert torch.equal(read_png(alone / name).tokens, read_png(mixed / name).tokens), name


def test_the_host_sampler_reproduces_older_stores(store, tiny_model):
    """`--sampler host` is the older sampler: its rows keep the old label and the old generators' draws."""
    gold = model_registry.resolve_class(store, tiny_model, "goldfinch")
    vqgm = model_registry.load_model(tiny_model)
    host = dataclasses.replace(generation.default_sampler(vqgm), noise="host")
    old = generation.generate(store, tiny_model, gold, 2, split="val", sampler=host)
    assert old.sampler == "top_k=64,top_p=0.92,temperature=1"
    expected = vqgm.sample([gold, gold], image_generators([gold, gold], [derive_seed(s, "val") for s in (0, 1)]), host)
    assert torch.equal(generation.image_tokens(store, tiny_model, old.image_ids), expected)
    new = generation.generate(store, tiny_model, gold, 2, split="val")
    assert new.added == 2 and not set(new.image_ids) & set(old.image_ids)  # never mixed under one key
    with pytest.raises(CortexError, match="fp32 only"):
        generation.generate(store, tiny_model, gold, 1, sampler=dataclasses.replace(host, precision="bf16"))


def test_the_cuda_batch_rule_reads_each_backends_prior_shape(monkeypatch):
    """One image's KV cache is 2 x layers x (m^2 + 1) x width values: a LlamaGen GPT-B is not taming's 48 x 1536."""
    from types import SimpleNamespace

    from cortex_cli.backends.base import SamplerSettings
    from cortex_cli.images.generation import default_batch_size

    free = 8 * 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, free))
    plain = SamplerSettings(top_k=1)

    def expected(layers, width, grid, n_embed, guidance=1):
        per_image = (2 * layers * (grid * grid + 1) * width * 4 + 8 * 4 * n_embed) * guidance
        return max(8, min(1024, (free // 2) // per_image // 8 * 8))

    gpt_b = SimpleNamespace(prior_shape=(12, 768), grid=16, n_embed=16384)
    unknown = SimpleNamespace(grid=16, n_embed=16384)
    assert default_batch_size(gpt_b, plain, "cuda") == expected(12, 768, 16, 16384) == 216
    assert default_batch_size(unknown, plain, "cuda") == expected(48, 1536, 16, 16384) == 24
    assert default_batch_size(gpt_b, SamplerSettings(top_k=1, guidance=4.0), "cuda") == expected(12, 768, 16, 16384, 2)
    assert default_batch_size(gpt_b, plain, "cpu") == 32
