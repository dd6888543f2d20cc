"""A LlamaGen model through the real CLI: registered from official-layout checkpoints, sampled as the official
code samples, and explained end to end (train-extractor, index, top-tokens, edit) — issue 31's acceptance path on
the tiny reference model of tests/data/llamagen/ (registered under a test-only size name; the released sizes are
checked by name and shape in test_llamagen.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cortex_cli.backends import llamagen as lg
from cortex_cli.cli import app
from cortex_cli.images.pngmeta import read_png

DATA = Path(__file__).resolve().parents[1] / "data" / "llamagen"
CONFIG = json.loads((DATA / "config.json").read_text())
NAMES = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead", "electric ray", "stingray", "cock",
         "hen", "ostrich"]
runner = CliRunner()


@pytest.fixture
def tiny_sizes(monkeypatch):
    """The reference model's sizes under names the registry accepts, as a released size would be."""
    gpt = lg.GPTConfig(n_layer=CONFIG["gpt"]["n_layer"], n_head=CONFIG["gpt"]["n_head"], dim=CONFIG["gpt"]["dim"],
                       multiple_of=CONFIG["gpt"]["multiple_of"])
    vq = lg.VQConfig(ch_mult=tuple(CONFIG["vq"]["ch_mult"]), z_channels=CONFIG["vq"]["z_channels"], channels=CONFIG["vq"]["ch"],
                     res_blocks=CONFIG["vq"]["num_res_blocks"])
    monkeypatch.setitem(lg.GPT_MODELS, "GPT-tiny", gpt)
    monkeypatch.setitem(lg.VQ_MODELS, vq.downsample, vq)
    torch.set_num_threads(1)
    return vq.downsample


def cortex(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def add(tmp_path: Path, downsample: int, name: str = "lg", gpt: Path = DATA / "gpt.pt", vq: Path = DATA / "vq.pt"):
    labels = tmp_path / "labels.tsv"
    labels.write_text("".join(f"{i}\t{n}\n" for i, n in enumerate(NAMES)))
    return cortex("models", "add", name, "--backend", "llamagen", "--gpt-ckpt", gpt, "--vq-ckpt", vq, "--gpt-model", "GPT-tiny",
                  "--image-size", CONFIG["image_size"], "--downsample", downsample, "--labels", labels, "--json")


def test_generate_writes_the_official_greedy_grid_and_pixels(tmp_path, tiny_sizes):
    added = add(tmp_path, tiny_sizes)
    assert added.exit_code == 0, added.output
    info = json.loads(added.output)
    assert (info["backend"], info["n_embed"], info["embed_dim"], info["grid"], info["n_classes"]) == ("llamagen", 64, 8, 6, 10)
    assert dict(info["options"]) == {"downsample": str(tiny_sizes), "gpt_model": "GPT-tiny", "image_size": str(CONFIG["image_size"])}

    reference = torch.load(DATA / "reference.pt", weights_only=True)
    class_id = int(reference["classes"][0])
    out = tmp_path / "png"
    done = cortex("generate", "--model", "lg", "--class", class_id, "-n", 1, "--top-k", 1, "--cfg-scale", 4.0, "--out", out, "--json")
    assert done.exit_code == 0, done.output
    png = next(out.glob("*.png"))
    assert torch.equal(read_png(png).tokens.reshape(-1), reference["greedy_cfg"][0])
    pixels = np.asarray(Image.open(png).convert("RGB"), dtype=np.float32) / 255.0
    official = ((reference["pixels_cfg"][0].clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
    assert np.abs(pixels - official).max() <= 2 / 255

    # --cfg-scale 1 is no guidance: the official unguided grid, stored as another image
    plain = cortex("generate", "--model", "lg", "--class", class_id, "-n", 1, "--top-k", 1, "--cfg-scale", 1, "--out", tmp_path / "plain", "--json")
    assert plain.exit_code == 0, plain.output
    assert torch.equal(read_png(next((tmp_path / "plain").glob("*.png"))).tokens.reshape(-1), reference["greedy_plain"][0])
    bad = cortex("generate", "--model", "lg", "--class", class_id, "-n", 1, "--cfg-scale", 0.5)
    assert bad.exit_code == 1 and "--cfg-scale must be >= 1" in bad.output and len(bad.output.strip().splitlines()) == 1


@pytest.mark.parametrize("damage", ["missing", "extra", "shape"])
def test_a_damaged_checkpoint_is_refused_in_one_line_and_registers_nothing(tmp_path, tiny_sizes, damage):
    state = dict(torch.load(DATA / "gpt.pt", weights_only=True)["model"])
    if damage == "missing":
        state.pop("norm.weight")
    elif damage == "extra":
        state["layers.0.attention.extra"] = torch.zeros(3)
    else:
        state["norm.weight"] = torch.zeros(state["norm.weight"].shape[0] + 1)
    bad = tmp_path / "gpt_bad.pt"
    torch.save({"model": state}, bad)
    before = cortex("models", "list", "--json").output
    refused = add(tmp_path, tiny_sizes, gpt=bad)
    assert refused.exit_code == 1 and len(refused.output.strip().splitlines()) == 1, refused.output
    assert {"missing": "missing", "extra": "unexpected", "shape": "size"}[damage] in refused.output
    assert cortex("models", "list", "--json").output == before


def test_the_taming_backend_refuses_llamagen_options(tmp_path, tiny_model_files):
    config, ckpt, _ = tiny_model_files
    refused = cortex("models", "add", "t2", "--config", config, "--ckpt", ckpt, "--image-size", 64)
    assert refused.exit_code == 1 and "the taming backend takes no --image-size" in refused.output


def test_extractor_index_top_tokens_and_edit_run_on_it(tmp_path, tiny_sizes):
    assert add(tmp_path, tiny_sizes).exit_code == 0
    trained = cortex("train-extractor", "--arch", "re", "--model", "lg", "--name", "fish", "--classes", "tench,goldfish",
                     "--epochs", 1, "--batch-size", 4, "--train-per-class", 4, "--val-per-class", 2, "--test-per-class", 2,
                     "--width", 8, "--fc-width", 16, "--json")
    assert trained.exit_code == 0, trained.output
    indexed = cortex("index", "--model", "lg", "--class", "goldfish", "--images", 2, "--extractor", "fish", "--samples", 2, "--json")
    assert indexed.exit_code == 0, indexed.output
    top = cortex("top-tokens", "goldfish", "--model", "lg", "--extractor", "fish", "-k", 3, "--json")
    assert top.exit_code == 0, top.output
    top = json.loads(top.output)
    assert top["images_indexed"] == 2 and top["rows"] and all(0 <= r["token"] < 64 for r in top["rows"])

    out = tmp_path / "src"
    assert cortex("generate", "--model", "lg", "--class", "goldfish", "-n", 1, "--out", out).exit_code == 0
    edited = cortex("edit", next(out.glob("*.png")), "--target", "tench", "--region", "2:4,2:4", "--extractor", "fish",
                    "--steps", 3, "--out", tmp_path / "edit", "--json")
    assert edited.exit_code == 0, edited.output
    result = json.loads(edited.output)
    assert result["model"] == "lg" and result["target_name"] == "tench" and Path(result["output_path"]).is_file()
    assert len(result["result_tokens"]) == 6 and read_png(result["output_path"]).tokens.shape == (6, 6)
