"""philox.py: Random123's Philox4x32-10 in int64 tensor ops, its uniforms and normals, keyed by identity alone.

The known-answer vectors are Random123's (`kat_vectors`, philox4x32 with 10 rounds); a plain-Python-int
reference of the same rounds (no tensors, no 64-bit tricks) states them independently and checks many
more counters and keys. The draw under `torch.compile(fullgraph=True)` (backend aot_eager: the graph a
device would run, on the CPU) must give the same words bit for bit: no graph break, so no host sync.
"""

from __future__ import annotations

import math

import pytest
import torch

from cortex_cli.core import philox

MASK = 0xFFFFFFFF

# (counter words c0..c3, key words k0 k1) -> output words, from Random123's kat_vectors
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((MASK, MASK, MASK, MASK), (MASK, MASK), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0), (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def reference(counter: tuple[int, ...], key: tuple[int, int], rounds: int = 10) -> tuple[int, ...]:
    """Philox4x32-`rounds` on Python ints (arbitrary precision: the 64-bit products are exact)."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & MASK, (k1 + 0xBB67AE85) & MASK
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & MASK, (p0 >> 32) ^ c3 ^ k1, p0 & MASK
    return c0, c1, c2, c3


def _words(counter, key) -> tuple[int, ...]:
    out = philox.philox4x32(*(torch.tensor([c]) for c in counter), *(torch.tensor([k]) for k in key))
    return tuple(int(w) for w in out)


@pytest.mark.parametrize("counter, key, expected", KNOWN_ANSWERS)
def test_random123_known_answers(counter, key, expected):
    assert reference(counter, key) == expected
    assert _words(counter, key) == expected


def test_the_tensor_rounds_match_the_python_int_reference_on_many_counters_and_keys():
    g = torch.Generator().manual_seed(0)
    counters = torch.randint(0, 2**32, (4, 200), generator=g)
    keys = torch.randint(0, 2**32, (2, 200), generator=g)
    counters[:, :8] = torch.tensor([0, 1, MASK, MASK - 1, 2**31, 2**31 - 1, 0x80000001, 0x7FFFFFFF])  # the edges of 32 bits
    got = torch.stack(philox.philox4x32(*counters, *keys))
    for j in range(counters.shape[1]):
        assert tuple(got[:, j].tolist()) == reference(tuple(counters[:, j].tolist()), tuple(keys[:, j].tolist())), j


def test_random_words_lay_out_counters_as_documented():
    """Word j of a row: counter (j // 4, stream, substream, domain) under the row's key, output j % 4."""
    key = (5 << 32) | 7  # a 63-bit identity key: low word 7, high word 5
    words = philox.random_words(philox.keys_tensor([key]), 10, domain=philox.SMOOTHGRAD, stream=3, substream=9)
    expected = [w for block in range(3) for w in reference((block, 3, 9, philox.SMOOTHGRAD), (7, 5))][:10]
    assert words.tolist() == [expected]


def test_an_offset_starts_a_row_further_along_its_stream():
    keys = philox.keys_tensor([9, 2**62 + 1, 9])
    offsets = torch.tensor([0, 3, 5])
    words = philox.random_words(keys, 10, domain=philox.SMOOTHGRAD, substream=2, offset=offsets)
    longer = philox.random_words(keys, 40, domain=philox.SMOOTHGRAD, substream=2)
    for i, o in enumerate(offsets.tolist()):
        assert torch.equal(words[i], longer[i, 4 * o:4 * o + 10])
    assert torch.equal(philox.normal(keys, 6, offset=2), philox.normal(keys, 14)[:, 8:])  # normal j is made of word j (and its pair)


def test_uniform_lies_strictly_inside_zero_one_even_at_the_extreme_words():
    u = philox.uniform(philox.keys_tensor(range(64)), 4096, domain=philox.SAMPLING)
    assert u.dtype == torch.float32 and bool((u > 0).all()) and bool((u < 1).all())
    # the map itself, at the two extreme words: (top 23 bits + 0.5) / 2^23, exact in float32
    extremes = ((torch.tensor([0, MASK]) >> 9).to(torch.float32) + 0.5) * 2.0 ** -23
    assert 0 < float(extremes[0]) and float(extremes[1]) < 1
    assert float(extremes[1]) == 1 - 2.0 ** -24 and float(extremes[0]) == 2.0 ** -24


def test_a_rows_numbers_do_not_depend_on_the_other_rows_or_their_order():
    keys = [2**63 - 1, 0, 12345, 2**40 + 3, 77]
    streams = [4, 0, 1, 9, 4]
    together = philox.normal(philox.keys_tensor(keys), 33, stream=torch.tensor(streams), substream=6)
    for i, (k, s) in enumerate(zip(keys, streams)):
        alone = philox.normal(philox.keys_tensor([k]), 33, stream=s, substream=6)
        assert torch.equal(alone[0], together[i])
    order = [3, 0, 4, 1, 2]
    shuffled = philox.normal(philox.keys_tensor([keys[i] for i in order]), 33, stream=torch.tensor([streams[i] for i in order]), substream=6)
    assert torch.equal(shuffled, together[order])
    # a longer draw extends a shorter one; another key, stream, substream or domain draws other numbers
    assert torch.equal(philox.normal(philox.keys_tensor(keys), 40, stream=torch.tensor(streams), substream=6)[:, :33], together)
    assert not torch.equal(together[0], together[4])  # same stream, another key
    assert not torch.equal(philox.normal(philox.keys_tensor(keys), 33, stream=torch.tensor(streams), substream=7), together)
    assert not torch.equal(philox.normal(philox.keys_tensor(keys), 33, domain=philox.SAMPLING, stream=torch.tensor(streams),
                                         substream=6), together)


def test_the_compiled_draw_gives_the_same_words_a_dry_run_of_the_device_path():
    keys = philox.keys_tensor([3, 2**62 + 11, 99, 0])
    stream = torch.tensor([0, 5, 2, 7])

    offset = torch.tensor([0, 1, 9, 2**20])

    def draw(k, s):
        return (philox.random_words(k, 37, domain=philox.SMOOTHGRAD, stream=s, substream=11, offset=offset),
                philox.normal(k, 37, stream=s, substream=11, offset=offset))

    torch._dynamo.reset()
    words, normals = torch.compile(draw, fullgraph=True, backend="aot_eager")(keys, stream)
    eager_words, eager_normals = draw(keys, stream)
    assert torch.equal(words, eager_words)
    torch.testing.assert_close(normals, eager_normals, rtol=0, atol=0)


def test_normal_has_mean_zero_and_unit_variance():
    z = philox.normal(philox.keys_tensor(range(16)), 65536, stream=torch.arange(16), substream=1).double()
    n = z.numel()
    assert abs(float(z.mean())) < 5 / math.sqrt(n)  # 5 standard errors
    assert abs(float(z.std()) - 1) < 5 * math.sqrt(2 / n)
    assert abs(float((z.abs() < 1).double().mean()) - 0.682689) < 0.002  # and the shape: P(|z| < 1)
    assert bool(torch.isfinite(z).all())
