"""The GPU-native sampler every autoregressive backend decodes with.

A backend hands over a `Decoder`: its prior with weights cast once to the sampling precision and a static,
preallocated KV cache, whose `forward(tokens, positions)` has fixed shapes (B x 1 tokens at one position
per decode step). The loop here never leaves the device: each step's token comes from `choose` (guidance,
temperature, top-k / top-p and the Gumbel-max draw of `cortex_cli.core.philox` noise keyed by image identity and step),
all tensor ops with no host sync, so the decode step compiles with `fullgraph=True` and, on CUDA, is
captured once per (decoder, batch, settings) as a CUDA graph (`mode="reduce-overhead"`). Where compiling or
capture fails the step falls back to eager with one warning.

Compilation: `CORTEX_COMPILE` = `auto` (default: compile on CUDA, eager elsewhere, where compiling costs more
than a mini model's whole sampling), `off`, `on` (inductor on any device), or a `torch.compile` backend name
(`aot_eager`: dynamo's full-graph trace without code generation, what the CPU tests use).
"""

from __future__ import annotations

import os
import warnings
from typing import Callable, Protocol

import torch

from ..core.philox import gumbel
from .base import SamplerSettings, StepCallback, top_k_top_p_filtering

COMPILE_ENV = "CORTEX_COMPILE"


class Decoder(Protocol):
    """A prior ready to decode: weights in their sampling dtype, a static KV cache of `setup_cache`'s size."""

    def setup_cache(self, batch: int, length: int) -> None:
        """(Re)allocate the KV cache for `batch` rows of up to `length` positions (zeros)."""
        ...

    def __call__(self, tokens: torch.Tensor, positions: torch.Tensor, visible: int | None = None) -> torch.Tensor:
        """Logits (B x T x V) of tokens (B x T, long) at positions (T,), writing their keys and values to the cache;
        `visible` (eager calls only): how many cache positions exist so far, None: the whole masked cache."""
        ...


def choose(logits: torch.Tensor, keys: torch.Tensor, step: torch.Tensor, settings: SamplerSettings, vocab: int) -> torch.Tensor:
    """The next token (B x 1) of each image from the last position's logits, on the device, no host sync.

    Args:
        logits: (B x V') logits; with guidance the first B rows are conditioned, the next B the null condition.
        keys: (B,) int64 identity keys of the images (`philox` stream keys).
        step: 0-d int64 tensor, the index of the token being drawn (the stream's counter).
        settings: guidance scale (None: none), temperature, top-k / top-p, greedy.
        vocab: how many leading logits are image tokens (K).
    """
    logits = logits[:, :vocab].float()
    if settings.guidance is not None:
        cond, null = logits.chunk(2)
        logits = null + settings.guidance * (cond - null)
    if settings.greedy:
        return logits.argmax(dim=-1, keepdim=True)
    logits = top_k_top_p_filtering(logits / settings.temperature, top_k=settings.top_k or 0, top_p=settings.top_p)
    return (logits + gumbel(keys, vocab, stream=step)).argmax(dim=-1, keepdim=True)


def compile_mode(device: torch.device) -> str:
    """What `CORTEX_COMPILE` asks for on `device`: 'off', 'inductor' or another torch.compile backend."""
    value = os.environ.get(COMPILE_ENV, "auto").strip().lower() or "auto"
    if value == "auto":
        return "inductor" if device.type == "cuda" else "off"
    if value in ("off", "0", "false", "no"):
        return "off"
    if value in ("on", "1", "true", "yes"):
        return "inductor"
    return value


class DecodeStep:
    """One decode step, `(token, position, step, keys) -> next token`, compiled once per (decoder, rows, settings)."""

    def __init__(self, decoder: Decoder, settings: SamplerSettings, vocab: int, mode: str, device: torch.device):
        self.decoder, self.settings, self.vocab = decoder, settings, vocab
        self.guided = settings.guidance is not None
        self.mode = mode
        self.fn: Callable[..., torch.Tensor] = self.eager
        if mode != "off":
            options = {"mode": "reduce-overhead"} if (mode == "inductor" and device.type == "cuda") else {}
            self.fn = torch.compile(self.eager, fullgraph=True, dynamic=False, backend=mode, **options)
        self.tried = mode == "off"

    def eager(self, token: torch.Tensor, position: torch.Tensor, step: torch.Tensor, keys: torch.Tensor,
              visible: int | None = None) -> torch.Tensor:
        inputs = torch.cat((token, token)) if self.guided else token
        logits = (self.decoder(inputs, position) if visible is None else self.decoder(inputs, position, visible))[:, -1]
        return choose(logits, keys, step, self.settings, self.vocab)

    def __call__(self, token: torch.Tensor, position: torch.Tensor, step: torch.Tensor, keys: torch.Tensor, visible: int) -> torch.Tensor:
        """The next token; `visible` (cache positions written so far) lets an eager step attend to those only."""
        if self.fn == self.eager:
            return self.eager(token, position, step, keys, visible)
        if self.tried:
            return self.fn(token, position, step, keys)
        self.tried = True
        try:
            return self.fn(token, position, step, keys)
        except Exception as exc:  # capture impossible here (an op without a graph, no compiler): eager, said once
            warnings.warn(f"cortex: the decode step did not compile ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                          "sampling eagerly", RuntimeWarning, stacklevel=2)
            self.fn = self.eager
            return self.eager(token, position, step, keys, visible)


def decode_step(decoder: Decoder, rows: int, settings: SamplerSettings, vocab: int, device: torch.device) -> DecodeStep:
    """The decoder's step for `rows` cache rows under `settings`: made (and compiled) on first use, then reused.

    The steps live on the decoder itself, so they (and their captured graphs) go when the decoder goes.
    """
    mode = compile_mode(device)
    steps = decoder.__dict__.setdefault("_decode_steps", {})
    key = (rows, settings, vocab, mode)
    if key not in steps:
        steps[key] = DecodeStep(decoder, settings, vocab, mode, device)
    return steps[key]


@torch.no_grad()
def sample_tokens(
    decoder: Decoder,
    prompt: torch.Tensor,
    steps: int,
    vocab: int,
    keys: torch.Tensor,
    settings: SamplerSettings,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Token rows (B x steps) in the prior's sampling order.

    Args:
        decoder: the backend's `Decoder` (its cache is set up here for the prompt plus `steps` positions).
        prompt: (B' x P) conditioning tokens; with guidance B' = 2B: the conditioned rows, then the null rows.
        steps: tokens to draw per image.
        vocab: image tokens are the first `vocab` logits.
        keys: (B,) int64 identity keys (`philox` stream keys), on the decoder's device.
        settings: the sampler settings (`noise` must be 'philox').
        on_step: called as on_step(done, steps) after each token (from the host; it does not wait for the device).
    """
    device = prompt.device
    rows, length = prompt.shape
    batch = rows // 2 if settings.guidance is not None else rows
    if keys.shape != (batch,):
        raise ValueError(f"{batch} images need {batch} stream keys, got shape {tuple(keys.shape)}")
    decoder.setup_cache(rows, length + steps)
    out = torch.empty(batch, steps, dtype=torch.long, device=device)
    counters = torch.arange(steps, dtype=torch.long, device=device)
    positions = torch.arange(length, length + steps, dtype=torch.long, device=device)
    logits = decoder(prompt, torch.arange(length, device=device), length)[:, -1]
    token = choose(logits, keys, counters[0], settings, vocab)
    out[:, 0] = token[:, 0]
    if on_step is not None:
        on_step(1, steps)
    step = decode_step(decoder, rows, settings, vocab, device)
    for n in range(1, steps):
        token = step(token, positions[n - 1:n], counters[n], keys, length + n).clone()  # a CUDA graph reuses its output
        out[:, n] = token[:, 0]
        if on_step is not None:
            on_step(n + 1, steps)
    return out
