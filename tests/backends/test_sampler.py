"""backends/sampler.py with taming's `TamingDecoder`: the GPU-native sampler, run on the CPU.

The compiled decode step is traced by dynamo with `fullgraph=True` (backend aot_eager: the same graph
capture and functionalisation a CUDA run gets, without generating code), so a graph break (a host sync,
a Python branch on a tensor) fails here, not first on a GPU.
"""

import contextlib
import io
import warnings

import pytest
import torch

from cortex_cli.backends import sampler
from cortex_cli.backends.base import SamplerSettings, image_streams
from cortex_cli.backends.taming import TamingDecoder, load_vqgm
from cortex_cli.models.classnames import ClassName


@pytest.fixture(scope="module")
def vqgm(tiny_model_files):
    config, ckpt, _ = tiny_model_files
    with contextlib.redirect_stdout(io.StringIO()):
        return load_vqgm(config, ckpt)


def _classes(ids):
    return [ClassName(c, f"class {c}") for c in ids]


def _sample(vqgm, ids, seeds, settings, splits=None):
    classes = _classes(ids)
    streams = image_streams(settings, "tiny", classes, splits or ["train"] * len(ids), seeds)
    return vqgm.sample(classes, streams, settings)


def test_decoder_logits_match_taming_forward(vqgm):
    """Fused QKV + SDPA over the static cache = taming's GPT, prefilled at once and then token by token."""
    gpt = vqgm.net.transformer
    fed = torch.randint(0, vqgm.n_embed, (3, 30), generator=torch.Generator().manual_seed(1))
    _, cond = vqgm.net.encode_to_c(torch.tensor([[0], [1], [3]]))
    x = torch.cat((cond, fed), dim=1)
    with torch.no_grad():
        reference, _ = gpt(x)
        decoder = TamingDecoder(gpt, torch.float32)
        decoder.setup_cache(3, x.shape[1])
        prefill = decoder(x[:, :10], torch.arange(10))
        steps = [decoder(x[:, n:n + 1], torch.tensor([n])) for n in range(10, x.shape[1])]
    ours = torch.cat([prefill, *steps], dim=1)
    assert torch.allclose(ours, reference, atol=1e-5, rtol=1e-5)
    assert not torch.equal(ours[:, -1], ours[:, -2])  # not trivially constant


def test_weights_are_cast_once_and_the_cache_is_static(vqgm):
    dec = vqgm.decoder("bf16")
    assert dec is vqgm.decoder("bf16") and dec is not vqgm.decoder("fp32")
    assert {p.dtype for p in dec.parameters()} == {torch.bfloat16}
    assert vqgm.net.transformer.head.weight.dtype == torch.float32  # the prior itself is untouched
    dec.setup_cache(2, 20)
    first = dec.k_cache.data_ptr()
    dec.setup_cache(2, 20)
    assert dec.k_cache.data_ptr() == first  # a captured step keeps its buffers' addresses


def test_greedy_equals_taming_uncached_sample_in_fp32(vqgm):
    greedy = SamplerSettings(greedy=True)
    assert torch.equal(_sample(vqgm, [0, 2, 1], [0, 0, 0], greedy), vqgm.sample_uncached([0, 2, 1], greedy))


def test_a_grid_does_not_depend_on_its_batch(vqgm):
    settings = SamplerSettings(top_k=16)
    alone = _sample(vqgm, [2, 2], [4, 5], settings)
    mixed = _sample(vqgm, [0, 2, 3, 2, 1, 0, 3], [9, 4, 1, 5, 2, 4, 4], settings, ["val", "train", "test", "train", "train", "train", "train"])
    assert torch.equal(alone, mixed[[1, 3]])
    assert not torch.equal(mixed[0], mixed[5])  # seed and split are part of the stream


def test_bf16_sampling_runs_and_mostly_agrees(vqgm):
    greedy = SamplerSettings(greedy=True)
    fp32 = _sample(vqgm, [0, 1, 2, 3], [0, 1, 2, 3], greedy)
    bf16 = _sample(vqgm, [0, 1, 2, 3], [0, 1, 2, 3], SamplerSettings(greedy=True, precision="bf16"))
    assert bf16.shape == fp32.shape and (bf16 == fp32).float().mean() > 0.3


def test_decode_step_compiles_full_graph_and_matches_eager(vqgm, monkeypatch):
    settings = SamplerSettings(top_k=8, top_p=0.9, temperature=0.8)
    monkeypatch.setenv(sampler.COMPILE_ENV, "off")
    eager = _sample(vqgm, [0, 3], [1, 2], settings)
    monkeypatch.setenv(sampler.COMPILE_ENV, "aot_eager")
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fallback warning would fail this: the step must compile whole
        compiled = _sample(vqgm, [0, 3], [1, 2], settings)
    step = sampler.decode_step(vqgm.decoder("fp32"), 2, settings, vqgm.n_embed, torch.device("cpu"))
    assert step.mode == "aot_eager" and step.fn is not step.eager
    assert torch.equal(compiled, eager)


class _Syncing(torch.nn.Module):
    """A decoder whose step reads a value back to the host: dynamo cannot capture it whole."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab

    def setup_cache(self, batch, length):
        pass

    def forward(self, tokens, positions, visible=None):
        logits = torch.nn.functional.one_hot((tokens[:, -1:] + 1) % self.vocab, self.vocab).float()
        if float(logits.sum()) > 0:  # a host sync
            logits = logits * 10
        return logits


def test_a_step_that_cannot_compile_falls_back_to_eager_with_one_warning(monkeypatch):
    monkeypatch.setenv(sampler.COMPILE_ENV, "aot_eager")
    torch._dynamo.reset()
    decoder = _Syncing(5)
    keys = torch.tensor([1, 2])
    with pytest.warns(RuntimeWarning, match="did not compile") as caught:
        out = sampler.sample_tokens(decoder, torch.tensor([[0], [2]]), 6, 5, keys, SamplerSettings(greedy=True))
    assert len([w for w in caught if "did not compile" in str(w.message)]) == 1
    assert out.tolist() == [[1, 2, 3, 4, 0, 1], [3, 4, 0, 1, 2, 3]]


def test_classifier_free_guidance_mixes_the_doubled_batch():
    cond = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]])
    null = torch.tensor([[0.0, 0.0, 1.5], [0.0, 1.0, 0.0]])
    logits = torch.cat((cond, null))
    keys, step = torch.tensor([5, 6]), torch.tensor(0)
    scale = 3.0
    got = sampler.choose(logits, keys, step, SamplerSettings(greedy=True, guidance=scale), 3)
    assert got.flatten().tolist() == (null + scale * (cond - null)).argmax(-1).tolist() == [1, 0]
    # scale 1 is the conditioned logits alone
    assert sampler.choose(logits, keys, step, SamplerSettings(greedy=True, guidance=1.0), 3).flatten().tolist() == [1, 0]
    # the noise is keyed per image, not per row of the doubled batch
    sampled = sampler.choose(torch.zeros(4, 50), keys, step, SamplerSettings(top_k=None, guidance=2.0), 50)
    alone = sampler.choose(torch.zeros(2, 50), keys[1:], step, SamplerSettings(top_k=None, guidance=2.0), 50)
    assert sampled[1].item() == alone[0].item()


def test_guided_decoding_feeds_the_token_to_both_halves():
    class Echo(_Syncing):
        def forward(self, tokens, positions, visible=None):
            self.seen.append(tokens.clone())
            return torch.nn.functional.one_hot((tokens[:, -1:] + 1) % self.vocab, self.vocab).float()

    decoder = Echo(7)
    decoder.seen = []
    prompt = torch.tensor([[0], [3], [6], [6]])  # two images, then their null rows
    out = sampler.sample_tokens(decoder, prompt, 3, 7, torch.tensor([1, 2]), SamplerSettings(greedy=True, guidance=2.0))
    assert out.shape == (2, 3)
    assert all(torch.equal(t[:2], t[2:]) for t in decoder.seen[1:])  # both halves get the chosen token


def test_compile_mode_reads_the_environment(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.delenv(sampler.COMPILE_ENV, raising=False)
    assert (sampler.compile_mode(cpu), sampler.compile_mode(cuda)) == ("off", "inductor")
    monkeypatch.setenv(sampler.COMPILE_ENV, "on")
    assert sampler.compile_mode(cpu) == "inductor"
    monkeypatch.setenv(sampler.COMPILE_ENV, "off")
    assert sampler.compile_mode(cuda) == "off"
