"""Counter-based random streams (Philox4x32-10) computed with integer tensor ops, on any device.

A draw is a pure function of (key, counter): the key is an item's identity (a 63-bit `seeding.derive_seed`
of model, class, split, image seed, ...), the counter says which numbers of that item's stream (the
sampling step, the SmoothGrad copy, the element). Nothing depends on the batch, the batch size, the other
rows, the rank count or the device, and the draw runs where the tensors are: no host round trip, no
generator state, so it compiles into a captured decode step.

Guarantees (tested): the 32-bit words are Random123's Philox4x32-10 (its known-answer vectors) and are
bit-identical on every device and under `torch.compile`; `uniform` maps them exactly (no rounding) into
the open interval (0, 1). `gumbel` and `normal` apply `log`/`sqrt`/`cos`, whose last bit may differ
between CPU and CUDA libraries, so they agree up to float rounding (a few ulp).

Philox multiplies 32-bit words into 64-bit products. An int64 tensor holds the product modulo 2^64 (every
torch backend multiplies int64 in two's complement, wrapping); Philox needs only its low word (`& MASK32`)
and its high word (`(p >> 32) & MASK32`), which are the same bits whether that shift is arithmetic or
logical. The known-answer tests check it on each device. The rounds update the words in place: each
round costs twelve elementwise ops and no new tensors beyond the two products.
"""

from __future__ import annotations

import math

import numpy as np
import torch

MASK32 = 0xFFFFFFFF
_M0, _M1 = 0xD2511F53, 0xCD9E8D57  # Philox4x32 round multipliers
_W0, _W1 = 0x9E3779B9, 0xBB67AE85  # Weyl key increments
ROUNDS = 10

# stream domains: the fourth counter word, so two uses of one key never share numbers
SAMPLING = 1
SMOOTHGRAD = 2


def philox4x32(c0: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, c3: torch.Tensor,
               k0: torch.Tensor, k1: torch.Tensor, rounds: int = ROUNDS) -> tuple[torch.Tensor, ...]:
    """Philox4x32-`rounds` of counters (c0..c3) under keys (k0, k1): four uint32 words (int64 tensors, broadcast)."""
    shape = torch.broadcast_shapes(c0.shape, c1.shape, c2.shape, c3.shape, k0.shape, k1.shape)
    c0, c1, c2, c3 = (c.expand(shape) for c in (c0, c1, c2, c3))  # so the products below are full tensors, updated in place
    for r in range(rounds):
        if r:
            k0 = (k0 + _W0) & MASK32
            k1 = (k1 + _W1) & MASK32
        p0 = c0 * _M0  # the 64-bit products, modulo 2^64 (see the module's docstring)
        p1 = c2 * _M1
        hi1 = (p1 >> 32).bitwise_xor_(c1).bitwise_xor_(k0).bitwise_and_(MASK32)
        hi0 = (p0 >> 32).bitwise_xor_(c3).bitwise_xor_(k1).bitwise_and_(MASK32)
        c0, c1, c2, c3 = hi1, p1.bitwise_and_(MASK32), hi0, p0.bitwise_and_(MASK32)
    return c0, c1, c2, c3


def _philox4x32_numpy(c0: np.ndarray, c1: np.ndarray, c2: np.ndarray, c3: np.ndarray,
                      k0: np.ndarray, k1: np.ndarray, rounds: int = ROUNDS) -> tuple[np.ndarray, ...]:
    """`philox4x32` in numpy's uint64 (a 32 x 32-bit product fits): the same words with fewer, cheaper host ops.

    Eager torch pays a dispatch per op on small tensors, so a CPU decode step draws its noise several times
    faster here. Tested equal to the tensor version.
    """
    mask, shift = np.uint64(MASK32), np.uint64(32)
    m0, m1, w0, w1 = (np.uint64(v) for v in (_M0, _M1, _W0, _W1))
    for r in range(rounds):
        if r:
            k0 = (k0 + w0) & mask
            k1 = (k1 + w1) & mask
        p0 = c0 * m0
        p1 = c2 * m1
        c0, c1, c2, c3 = (p1 >> shift) ^ c1 ^ k0, p1 & mask, (p0 >> shift) ^ c3 ^ k1, p0 & mask
    return c0, c1, c2, c3


def key_words(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """63-bit identity keys (int64, any shape) -> Philox's two 32-bit key words."""
    keys = keys.long()
    return keys & MASK32, (keys >> 32) & MASK32


def keys_tensor(keys, device: torch.device | str = "cpu") -> torch.Tensor:
    """Identity keys (ints in 0 .. 2^63-1) as an int64 tensor on `device`."""
    return torch.as_tensor([int(k) for k in keys], dtype=torch.long, device=device)


def random_words(keys: torch.Tensor, count: int, *, domain: int, stream: torch.Tensor | int = 0,
                 substream: torch.Tensor | int = 0, offset: torch.Tensor | int = 0) -> torch.Tensor:
    """`count` uint32 words (int64, B x count) of each key's stream (domain, stream, substream).

    Word j of a row comes from counter (offset + j // 4, stream, substream, domain), output j % 4: the same
    key and counters give the same words whatever else is drawn. `offset` (an int, or one per row) starts a
    row further along its stream, in blocks of four words.
    """
    device = keys.device
    blocks = (count + 3) // 4
    if device.type == "cpu" and not torch.compiler.is_compiling():
        return _random_words_numpy(keys, count, blocks, domain, stream, substream, offset)
    k0, k1 = key_words(keys.reshape(-1, 1))
    c0 = (torch.as_tensor(offset, device=device, dtype=torch.long).reshape(-1, 1)
          + torch.arange(blocks, device=device, dtype=torch.long).reshape(1, -1)) & MASK32
    c1 = torch.as_tensor(stream, device=device, dtype=torch.long).reshape(-1, 1) & MASK32
    c2 = torch.as_tensor(substream, device=device, dtype=torch.long).reshape(-1, 1) & MASK32
    c3 = torch.full((1, 1), domain, device=device, dtype=torch.long)
    words = torch.stack(philox4x32(c0, c1, c2, c3, k0, k1), dim=-1)  # B x blocks x 4
    return words.reshape(words.shape[0], blocks * 4)[:, :count]


def _random_words_numpy(keys: torch.Tensor, count: int, blocks: int, domain: int, stream: torch.Tensor | int,
                        substream: torch.Tensor | int, offset: torch.Tensor | int = 0) -> torch.Tensor:
    """`random_words` of CPU tensors through `_philox4x32_numpy`."""
    def column(value: torch.Tensor | int) -> np.ndarray:
        return (torch.as_tensor(value, dtype=torch.long).reshape(-1, 1).numpy() & MASK32).astype(np.uint64)

    raw = keys.long().reshape(-1, 1).numpy().astype(np.uint64)
    k0, k1 = raw & np.uint64(MASK32), (raw >> np.uint64(32)) & np.uint64(MASK32)
    c0 = (column(offset) + np.arange(blocks, dtype=np.uint64).reshape(1, -1)) & np.uint64(MASK32)
    words = np.stack(np.broadcast_arrays(*_philox4x32_numpy(c0, column(stream), column(substream),
                                                            np.full((1, 1), domain, dtype=np.uint64), k0, k1)), axis=-1)
    return torch.from_numpy(words.reshape(words.shape[0], blocks * 4)[:, :count].astype(np.int64))


def uniform(keys: torch.Tensor, count: int, *, domain: int, stream: torch.Tensor | int = 0,
            substream: torch.Tensor | int = 0, offset: torch.Tensor | int = 0) -> torch.Tensor:
    """Float32 uniforms in the open interval (0, 1), B x count: (top 23 bits + 0.5) / 2^23, exact on every device."""
    words = random_words(keys, count, domain=domain, stream=stream, substream=substream, offset=offset)
    return ((words >> 9).to(torch.float32) + 0.5) * (2.0 ** -23)


def gumbel(keys: torch.Tensor, count: int, *, domain: int = SAMPLING, stream: torch.Tensor | int = 0) -> torch.Tensor:
    """Standard Gumbel noise, B x count, -log(-log(u)) of `uniform` (the Gumbel-max trick's noise)."""
    return -torch.log(-torch.log(uniform(keys, count, domain=domain, stream=stream)))


def normal(keys: torch.Tensor, count: int, *, domain: int = SMOOTHGRAD, stream: torch.Tensor | int = 0,
           substream: torch.Tensor | int = 0, offset: torch.Tensor | int = 0) -> torch.Tensor:
    """Standard normal noise, B x count (Box-Muller over pairs of `uniform`s).

    Numbers 2j and 2j+1 of a row are the pair made of words 2j and 2j+1, so number j does not depend on
    `count`: a longer draw extends a shorter one.
    """
    half = (count + 1) // 2
    u = uniform(keys, 2 * half, domain=domain, stream=stream, substream=substream, offset=offset)
    radius = torch.log(u[:, 0::2]).mul_(-2.0).sqrt_()
    angle = u[:, 1::2].mul_(2.0 * math.pi)
    return torch.stack((radius * torch.cos(angle), radius.mul_(torch.sin(angle))), dim=2).reshape(u.shape[0], 2 * half)[:, :count]
