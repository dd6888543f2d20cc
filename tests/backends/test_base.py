"""backends/base.py: the sampler (top-k/top-p filtering, per-row Gumbel draws), image generators, PIL conversions."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from cortex_cli.backends.base import SamplerSettings, from_pil, image_generators, image_streams, pick_tokens, stream_key, to_pil, top_k_top_p_filtering
from cortex_cli.models.classnames import ClassName
from cortex_cli.core.seeding import derive_seed, generator_for


def test_top_k_keeps_exactly_k_largest():
    torch.manual_seed(0)
    logits = torch.randn(3, 50)
    out = top_k_top_p_filtering(logits, top_k=5)
    kept = torch.isfinite(out)
    assert kept.sum(dim=1).tolist() == [5, 5, 5]
    assert torch.equal(kept, torch.zeros_like(kept).scatter(1, logits.topk(5, dim=1).indices, True))
    assert torch.equal(out[kept], logits[kept])  # kept logits unchanged
    assert torch.equal(top_k_top_p_filtering(logits, top_k=0), logits)  # 0: off
    assert torch.isfinite(top_k_top_p_filtering(logits, top_k=500)).all()  # k > vocab: all


def test_top_p_keeps_the_nucleus_in_any_order():
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])  # sorted: 0.5, 0.3, 0.15, 0.05
    logits = probs.log()[None]
    keep = lambda p: torch.isfinite(top_k_top_p_filtering(logits, top_p=p))[0].tolist()  # noqa: E731
    assert keep(0.45) == [False, True, False, False]  # 0.5 already covers 0.45
    assert keep(0.7) == [False, True, False, True]  # 0.5 + 0.3 crosses 0.7
    assert keep(0.9) == [False, True, True, True]
    assert keep(1.0) == [True, True, True, True]
    both = torch.isfinite(top_k_top_p_filtering(logits, top_k=1, top_p=0.9))[0].tolist()
    assert both == [False, True, False, False]


def _generators(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_a_rows_draw_depends_only_on_its_own_generator():
    torch.manual_seed(0)
    logits = torch.randn(4, 30)
    settings = SamplerSettings(top_k=None)
    together = pick_tokens(logits, _generators(1, 2, 3, 4), settings)
    assert together.shape == (4, 1)
    alone = torch.cat([pick_tokens(logits[i:i + 1], _generators(s), settings) for i, s in enumerate((1, 2, 3, 4))])
    assert torch.equal(together, alone)
    draws = {int(pick_tokens(logits[:1], _generators(s), settings)) for s in range(40)}
    assert len(draws) > 3  # sampling, not argmax


def test_greedy_and_top_k_1_take_the_argmax_and_filters_bound_the_draw():
    torch.manual_seed(1)
    logits = torch.randn(3, 50)
    best = logits.argmax(-1, keepdim=True)
    assert torch.equal(pick_tokens(logits, _generators(0, 0, 0), SamplerSettings(greedy=True)), best)
    assert torch.equal(pick_tokens(logits, _generators(5, 6, 7), SamplerSettings(top_k=1)), best)
    top5 = logits.topk(5, dim=-1).indices
    for s in range(20):
        got = pick_tokens(logits, _generators(s, s + 100, s + 200), SamplerSettings(top_k=5, temperature=3.0))
        assert (top5 == got).any(-1).all()


def test_temperature_sharpens_sampling_towards_the_argmax():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    cold = [int(pick_tokens(logits, _generators(s), SamplerSettings(top_k=None, temperature=0.05))) for s in range(30)]
    hot = [int(pick_tokens(logits, _generators(s), SamplerSettings(top_k=None, temperature=5.0))) for s in range(30)]
    assert set(cold) == {0} and len(set(hot)) > 1


def test_sampler_label_names_every_setting_that_changes_a_sample():
    host = dict(noise="host")  # the older sampler keeps the labels older stores hold, unchanged
    assert SamplerSettings(**host).label() == "top_k=100,top_p=1,temperature=1"
    assert SamplerSettings(greedy=True, top_k=5, **host).label() == "greedy"
    assert SamplerSettings(top_k=None, top_p=0.9, temperature=0.5, **host).label() == "top_k=None,top_p=0.9,temperature=0.5"
    assert SamplerSettings(guidance=3.0, **host).label() == "top_k=100,top_p=1,temperature=1,guidance=3"
    # the philox sampler is a new identity: its rows never share a key with the host sampler's
    assert SamplerSettings().label() == "top_k=100,top_p=1,temperature=1,noise=philox"
    assert SamplerSettings(precision="bf16").label() == "top_k=100,top_p=1,temperature=1,noise=philox,precision=bf16"
    assert SamplerSettings(guidance=4.0).label() == "top_k=100,top_p=1,temperature=1,guidance=4,noise=philox"


def test_philox_streams_draw_per_row_and_step():
    logits = torch.zeros(4, 64)
    settings = SamplerSettings(top_k=None)
    keys = [11, 12, 13, 14]
    together = pick_tokens(logits, keys, settings, step=3)
    alone = torch.cat([pick_tokens(logits[i:i + 1], [k], settings, step=3) for i, k in enumerate(reversed(keys))])
    assert torch.equal(together, alone.flip(0))  # a row's draw depends on its key and step only
    steps = torch.cat([pick_tokens(logits[:1], [11], settings, step=s) for s in range(40)])
    assert len(set(steps.flatten().tolist())) > 20  # every step draws afresh (uniform over 64 tokens)
    assert torch.equal(pick_tokens(logits[:1], [11], settings, step=5), pick_tokens(logits[:1], [11], settings, step=5))


def test_image_streams_key_philox_by_identity_and_keep_the_host_generators():
    classes = [ClassName(3, "c"), ClassName(5, "e"), ClassName(3, "c")]
    keys = image_streams(SamplerSettings(), "mini", classes, ["train", "train", "val"], [7, 7, 7])
    assert keys == [stream_key("mini", 3, "train", 7), stream_key("mini", 5, "train", 7), stream_key("mini", 3, "val", 7)]
    assert len(set(keys)) == 3 and stream_key("other", 3, "train", 7) != keys[0]  # the model is part of the identity
    gens = image_streams(SamplerSettings(noise="host"), "mini", classes[:1], ["val"], [7])
    assert torch.equal(torch.rand(4, generator=gens[0]), torch.rand(4, generator=generator_for("sample", derive_seed(7, "val"), 3)))


def test_image_generators_are_keyed_by_seed_and_class():
    classes = [ClassName(3, "c"), ClassName(5, "e"), ClassName(3, "c")]
    gens = image_generators(classes, [7, 7, 8])
    draws = [torch.rand(4, generator=g) for g in gens]
    assert torch.equal(draws[0], torch.rand(4, generator=generator_for("sample", 7, 3)))
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    with pytest.raises(ValueError):
        image_generators(classes, [1, 2])


def test_pil_round_trip_and_centre_crop():
    torch.manual_seed(2)
    images = torch.rand(2, 3, 8, 8) * 2 - 1
    pils = to_pil(images)
    assert [p.size for p in pils] == [(8, 8)] * 2 and pils[0].mode == "RGB"
    back = from_pil(pils, 8)
    assert back.shape == (2, 3, 8, 8) and (back - images).abs().max() <= 1 / 127.5 + 1e-6  # 8-bit rounding only
    assert to_pil(torch.full((1, 3, 2, 2), 5.0))[0].getpixel((0, 0)) == (255, 255, 255)  # clamped to [-1, 1]
    wide = Image.new("RGB", (12, 4), (0, 0, 0))
    wide.paste((255, 255, 255), (4, 0, 8, 4))  # the white centre square
    assert torch.equal(from_pil([wide], 4), torch.ones(1, 3, 4, 4))


def test_decoding_in_chunks_gives_the_whole_batchs_images_and_a_wrong_size_is_one_line():
    from types import SimpleNamespace

    from cortex_cli.backends.base import check_image_size, decode_in_chunks
    from cortex_cli.core.errors import CortexError

    codebook = torch.arange(12.0).reshape(4, 3)
    seen = []

    def decode_embedding(e):
        seen.append(e.shape[0])
        return e.sum(dim=1, keepdim=True).repeat(1, 3, 1, 1)

    vqgm = SimpleNamespace(grid=2, embed=lambda t: codebook[t.reshape(-1, 2, 2)].permute(0, 3, 1, 2), decode_embedding=decode_embedding)
    tokens = torch.tensor([[0, 1, 2, 3], [3, 3, 0, 0], [1, 1, 1, 1]])
    images = decode_in_chunks(vqgm, tokens, batch_size=2)
    assert seen == [2, 1] and images.shape == (3, 3, 2, 2)
    assert torch.equal(images[1, 0], codebook.sum(dim=1)[torch.tensor([[3, 3], [0, 0]])])
    check_image_size(torch.zeros(1, 3, 8, 8), 8)
    with pytest.raises(CortexError, match=r"images are \(8, 6\) px; this model takes 8x8"):
        check_image_size(torch.zeros(1, 3, 8, 6), 8)
