"""The janus backend on a tiny random-weight Janus that transformers builds offline (tests/janus_helpers.py).

The backend against transformers' own Janus code (CFG generation, decoding), strict loading, and
cortex's code paths unchanged on it: registration, generation, extractor training, saliency
index, editing.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

pytest.importorskip("transformers")

from cortex_cli.images import generation
from cortex_cli.models import registry as model_registry  # noqa: E402
from cortex_cli.backends import get_backend  # noqa: E402
from cortex_cli.backends.base import VQGM, SamplerSettings, image_generators, image_streams  # noqa: E402
from cortex_cli.backends.janus import JANUS_SAMPLER  # noqa: E402
from cortex_cli.models.classnames import ClassName  # noqa: E402
from cortex_cli.cli import app  # noqa: E402
from cortex_cli.core.errors import CortexError  # noqa: E402
from janus_helpers import build_tiny_janus  # noqa: E402

TWO_LABELS = "0\tgoldfinch\n1\twater ouzel\n"


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    return build_tiny_janus(tmp_path_factory.mktemp("janus") / "tiny-janus")


@pytest.fixture(scope="module")
def vqgm(snapshot):
    backend = get_backend("janus")
    return backend.load(backend.locate(snapshot, None, None), "cpu")


@pytest.fixture
def janus_model(store, snapshot, tmp_path):
    labels = tmp_path / "labels.tsv"
    labels.write_text(TWO_LABELS)
    return model_registry.add_model(store, "tiny-janus", labels=str(labels), backend="janus", path=snapshot)


def concepts(*names):
    return [ClassName(i, name) for i, name in enumerate(names)]


def test_tiny_janus_is_a_vqgm(vqgm, snapshot):
    assert isinstance(vqgm, VQGM) and vqgm.backend == "janus"
    assert (vqgm.n_embed, vqgm.embed_dim, vqgm.grid, vqgm.image_size, vqgm.n_classes) == (64, 8, 4, 16, 0)
    assert vqgm.codebook.shape == (64, 8) and torch.allclose(vqgm.codebook.norm(dim=1), torch.ones(64))
    tokens = torch.arange(16).reshape(1, 4, 4)
    assert torch.equal(vqgm.embed(tokens)[0, :, 2, 3], vqgm.codebook[11])  # E is C's rows on the grid
    shape = get_backend("janus").describe(get_backend("janus").locate(snapshot, None, None))
    assert (shape.n_embed, shape.embed_dim, shape.grid, shape.image_size) == (64, 8, 4, 16)
    assert not vqgm.net.training and not any(p.requires_grad for p in vqgm.net.parameters())


def test_a_class_is_a_prompt_in_the_snapshots_chat_template(vqgm):
    assert vqgm.prompt("water ouzel") == "<|User|>: a photo of a water ouzel\n\n<|Assistant|>:"
    ids = vqgm.prompt_ids("water ouzel")
    assert ids[0] == vqgm.processor.tokenizer.bos_token_id and ids[-1] == vqgm.processor.tokenizer.convert_tokens_to_ids("<begin_of_image>")


def test_greedy_cfg_sampling_equals_transformers_generate(vqgm):
    greedy = SamplerSettings(greedy=True, guidance=5.0)
    classes = concepts("goldfinch")
    ours = vqgm.sample(classes, image_generators(classes, [0]), greedy)
    inputs = vqgm.processor(text=[vqgm.prompt("goldfinch")], generation_mode="image", return_tensors="pt")
    theirs = vqgm.net.generate(**inputs, generation_mode="image", do_sample=False, guidance_scale=5.0)
    assert torch.equal(ours.reshape(1, -1), theirs)


def test_seeded_sampling_is_reproducible_and_batch_independent(vqgm):
    settings = vqgm.default_sampler()
    assert settings == JANUS_SAMPLER and settings.label() == "top_k=None,top_p=1,temperature=1,guidance=5,noise=philox"
    classes = concepts("goldfinch", "water ouzel") + [ClassName(0, "goldfinch")]  # prompts of two lengths
    steps = []
    together = vqgm.sample(classes, image_generators(classes, [5, 5, 6]), settings, on_step=lambda d, t: steps.append((d, t)))
    assert together.shape == (3, 4, 4) and together.dtype == torch.long and int(together.max()) < 64
    assert steps[0] == (1, 32) and steps[-1] == (32, 32)  # two prompt lengths: two batches of 16 steps
    alone = torch.cat([vqgm.sample([c], image_generators([c], [s]), settings) for c, s in zip(classes, [5, 5, 6])])
    assert torch.equal(together, alone)
    assert not torch.equal(together[0], together[2])  # another seed, another image
    keys = image_streams(settings, "janus", classes, ["train"] * 3, [5, 5, 6])  # the philox streams `generate` uses
    keyed = vqgm.sample(classes, keys, settings)
    assert torch.equal(keyed, torch.cat([vqgm.sample([c], [k], settings) for c, k in zip(classes, keys)]))
    assert not torch.equal(keyed[0], keyed[2])


def test_decoding_is_transformers_and_encoding_picks_the_nearest_normalised_code(vqgm):
    tokens = torch.randint(0, 64, (2, 4, 4), generator=torch.Generator().manual_seed(0))
    images = vqgm.decode_tokens(tokens)
    assert images.shape == (2, 3, 16, 16) and images.min() >= -1 and images.max() <= 1
    with torch.no_grad():
        theirs = vqgm.net.decode_image_tokens(tokens.reshape(2, -1)).permute(0, 3, 1, 2).clamp(-1, 1)
    assert torch.allclose(images, theirs, atol=1e-5)
    codes = vqgm.encode_images(images)
    vq = vqgm.net.model.vqmodel
    with torch.no_grad():
        z = vq.quant_conv(vq.encoder(images)).permute(0, 2, 3, 1).reshape(-1, 8)
    distances = torch.cdist(torch.nn.functional.normalize(z, dim=-1), vqgm.codebook)
    assert torch.equal(codes.reshape(-1), distances.argmin(dim=-1))
    with pytest.raises(CortexError, match="this model takes 16x16"):
        vqgm.encode_images(torch.zeros(1, 3, 32, 32))


def test_loading_is_strict(snapshot, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(snapshot, broken)
    state = load_file(str(broken / "model.safetensors"))
    dropped = "model.generation_head.vision_head.weight"
    save_file({k: v for k, v in state.items() if k != dropped}, str(broken / "model.safetensors"), metadata={"format": "pt"})
    backend = get_backend("janus")
    with pytest.raises(CortexError, match=f"does not match its config.json; missing keys: {dropped}"):
        backend.load(backend.locate(broken, None, None), "cpu")


def test_models_add_backend_janus(db_url, snapshot, tmp_path):
    runner = CliRunner()
    labels = tmp_path / "labels.tsv"
    labels.write_text(TWO_LABELS)
    added = runner.invoke(app, ["--db", db_url, "models", "add", "tj", str(snapshot), "--backend", "janus", "--labels", str(labels), "--json"])
    assert added.exit_code == 0, added.output
    info = json.loads(added.stdout)
    assert (info["backend"], info["n_embed"], info["embed_dim"], info["grid"], info["image_size"], info["n_classes"]) == (
        "janus", 64, 8, 4, 16, 2)
    assert info["config_path"] == info["ckpt_path"] == str(snapshot.resolve())
    no_labels = runner.invoke(app, ["--db", db_url, "models", "add", "tj2", str(snapshot), "--backend", "janus"])
    assert no_labels.exit_code == 1 and no_labels.stderr.strip().startswith("error: a janus model is text-conditional")
    listed = runner.invoke(app, ["--db", db_url, "models", "list", "--json"])
    assert {m["name"]: m["backend"] for m in json.loads(listed.stdout)} == {"mini": "taming", "tj": "janus"}


def test_generation_extractor_index_and_edit_run_on_janus(store, janus_model, tmp_path):
    """cortex's own code paths, unchanged, on a janus model: generate -> train-extractor -> index -> edit."""
    from cortex_cli.search.edit import edit_image
    from cortex_cli.extractors.training import default_configs, train_extractor
    from cortex_cli.index.build import index_class
    from cortex_cli.search.token_selection import OptimizeSettings
    from cortex_cli.images.pngmeta import read_png
    from cortex_cli.search.regions import parse_region
    from cortex_cli.attribution import SaliencySettings

    gold, ouzel = (model_registry.resolve_class(store, janus_model, c) for c in ("goldfinch", "water ouzel"))
    made = generation.generate(store, janus_model, gold, 2, out_dir=tmp_path / "pngs")
    assert made.added == 2 and made.sampler == JANUS_SAMPLER.label()
    png = read_png(made.png_paths[0])
    assert png.model_name == "tiny-janus" and torch.equal(png.tokens, generation.image_tokens(store, janus_model, made.image_ids[:1])[0])
    assert generation.generate(store, janus_model, gold, 2).skipped == 2  # idempotent, as on taming

    cfg, tc = default_configs(janus_model, "ce", width=8, fc_width=16, epochs=2, batch_size=2,
                              train_per_class=2, val_per_class=1, test_per_class=1)
    trained = train_extractor(store, janus_model, cfg, tc, out_dir=tmp_path / "ce")
    assert [h["epoch"] for h in trained.history] == [1, 2] and trained.info.name == "ce"

    indexed = index_class(store, janus_model, trained.info, gold, n_images=2, settings=SaliencySettings(samples=2, top_n=5))
    assert (indexed.added, indexed.images) == (2, 2)

    edited = edit_image(store, janus_model, made.png_paths[0], ouzel, parse_region("1:3,1:3", janus_model.grid),
                        OptimizeSettings(steps=3, init="random"), extractor_name="ce", out_dir=tmp_path / "edits")
    outside = torch.ones(4, 4, dtype=torch.bool)
    outside[1:3, 1:3] = False
    result = torch.tensor(edited.result_tokens).reshape(4, 4)
    assert torch.equal(result[outside], png.tokens[outside]) and read_png(edited.output_path).model_name == "tiny-janus"
