"""Issue 31's real-shape check: a LlamaGen GPT-B (111M parameters) and a VQ-16 of the released shapes, random
(seeded) weights saved in the official checkpoint layout, registered, sampled greedily and indexed through the
real CLI. Slow (about a minute of one CPU thread's compute: 256 sampling steps of a 111M GPT twice, with guidance,
and a 256-px VQ-16 decode), so it runs with `pytest -m slow`; the tiny model of test_llamagen_workflow.py covers
the same paths in seconds. Peak memory about 1.6 GB (the checkpoints are memory-mapped when the CLI loads them).
"""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cortex_cli.backends import llamagen as lg
from cortex_cli.cli import app
from cortex_cli.core.environment import default_db_url
from cortex_cli.images.pngmeta import read_png
from cortex_cli.models import registry as model_registry
from cortex_cli.store.database import open_store
from tests.search.test_edit import register_tiny_ce

runner = CliRunner()
NAME = "lg-b"


def cortex(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def save_official(module: torch.nn.Module, path: Path) -> Path:
    """The official training checkpoint layout: {"model": state_dict}, float32."""
    torch.save({"model": {k: v.float().contiguous() for k, v in module.state_dict().items()}}, path)
    return path


@pytest.fixture
def one_thread():
    """One torch thread: steadier on a loaded CPU; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def gpt_b_files(tmp_path, one_thread):
    """(GPT-B checkpoint, VQ-16 checkpoint) of random seeded weights; the loaded model leaves the process cache after."""
    with torch.device("meta"):
        gpt, vq = lg.LlamaGenGPT(lg.GPT_MODELS["GPT-B"]), lg.LlamaGenVQ(lg.VQ_MODELS[16])
    # to_empty leaves the GPT's rotary table uninitialised: it is no part of the checkpoint (the loader rebuilds it)
    gpt, vq = lg.seeded_init(gpt.to_empty(device="cpu"), 1), lg.seeded_init(vq.to_empty(device="cpu"), 2)
    assert 110e6 < sum(p.numel() for p in gpt.parameters()) < 112e6  # "GPT-B: 111M"
    files = save_official(gpt, tmp_path / "c2i_B_256.pt"), save_official(vq, tmp_path / "vq_ds16_c2i.pt")
    del gpt, vq
    gc.collect()
    yield files
    for key in [k for k in model_registry._MODEL_CACHE if str(tmp_path) in str(k)]:  # noqa: SLF001  free the 111M model
        del model_registry._MODEL_CACHE[key]  # noqa: SLF001
    gc.collect()


@pytest.mark.slow
def test_gpt_b_registers_generates_greedily_and_indexes(tmp_path, gpt_b_files):
    """GPT-B + VQ-16 at 256 px through `models add`, `generate --top-k 1` (CFG 4.0, the default) and `index`.

    Measured once on a shared 2-core CPU under load ~9: 135 s wall in pytest (11 s building and saving the
    checkpoints, 118 s the CLI commands), 56 s of CPU time on one torch thread; peak RSS 1.6 GB.
    """
    start = time.perf_counter()
    gpt_ckpt, vq_ckpt = gpt_b_files
    added = cortex("models", "add", NAME, "--backend", "llamagen", "--gpt-ckpt", gpt_ckpt, "--vq-ckpt", vq_ckpt,
                   "--gpt-model", "GPT-B", "--image-size", 256, "--labels", "imagenet", "--json")
    assert added.exit_code == 0, added.output
    info = json.loads(added.output)
    assert (info["backend"], info["n_embed"], info["embed_dim"], info["grid"], info["n_classes"]) == ("llamagen", 16384, 8, 16, 1000)

    out = tmp_path / "png"
    args = ("generate", "--model", NAME, "--class", 1, "-n", 1, "--top-k", 1, "--out", out, "--json")
    done = cortex(*args)
    assert done.exit_code == 0, done.output
    first = json.loads(done.output)
    assert (first["class_id"], first["added"], first["skipped"]) == (1, 1, 0)
    (png,) = out.glob("*.png")
    assert Image.open(png).size == (256, 256)
    tokens = read_png(png).tokens
    assert tuple(tokens.shape) == (16, 16) and 0 <= int(tokens.min()) and int(tokens.max()) < 16384

    again = cortex(*args)  # idempotent: the same image is already stored, and its PNG is there
    assert again.exit_code == 0, again.output
    second = json.loads(again.output)
    assert (second["added"], second["skipped"], second["image_ids"]) == (0, 1, first["image_ids"])
    assert list(out.glob("*.png")) == [png] and torch.equal(read_png(png).tokens, tokens)

    store = open_store(default_db_url())  # the CLI's store: the test's CORTEX_HOME
    try:
        register_tiny_ce(store, model_registry.get_model(store, NAME), tmp_path)  # in_channels 8, grid 16
    finally:
        store.close()
    indexed = cortex("index", "--model", NAME, "--class", 1, "--images", 2, "--extractor", "ce", "--samples", 2, "--json")
    assert indexed.exit_code == 0, indexed.output
    result = json.loads(indexed.output)
    assert (result["class_id"], result["images"], result["added"], result["extractor"]) == (1, 2, 2, "ce")
    print(f"GPT-B real-shape CLI path: {time.perf_counter() - start:.1f} s after building the checkpoints")
