"""Noise tunnelling (Captum's NoiseTunnel, 'smoothgrad' type): any base attribution averaged over noisy copies.

Unlike Captum's, the noise is per image: sigma_i = alpha (max E_i - min E_i), and image i's draws depend on
its identity key and the run's seed only, so an image's attribution does not depend on which images share
its batch, in which order, the chunk size, the rank count or the device. Two generators (`NOISES`, the
run key's `noise`):

- 'philox' (the default): counter-based Philox4x32-10 (`cortex_cli.core.philox`) drawn on the embeddings'
  device, a chunk of noisy copies at a time, inside the loop that attributes them (`PhiloxNoise`). Image
  i's copies are its stream under (key_i, seed) (`philox_copies`); its words are bit-identical on every
  device, its normals up to float rounding of log/sqrt/cos.
- 'host': per-image CPU `torch.Generator`s seeded by (seed, key_i) (`seeded_noise`), copied to the device;
  the noise of every run made before 'philox' (store migration 0013), kept so those runs reproduce.

Noisy copies of several images are attributed together, in chunks.
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..core import philox
from ..backends.sampler import compile_mode
from ..core.seeding import generator_for
from .common import Attribution, default_chunk, target_tensor

NOISES = ("philox", "host")  # SmoothGrad's noise generators: device-side counter-based (default); per-image host generators


def noise_scale(embeddings: torch.Tensor, alpha: float) -> torch.Tensor:
    """sigma = alpha * (max(E_i) - min(E_i)) per image -> (B,)."""
    flat = embeddings.detach().reshape(embeddings.shape[0], -1)
    return alpha * (flat.amax(dim=1) - flat.amin(dim=1))


_POOLS: dict[int, ThreadPoolExecutor] = {}  # thread count -> a pool of that many, made on first use


def _pool(threads: int) -> ThreadPoolExecutor:
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cortex-noise")
    return _POOLS[threads]


def seeded_noise(shape: Sequence[int], keys: Sequence[int], seed: int, samples: int) -> torch.Tensor:
    """'host' noise: standard normals (B, N, *shape) on CPU; image i's from a generator seeded by (seed, keys[i]).

    Images are drawn on up to `torch.get_num_threads()` host threads at once (torch releases the GIL while
    it samples): the same generators, so the same numbers, in a fraction of the time. On a GPU this
    host-side draw is the likely bound of SmoothGrad (the README's H200 figures); 'philox' avoids it.
    """
    out = torch.empty(len(keys), samples, *shape)

    def draw(i: int) -> None:
        out[i].normal_(generator=generator_for("saliency", seed, int(keys[i])))  # what torch.randn draws

    threads = min(len(keys), torch.get_num_threads())
    if threads > 1:
        list(_pool(threads).map(draw, range(len(keys))))
    else:
        for i in range(len(keys)):
            draw(i)
    return out


def _philox_rows(keys: torch.Tensor, copy: torch.Tensor, stream: int, substream: int, samples: int, count: int,
                 per_copy: int) -> torch.Tensor:
    """The normals of flat copies `copy` (see `philox_copies`); what compiles into one device kernel."""
    return philox.normal(keys[copy // samples], count, domain=philox.SMOOTHGRAD, stream=stream, substream=substream,
                         offset=(copy % samples) * per_copy)


_COMPILED: dict[str, Callable[..., torch.Tensor]] = {}  # torch.compile backend -> `_philox_rows` compiled with it (or eager)


def philox_copies(shape: Sequence[int], keys: torch.Tensor, seed: int, samples: int, start: int, stop: int) -> torch.Tensor:
    """'philox' noise of the flat noisy copies start .. stop-1 (copy k is sample k % N of image k // N) -> (stop-start, *shape).

    Image i's noise is one Philox stream: key keys[i] (int64, on the device where it is drawn), the seed's two
    32-bit words as stream (high) and substream (low), domain SMOOTHGRAD; copy l takes the stream's blocks
    l*b .. (l+1)*b - 1 (b blocks of four words hold one copy's normals). So it depends on that image, l and
    the seed, not on the other copies drawn with it, and more copies extend the fewer.

    Where `CORTEX_COMPILE` compiles (by default on CUDA, as the sampler's decode step) the draw runs as one
    compiled graph: eager, each of its some 130 int64 ops would pass over the chunk's words in device memory.
    If it does not compile, it runs eagerly, said once.
    """
    count = math.prod(shape)
    per_copy = (2 * ((count + 1) // 2) + 3) // 4  # the blocks `philox.normal` reads for `count` numbers
    if samples * per_copy > 2**32:
        raise ValueError(f"{samples} noisy copies of {count} numbers overflow Philox's 32-bit block counter")
    copy = torch.arange(start, stop, device=keys.device)
    args = (keys, copy, (seed >> 32) & philox.MASK32, seed & philox.MASK32, samples, count, per_copy)
    mode = compile_mode(keys.device)
    if mode == "off":
        return _philox_rows(*args).reshape(stop - start, *shape)
    if mode not in _COMPILED:
        _COMPILED[mode] = torch.compile(_philox_rows, fullgraph=True, backend=mode)
    try:
        z = _COMPILED[mode](*args)
    except Exception as exc:  # no compiler here, or an op without a graph: eager, said once
        if _COMPILED[mode] is _philox_rows:
            raise
        warnings.warn(f"cortex: the SmoothGrad noise draw did not compile ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                      "drawing it eagerly", RuntimeWarning, stacklevel=2)
        _COMPILED[mode] = _philox_rows
        z = _philox_rows(*args)
    return z.reshape(stop - start, *shape)  # (a copy of an odd count is a slice of whole pairs)


def philox_noise(shape: Sequence[int], keys: Sequence[int], seed: int, samples: int,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """'philox' noise: standard normals (B, N, *shape) on `device`, image i's keyed by (keys[i], seed) (see `philox_copies`)."""
    return philox_copies(shape, philox.keys_tensor(keys, device), seed, samples, 0, len(keys) * samples).view(len(keys), samples, *shape)


@dataclass(frozen=True)
class PhiloxNoise:
    """SmoothGrad's scaled 'philox' noise eps = sigma_i z, drawn on the device a chunk of copies at a time (`noise_tunnel`).

    Stands for the (B, N, *shape) tensor `scaled_noise(..., noise='philox')` returns, without holding it (or the
    draw's int64 temporaries) at once.
    """

    keys: torch.Tensor  # (B,) int64 image keys on the device
    sigma: torch.Tensor  # (B,) each image's noise scale, on the device
    seed: int
    samples: int  # N
    shape: tuple[int, ...]  # one copy's (d, m, m)

    @property
    def batch_shape(self) -> tuple[int, int]:
        return (self.keys.shape[0], self.samples)

    def copies(self, start: int, stop: int) -> torch.Tensor:
        """The scaled noise of flat copies start .. stop-1 (float32, (stop-start, *shape))."""
        owner = torch.arange(start, stop, device=self.keys.device) // self.samples
        z = philox_copies(self.shape, self.keys, self.seed, self.samples, start, stop)
        return z.mul_(self.sigma[owner].to(torch.float32).view(-1, *[1] * len(self.shape)))

    def materialize(self) -> torch.Tensor:
        """All of it, (B, N, *shape)."""
        return self.copies(0, self.keys.shape[0] * self.samples).view(*self.batch_shape, *self.shape)


def smoothgrad_noise(embeddings: torch.Tensor, keys: Sequence[int], seed: int, samples: int, alpha: float,
                     noise: str = "philox") -> "torch.Tensor | PhiloxNoise":
    """The scaled noise a run's `noise_tunnel` adds: 'philox' drawn lazily on the embeddings' device, 'host' as a CPU tensor."""
    if noise == "host":
        return scaled_noise(embeddings, keys, seed, samples, alpha, noise="host")
    if noise != "philox":
        raise ValueError(f"unknown noise {noise!r}; use one of {', '.join(NOISES)}")
    device = embeddings.device
    return PhiloxNoise(philox.keys_tensor(keys, device), noise_scale(embeddings, alpha), int(seed), samples, tuple(embeddings.shape[1:]))


def scaled_noise(embeddings: torch.Tensor, keys: Sequence[int], seed: int, samples: int, alpha: float,
                 noise: str = "philox") -> torch.Tensor:
    """Identity-keyed noise (B, N, d, m, m), scaled by each image's sigma: 'philox' on the embeddings' device, 'host' on CPU."""
    if noise == "host":
        sigma = noise_scale(embeddings, alpha).cpu()
        return seeded_noise(embeddings.shape[1:], keys, seed, samples) * sigma.view(-1, 1, 1, 1, 1)
    return smoothgrad_noise(embeddings, keys, seed, samples, alpha, noise).materialize()


def noise_tunnel(
    base: Attribution,
    extractor: nn.Module,
    embeddings: torch.Tensor,
    targets: Sequence[int],
    noise: "torch.Tensor | PhiloxNoise",
    *,
    chunk: int | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """Mean of `base` over the given noisy copies E + eps of each image.

    Args:
        base: an attribution over a flat batch, `base(extractor, inputs, targets, chunk=..., **kwargs)` -> inputs' shape.
        extractor: f_Y, maps (B, d, m, m) to logits (B, classes).
        embeddings: E, (B, d, m, m).
        targets: the class whose logit is explained, one per image.
        noise: the already-scaled noise eps, (B, N, d, m, m) (any device), or a `PhiloxNoise` that draws it.
        chunk: noisy copies per forward/backward pass, drawn and attributed together; None: by device.
        kwargs: passed to `base` (precision, ...).

    Returns:
        The mean attribution (B, d, m, m), float32.
    """
    b, n = noise.batch_shape if isinstance(noise, PhiloxNoise) else noise.shape[:2]
    device = embeddings.device
    target = target_tensor(targets, b, device)
    chunk = chunk or default_chunk(device)
    clean = embeddings.detach().float()
    flat = None if isinstance(noise, PhiloxNoise) else noise.flatten(0, 1)
    attributions = torch.empty(b * n, *embeddings.shape[1:], device=device)
    # copy k of the flattened (B*N) stack belongs to image k // N
    for start in range(0, b * n, chunk):
        stop = min(start + chunk, b * n)
        owner = torch.arange(start, stop, device=device) // n
        eps = noise.copies(start, stop) if flat is None else flat[start:stop].to(device=device, dtype=torch.float32)
        attributions[start:stop] = base(extractor, clean[owner] + eps, target[owner], chunk=chunk, **kwargs)
    return attributions.view(b, n, *embeddings.shape[1:]).mean(dim=1)
