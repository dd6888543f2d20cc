"""The llamagen backend against the official LlamaGen code's outputs (tests/data/llamagen/, made by make_reference.py).

The tiny model there (a 2-layer GPT of width 32 over 64 codes, 10 classes, a 6 x 6 grid; a 4-level VQ of width 32)
was built, run and saved by FoundationVision/LlamaGen's own modules: these tests load its official-layout
checkpoints strictly and compare logits, greedy grids with and without guidance, pixels and codes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cortex_cli.backends import get_backend
from cortex_cli.backends import llamagen as lg
from cortex_cli.backends.base import SamplerSettings, VQGM
from cortex_cli.core.errors import CortexError

DATA = Path(__file__).resolve().parents[1] / "data" / "llamagen"
CONFIG = json.loads((DATA / "config.json").read_text())
GPT = lg.GPTConfig(n_layer=CONFIG["gpt"]["n_layer"], n_head=CONFIG["gpt"]["n_head"], dim=CONFIG["gpt"]["dim"],
                   multiple_of=CONFIG["gpt"]["multiple_of"])
VQ = lg.VQConfig(ch_mult=tuple(CONFIG["vq"]["ch_mult"]), z_channels=CONFIG["vq"]["z_channels"], channels=CONFIG["vq"]["ch"],
                 res_blocks=CONFIG["vq"]["num_res_blocks"])
SIZE = CONFIG["image_size"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One CPU thread: the tiny model's ops are microseconds, and a second thread only waits on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def concept(class_id: int) -> SimpleNamespace:
    return SimpleNamespace(class_id=class_id, name=f"class {class_id}")


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return torch.load(DATA / "reference.pt", weights_only=True)


@pytest.fixture(scope="module")
def model() -> lg.LlamaGenVQGM:
    return lg.load_llamagen(DATA / "gpt.pt", DATA / "vq.pt", GPT, SIZE, VQ)


def _one_line(info: pytest.ExceptionInfo) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


def _official(name: str) -> dict[str, torch.Tensor]:
    return dict(torch.load(DATA / name, weights_only=True)["model"])


# -- loading ------------------------------------------------------------------------------------------------------
def test_official_checkpoints_load_strictly_as_a_vqgm(model):
    assert isinstance(model, VQGM) and model.backend == "llamagen"
    assert (model.n_embed, model.embed_dim, model.grid, model.image_size, model.n_classes) == (64, 8, 6, 48, 10)
    raw = _official("vq.pt")["quantize.embedding.weight"].float()
    assert not torch.allclose(raw.norm(dim=1), torch.ones(64))  # stored unnormalised, read normalised
    assert torch.allclose(model.codebook, torch.nn.functional.normalize(raw, dim=1))
    assert torch.allclose(model.codebook.norm(dim=1), torch.ones(64))
    assert all(not p.requires_grad for p in model.gpt.parameters()) and not model.gpt.training


def test_every_official_checkpoint_layout_reads(tmp_path):
    state = _official("gpt.pt")
    layouts = {"module": {"module": state, "steps": 7}, "state_dict": {"state_dict": state},
               "bare": state, "args": {"model": state, "args": argparse.Namespace(gpt_model="GPT-B"), "steps": 1}}
    for name, obj in layouts.items():
        torch.save(obj, tmp_path / f"{name}.pt")
        assert lg.read_checkpoint(tmp_path / f"{name}.pt").keys() == state.keys(), name


def test_buffers_the_official_code_rebuilds_are_ignored(tmp_path):
    gpt, vq = _official("gpt.pt"), _official("vq.pt")
    gpt["freqs_cis"] = torch.zeros(37, 8, 2)
    gpt["layers.0.attention.kv_cache.k_cache"] = torch.zeros(1, 2, 40, 16)
    vq["quantize.codebook_used"] = torch.zeros(65536)
    torch.save({"model": gpt}, tmp_path / "gpt.pt")
    torch.save({"model": vq}, tmp_path / "vq.pt")
    assert lg.load_llamagen(tmp_path / "gpt.pt", tmp_path / "vq.pt", GPT, SIZE, VQ).n_classes == 10


@pytest.mark.parametrize("change, expected", [
    (lambda s: s.pop("layers.1.feed_forward.w3.weight"), "missing keys: layers.1.feed_forward.w3.weight"),
    (lambda s: s.update({"layers.2.attention.wo.weight": torch.zeros(32, 32)}), "unexpected keys: layers.2.attention.wo.weight"),
    (lambda s: s.update({"norm.weight": torch.ones(33)}), "size of norm.weight is (33,), the LlamaGen GPT has (32,)"),
])
def test_checkpoints_that_do_not_match_are_one_line_errors(tmp_path, change, expected):
    state = _official("gpt.pt")
    change(state)
    torch.save({"model": state}, tmp_path / "gpt.pt")
    with pytest.raises(CortexError) as info:
        lg.load_llamagen(tmp_path / "gpt.pt", DATA / "vq.pt", GPT, SIZE, VQ)
    assert expected in _one_line(info)


def test_bad_names_and_files_are_one_line_errors(tmp_path):
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    torch.save({"model": {"steps": 3}}, tmp_path / "nothing.pt")
    cases = [
        (lambda: lg.load_llamagen(DATA / "gpt.pt", DATA / "vq.pt", "GPT-Q", SIZE, VQ), "unknown gpt_model 'GPT-Q'"),
        (lambda: lg.load_llamagen(DATA / "gpt.pt", DATA / "vq.pt", "GPT-B", SIZE, VQ), "missing keys"),
        (lambda: lg.load_llamagen(DATA / "gpt.pt", DATA / "vq.pt", GPT, 50, VQ), "not a multiple of the VQ's downsampling 8"),
        (lambda: lg.load_llamagen(DATA / "gpt.pt", DATA / "vq.pt", GPT, SIZE, 4), "downsample must be one of 16, 8"),
        (lambda: lg.load_llamagen(DATA / "gpt.pt", tmp_path / "absent.pt", GPT, SIZE, VQ), "does not exist"),
        (lambda: lg.read_checkpoint(tmp_path / "junk.pt"), "is not a torch checkpoint"),
        (lambda: lg.read_checkpoint(tmp_path / "nothing.pt"), "holds no state dict of tensors"),
    ]
    for call, expected in cases:
        with pytest.raises(CortexError) as info:
            call()
        assert expected in _one_line(info)


def test_a_gpt_and_a_vq_of_different_codebooks_are_refused(tmp_path):
    vq = _official("vq.pt")
    vq["quantize.embedding.weight"] = torch.randn(32, 8)
    torch.save({"model": vq}, tmp_path / "vq.pt")
    with pytest.raises(CortexError) as info:
        lg.load_llamagen(DATA / "gpt.pt", tmp_path / "vq.pt", GPT, SIZE, VQ)
    assert "has 64 image tokens but the VQ" in _one_line(info)


def test_a_released_size_is_found_from_the_checkpoint_and_checked():
    meta = {f"layers.{i}.attention.wqkv.weight": torch.empty(2304, 768, device="meta") for i in range(12)}
    meta["tok_embeddings.weight"] = torch.empty(16384, 768, device="meta")
    meta["cls_embedding.embedding_table.weight"] = torch.empty(1001, 768, device="meta")
    vq = {"quantize.embedding.weight": torch.empty(16384, 8, device="meta")}
    spec = lg.plan(meta, vq, None, 256, 16, Path("gpt.pt"), Path("vq.pt"))
    assert spec.gpt_name == "GPT-B" and spec.gpt == dataclasses.replace(lg.GPT_MODELS["GPT-B"], grid=16)
    assert spec.shape().n_classes == 1000 and spec.shape().grid == 16
    with pytest.raises(CortexError) as info:
        lg.plan(meta, vq, "GPT-L", 256, 16, Path("gpt.pt"), Path("vq.pt"))
    assert "holds a GPT-B (12 layers of width 768), not a GPT-L" in _one_line(info)


# -- the official outputs -------------------------------------------------------------------------------------------
def test_teacher_forced_logits_equal_the_official(model, reference):
    with torch.no_grad():
        logits = model.gpt(reference["teacher_tokens"][:, :-1], reference["teacher_classes"])
    torch.testing.assert_close(logits, reference["teacher_logits"], atol=1e-5, rtol=1e-5)


def test_prior_nll_is_the_official_cross_entropy(model, reference):
    classes = [concept(int(c)) for c in reference["teacher_classes"]]
    nll = model.prior_nll(reference["teacher_tokens"].reshape(-1, 6, 6), classes, batch_size=2)
    torch.testing.assert_close(nll, reference["teacher_nll"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("noise", ["philox", "host"])
def test_greedy_grids_equal_the_official_with_and_without_guidance(model, reference, noise):
    classes = [concept(int(c)) for c in reference["classes"]]
    streams = [torch.Generator() for _ in classes] if noise == "host" else list(range(len(classes)))
    for guidance, expected in ((float(reference["cfg_scale"]), "greedy_cfg"), (None, "greedy_plain"), (1.0, "greedy_plain")):
        grids = model.sample(classes, streams, SamplerSettings(greedy=True, guidance=guidance, noise=noise))
        assert grids.shape == (4, 6, 6)
        assert torch.equal(grids.reshape(4, -1), reference[expected]), (guidance, expected)


def test_the_compiled_decode_step_gives_the_official_grids(model, reference, monkeypatch):
    monkeypatch.setenv("CORTEX_COMPILE", "aot_eager")  # dynamo's full-graph trace of the step, as CUDA compiles it
    classes = [concept(int(c)) for c in reference["classes"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a step that falls back to eager warns
        grids = model.sample(classes, [0, 1, 2, 3], SamplerSettings(greedy=True, guidance=float(reference["cfg_scale"])))
    assert torch.equal(grids.reshape(4, -1), reference["greedy_cfg"])


def test_decoded_pixels_match_the_official_decoder(model, reference):
    grids = reference["greedy_cfg"][:2]
    with torch.no_grad():
        raw = model.vq.decode(model.embed(grids))
    torch.testing.assert_close(raw, reference["pixels_cfg"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.decode_tokens(grids, batch_size=1), reference["pixels_cfg"].clamp(-1, 1), atol=1e-5, rtol=1e-5)


def test_encoded_codes_match_the_official_quantizer(model, reference):
    codes = model.encode_images(reference["pixels_cfg"].clamp(-1, 1))
    assert codes.shape == (2, 6, 6) and torch.equal(codes.reshape(2, -1), reference["codes_of_pixels"])


# -- the VQGM ----------------------------------------------------------------------------------------------------------
def test_embed_reads_the_normalised_codebook(model):
    tokens = torch.randint(0, 64, (3, 36), generator=torch.Generator().manual_seed(0))
    embedding = model.embed(tokens)
    assert embedding.shape == (3, 8, 6, 6)
    assert torch.equal(embedding[1, :, 2, 5], model.codebook[tokens[1, 2 * 6 + 5]])


def test_encoding_decoded_tokens_runs(model):
    tokens = torch.randint(0, 64, (2, 6, 6), generator=torch.Generator().manual_seed(1))
    images = model.decode_tokens(tokens)
    assert images.shape == (2, 3, SIZE, SIZE) and images.abs().max() <= 1
    codes = model.encode_images(images)
    assert codes.shape == (2, 6, 6) and 0 <= int(codes.min()) and int(codes.max()) < 64
    with pytest.raises(CortexError):
        model.encode_images(torch.zeros(1, 3, 32, 32))


def test_default_sampler_is_the_official_sample_c2i(model):
    settings = model.default_sampler()
    assert (settings.top_k, settings.top_p, settings.temperature, settings.guidance) == (64, 1.0, 1.0, 4.0)  # top-k 2000 capped at K
    assert lg.LLAMAGEN_SAMPLER.top_k == 2000


def test_an_image_does_not_depend_on_its_batch(model):
    settings = SamplerSettings(top_k=20, temperature=1.0, guidance=3.0)
    alone = model.sample([concept(7)], [123], settings)
    mixed = model.sample([concept(2), concept(7), concept(0)], [5, 123, 9], settings)
    assert torch.equal(alone[0], mixed[1])
    assert not torch.equal(mixed[0], mixed[1])


def test_the_bf16_decoder_samples(model):
    decoder = model.decoder("bf16")
    assert decoder.embeddings.dtype == torch.bfloat16 and decoder.layers[0].wqkv.dtype == torch.bfloat16
    assert model.decoder("fp32").layers[0].wqkv.data_ptr() == model.gpt.layers[0].attention.wqkv.weight.data_ptr()  # not copied
    grids = model.sample([concept(1), concept(4)], [1, 2], SamplerSettings(top_k=10, guidance=4.0, precision="bf16"))
    assert grids.shape == (2, 6, 6) and 0 <= int(grids.min()) and int(grids.max()) < 64


def test_bad_sampling_requests_are_one_line_errors(model):
    for classes, settings, expected in (([concept(10)], SamplerSettings(), "outside this model's 10 classes"),
                                        ([concept(1)], SamplerSettings(guidance=0.5), "guidance scale must be >= 1"),
                                        ([concept(1)], SamplerSettings(precision="fp16"), "sampling precision")):
        with pytest.raises(CortexError) as info:
            model.sample(classes, [1], settings)
        assert expected in _one_line(info)


# -- the released shapes ---------------------------------------------------------------------------------------------
def _shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def test_gpt_b_has_the_official_parameter_names_and_shapes():
    official = json.loads((DATA / "gpt_b_shapes.json").read_text())["shapes"]
    with torch.device("meta"):
        gpt = lg.LlamaGenGPT(lg.GPT_MODELS["GPT-B"])
    assert _shapes(gpt) == official
    assert 110e6 < sum(p.numel() for p in gpt.parameters()) < 112e6  # "GPT-B: 111M"


def test_vq_16_has_the_official_parameter_names_and_shapes():
    official = json.loads((DATA / "vq_16_shapes.json").read_text())["shapes"]
    official.pop("quantize.codebook_used")  # a training statistic, dropped on load
    with torch.device("meta"):
        vq = lg.LlamaGenVQ(lg.VQ_MODELS[16])
    assert _shapes(vq) == official


def test_every_released_size_builds_with_consistent_heads():
    for name, config in lg.GPT_MODELS.items():
        assert config.dim % config.n_head == 0 and config.head_dim % 4 == 0, name
        assert lg.rope_table(dataclasses.replace(config, grid=24)).shape == (1 + 24 * 24, config.head_dim // 2, 2)


# -- the backend -------------------------------------------------------------------------------------------------------
def test_the_backend_is_registered_and_takes_options(monkeypatch):
    backend = get_backend("llamagen")
    assert backend is lg.BACKEND and backend.name == "llamagen"
    monkeypatch.setattr(lg, "describe_llamagen", lambda *args, **kwargs: (args, kwargs))
    files = backend.locate(None, DATA / "vq.pt", DATA / "gpt.pt", options={"image_size": "48"})
    assert (files.config, files.ckpt) == ((DATA / "vq.pt").resolve(), (DATA / "gpt.pt").resolve())
    args, kwargs = backend.describe(files, options={"gpt_model": "GPT-L", "image_size": "384", "downsample": "8"})
    assert args == (files.ckpt, files.config) and kwargs == {"gpt_model": "GPT-L", "image_size": 384, "downsample": 8}
    for options, expected in (({}, "needs its image size"), ({"image_size": "big"}, "must be an integer"),
                              ({"image_size": "256", "cfg": "4"}, "unknown llamagen option(s) cfg")):
        with pytest.raises(CortexError) as info:
            backend.locate(None, DATA / "vq.pt", DATA / "gpt.pt", options=options)
        assert expected in _one_line(info)
    with pytest.raises(CortexError) as info:
        backend.locate(None, None, DATA / "gpt.pt", options={"image_size": "48"})
    assert "--vq-ckpt" in _one_line(info)


def test_the_backend_describes_and_loads_the_tiny_model(monkeypatch):
    monkeypatch.setitem(lg.GPT_MODELS, "GPT-tiny", GPT)
    monkeypatch.setitem(lg.VQ_MODELS, 8, VQ)
    files = lg.BACKEND.locate(None, DATA / "vq.pt", DATA / "gpt.pt", options={"image_size": str(SIZE)})
    options = {"gpt_model": "GPT-tiny", "image_size": str(SIZE), "downsample": "8"}
    shape = lg.BACKEND.describe(files, options=options)
    assert (shape.n_embed, shape.embed_dim, shape.grid, shape.image_size, shape.n_classes) == (64, 8, 6, SIZE, 10)
    assert shape.config_hash == lg.BACKEND.describe(files, options=options).config_hash
    assert lg.BACKEND.load(files, "cpu", options=options).spec.gpt_name == "GPT-tiny"


def test_hub_checkpoints_resolve_through_the_cache(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    commit = "89abcdef" * 5
    snapshot = tmp_path / "models--FoundationVision--LlamaGen" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("gpt.pt", "vq.pt"):
        (snapshot / name).write_bytes((DATA / name).read_bytes())
    (tmp_path / "models--FoundationVision--LlamaGen" / "refs").mkdir()
    (tmp_path / "models--FoundationVision--LlamaGen" / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    files = lg.BACKEND.locate(None, Path("hf://FoundationVision/LlamaGen/vq.pt"), Path("hf://FoundationVision/LlamaGen/gpt.pt"),
                              options={"image_size": "48"})
    assert files.ckpt.read_bytes() == (DATA / "gpt.pt").read_bytes() and files.config.name == "vq.pt"
