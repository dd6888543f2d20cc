"""Device paths on a GPU (marker `cuda`): generation, saliency, edit and training with `--device cuda`.

Skipped, with the reason, where no CUDA device is present. `CORTEX_TEST_DEVICE=cpu pytest
tests/test_cuda.py` dry-runs the same tests on the CPU (how they were checked on GPU-less machines).
What is guaranteed on CUDA: a seeded command gives the same rows run to run on the same GPU and
software (generation: per-image CPU generators feed the Gumbel noise, and the forward kernels are
deterministic); fp32 saliency equals the CPU's (TF32 is off for it); the edit optimiser's
gradients go through scatter/index kernels whose atomics may reorder float sums, so its tokens
are stable in practice but not guaranteed bit-identical run to run.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from typer.testing import CliRunner

from cortex_cli.models import registry as model_registry
from cortex_cli.core import philox
from cortex_cli.backends.base import SamplerSettings, image_streams
from cortex_cli.cli import app
from cortex_cli.attribution import SaliencySettings, token_saliency, top_positions
from extractor_helpers import learnable_tiny_model
from tests.search.test_edit import register_tiny_ce, tiny_png

DEVICE = os.environ.get("CORTEX_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                       reason="no CUDA device here; these run where a GPU is present (CORTEX_TEST_DEVICE=cpu dry-runs them)"),
]
runner = CliRunner()


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


def test_seeded_sampling_on_device_is_stable_run_to_run(store, tiny_model):
    vqgm = model_registry.load_model(tiny_model, DEVICE)
    classes = model_registry.classes(store, tiny_model)[:3]
    settings = SamplerSettings(top_k=16)
    streams = image_streams(settings, tiny_model.name, classes, ["train"] * 3, [0, 1, 2])
    first = vqgm.sample(classes, streams, settings)
    again = vqgm.sample(classes, streams, settings)
    assert first.device.type == torch.device(DEVICE).type
    assert torch.equal(first, again)
    assert int(first.min()) >= 0 and int(first.max()) < tiny_model.n_embed
    alone = vqgm.sample(classes[1:2], streams[1:2], settings)
    assert torch.equal(alone[0], first[1])  # an image's tokens do not depend on its batch
    on_cpu = model_registry.load_model(tiny_model, "cpu").sample(classes, streams, settings)
    # the same noise on both devices; logits agree up to float rounding, so near-ties may rarely flip a token
    assert (on_cpu == first.cpu()).float().mean() > 0.95


def test_philox_words_on_device_equal_cpu():
    keys = philox.keys_tensor([0, 1, 2**62 + 3])
    for stream in (0, 7, 2**31 + 5):
        cpu = philox.random_words(keys, 1001, domain=philox.SAMPLING, stream=stream, substream=3)
        dev = philox.random_words(keys.to(DEVICE), 1001, domain=philox.SAMPLING, stream=stream, substream=3)
        assert torch.equal(cpu, dev.cpu())
        assert torch.equal(philox.uniform(keys, 64, domain=1, stream=stream), philox.uniform(keys.to(DEVICE), 64, domain=1, stream=stream).cpu())


def test_saliency_on_device_equals_cpu(store, tiny_model, tmp_path):
    from cortex_cli.extractors.registry import load_extractor

    info = register_tiny_ce(store, tiny_model, tmp_path)
    tokens = torch.randint(0, tiny_model.n_embed, (4, 16, 16), generator=torch.Generator().manual_seed(0))
    maps = {}
    for device in ("cpu", DEVICE):
        vqgm, net = model_registry.load_model(tiny_model, device), load_extractor(info, device)
        maps[device] = token_saliency(net, vqgm.embed(tokens), [0, 1, 2, 3], [10, 11, 12, 13], SaliencySettings(samples=8)).cpu()
    cpu, dev = maps["cpu"], maps[DEVICE]
    torch.testing.assert_close(dev, cpu, rtol=1e-2, atol=1e-2 * float(cpu.abs().max()))  # fp32 saliency turns TF32 off (attribution.common.autocast); with it on, 17% off on an H200
    overlap = [len({p for p, _ in top_positions(a, 20)} & {p for p, _ in top_positions(b, 20)}) for a, b in zip(cpu, dev)]
    assert min(overlap) >= 16


def test_cli_trains_indexes_and_edits_on_device(store, tiny_model_files, tmp_path, db_url):
    model = learnable_tiny_model(store, tiny_model_files, tmp_path)
    base = ["--db", db_url, "--device", DEVICE]
    trained = _ok(runner.invoke(app, [*base, "train-extractor", "--model", "tiny", "--arch", "ce", "--width", "8", "--fc-width", "16",
                                      "--epochs", "1", "--batch-size", "8", "--train-per-class", "6", "--val-per-class", "2",
                                      "--test-per-class", "4", "--json"]))
    assert json.loads(trained.stdout)
    indexed = _ok(runner.invoke(app, [*base, "index", "--model", "tiny", "--class", "goldfinch", "--images", "4", "--json"]))
    assert json.loads(indexed.stdout)
    top = json.loads(_ok(runner.invoke(app, [*base, "top-tokens", "goldfinch", "--model", "tiny", "-k", "5", "--json"])).stdout)
    assert top
    src = tmp_path / "src" / "bird.png"
    tokens = tiny_png(model, src)
    args = [*base, "edit", str(src), "--model", "tiny", "--target", "dipper", "--region", "4:6,4:6", "--steps", "6",
            "--out", str(tmp_path / "out"), "--json"]
    edit = json.loads(_ok(runner.invoke(app, args)).stdout)
    result = torch.tensor([row for row in edit["result_tokens"]])
    outside = torch.ones(16, 16, dtype=torch.bool)
    outside[4:6, 4:6] = False
    assert torch.equal(result[outside], tokens[outside])  # only the region changed
