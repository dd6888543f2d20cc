"""The taming backend: the only module that imports taming-transformers.

Loads a class-conditional `Net2NetTransformer` (VQGAN first stage + GPT prior +
`Labelator`) from a taming config yaml and a checkpoint with strict key checking,
and exposes it as a `VQGM`: the codebook, tokens -> embedding E, decoding, encoding,
and seeded class-conditional sampling with the GPT's KV cache. It also builds the
networks the mini model is trained from (`build_net`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import math
import pickle
import zipfile
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from safetensors.torch import load_file

from . import taming_shim
from ..core.errors import CortexError, first_line
from ..core.philox import keys_tensor
from .base import (Concept, ModelFiles, ModelShape, SamplerSettings, StepCallback, Streams, check_image_size, decode_in_chunks,
                   pick_tokens, token_rows)
from .sampler import sample_tokens

NAME = "taming"
DUMMY_LOSS = {"target": "taming.modules.losses.DummyLoss"}
NET2NET = "taming.models.cond_transformer.Net2NetTransformer"
# checkpoint keys that only belong to the (replaced) training losses: LPIPS/discriminator weights
IGNORABLE_PREFIXES = ("first_stage_model.loss.", "cond_stage_model.loss.")
# taming's README samples the ImageNet cin_transformer with `-k 600 -t 1.0 -p 0.92`; models whose
# config has no `cortex.sampler` section get that setting (top-k capped at the codebook size).
IMAGENET_SAMPLER = SamplerSettings(top_k=600, top_p=0.92, temperature=1.0)
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _load_yaml(config_path: Path) -> Any:
    if not config_path.is_file():
        raise CortexError(f"config file {str(config_path)!r} does not exist")
    try:
        config = OmegaConf.load(config_path)
    except Exception as exc:
        raise CortexError(f"config {str(config_path)!r} is not valid YAML: {first_line(exc)}") from exc
    target = OmegaConf.select(config, "model.target") if OmegaConf.is_dict(config) else None
    if target != NET2NET:
        raise CortexError(
            f"config {str(config_path)!r} is not a taming class-conditional model "
            f"(model.target is {target!r}, expected {NET2NET!r})"
        )
    return config


def sanitize_config(config: Any) -> Any:
    """Copy of a taming config that loads offline: DummyLoss instead of LPIPS, no stale ckpt_path."""
    config = copy.deepcopy(config)
    params = config.model.setdefault("params", {})
    params.pop("ckpt_path", None)
    first = params.get("first_stage_config")
    if first is None or "target" not in first:
        raise CortexError("config has no model.params.first_stage_config.target (a taming VQModel)")
    first_params = first.setdefault("params", {})
    first_params.pop("ckpt_path", None)
    first_params["lossconfig"] = OmegaConf.create(DUMMY_LOSS)
    cond = params.get("cond_stage_config")
    if OmegaConf.is_dict(cond):
        cond.get("params", {}).pop("ckpt_path", None)
    return config


def config_hash(config: Any) -> str:
    return hashlib.sha256(OmegaConf.to_yaml(config, sort_keys=True).encode()).hexdigest()


def read_state_dict(ckpt_path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors, a torch file, or a PyTorch-Lightning checkpoint."""
    if not ckpt_path.is_file():
        raise CortexError(f"checkpoint {str(ckpt_path)!r} does not exist")
    if ckpt_path.suffix == ".safetensors":
        try:
            return load_file(str(ckpt_path))
        except Exception as exc:
            raise CortexError(f"checkpoint {str(ckpt_path)!r} is not a readable safetensors file: {first_line(exc)}") from exc
    try:
        obj = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError):
        # Lightning checkpoints pickle callbacks and hyper-parameters; only for files the user named.
        try:
            obj = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise CortexError(f"checkpoint {str(ckpt_path)!r} is not a torch checkpoint: {first_line(exc)}") from exc
    except (EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CortexError(f"checkpoint {str(ckpt_path)!r} is not a torch checkpoint: {first_line(exc)}") from exc
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CortexError(f"checkpoint {str(ckpt_path)!r} holds no state_dict of tensors")
    return obj


def _describe(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


class TamingVQGM:
    """A loaded taming `Net2NetTransformer` (VQGAN first stage + class-conditional GPT prior) as a `VQGM`."""

    backend = NAME

    def __init__(self, net: Any, config: Any, device: torch.device):
        self.net = net
        self.config = config
        self.device = device
        shape = _shape(config)
        self.n_embed: int = shape.n_embed
        self.embed_dim: int = shape.embed_dim
        self.image_size: int = shape.image_size
        self.grid: int = shape.grid
        self.n_classes: int = shape.n_classes
        self._decoders: dict[str, TamingDecoder] = {}

    @property
    def prior_shape(self) -> tuple[int, int]:
        """The GPT's (layers, width): what one image's KV cache holds per position."""
        config = self.net.transformer.config
        return int(config.n_layer), int(config.n_embd)

    # -- codebook and embeddings ---------------------------------------------------------
    @property
    def codebook(self) -> torch.Tensor:
        """The codebook C (K x d)."""
        return self.net.first_stage_model.quantize.embedding.weight

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token grids (B x m x m or B x m^2) -> token-based embedding E (B x d x m x m)."""
        tokens = tokens.to(self.device).long().reshape(-1, self.grid, self.grid)
        return F.embedding(tokens, self.codebook).permute(0, 3, 1, 2).contiguous()

    # -- decode / encode -------------------------------------------------------------------
    @torch.no_grad()
    def decode_embedding(self, embedding: torch.Tensor) -> torch.Tensor:
        """E (B x d x m x m) -> images in [-1, 1] (B x 3 x H x W)."""
        return self.net.first_stage_model.decode(embedding.to(self.device)).clamp(-1, 1)

    def decode_tokens(self, tokens: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """Token grids -> images in [-1, 1]."""
        return decode_in_chunks(self, tokens, batch_size)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (B x 3 x H x W at the model's resolution) -> token grids (B x m x m)."""
        check_image_size(images, self.image_size)
        _, _, info = self.net.first_stage_model.encode(images.to(self.device))
        return info[2].reshape(images.shape[0], self.grid, self.grid)

    # -- sampling --------------------------------------------------------------------------
    def default_sampler(self) -> SamplerSettings:
        """The config's optional top-level section `cortex: {sampler: {top_k, top_p, temperature, greedy}}`
        (the bundled mini model has one); otherwise `IMAGENET_SAMPLER` with top-k capped at K.
        """
        section = OmegaConf.select(self.config, "cortex.sampler", default=None)
        if section is None:
            return SamplerSettings(top_k=min(IMAGENET_SAMPLER.top_k, self.n_embed), top_p=IMAGENET_SAMPLER.top_p,
                                   temperature=IMAGENET_SAMPLER.temperature)
        try:
            top_k = section.get("top_k")
            return SamplerSettings(
                top_k=int(top_k) if top_k not in (None, 0) else None,
                top_p=float(section.get("top_p", 1.0)),
                temperature=float(section.get("temperature", 1.0)),
                greedy=bool(section.get("greedy", False)),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise CortexError(f"the model config's cortex.sampler section is malformed: {first_line(exc)}") from exc

    @torch.no_grad()
    def sample(
        self,
        classes: Sequence[Concept],
        streams: Streams,
        settings: SamplerSettings,
        on_step: StepCallback | None = None,
    ) -> torch.Tensor:
        """Class-conditional token grids, one image per class and stream.

        The philox sampler (`settings.noise`, the default) decodes with `TamingDecoder` through the GPU-native
        sampler (`sampler.sample_tokens`): weights cast once to `settings.precision`, a static KV cache, noise
        drawn on the device keyed by each image's stream key. The host sampler is the older loop
        (`forward_cached` + per-image host generators), kept so older stores' images reproduce.

        Returns:
            LongTensor (B x m x m) of token ids in raster order.
        """
        if len(classes) != len(streams):
            raise ValueError("classes and streams must have the same length")
        class_ids = [int(c.class_id) for c in classes]
        for cid in class_ids:
            if self.n_classes and not 0 <= cid < self.n_classes:
                raise CortexError(f"class id {cid} is outside this model's {self.n_classes} classes")
        if settings.guidance is not None:
            raise CortexError("taming's class-conditional GPT has no null class; classifier-free guidance needs one")
        steps = self.grid * self.grid
        batch = len(class_ids)
        cond = torch.tensor(class_ids, device=self.device, dtype=torch.long)[:, None]
        _, cond = self.net.encode_to_c(cond)
        if settings.noise == "host":
            out = self._sample_host(cond, list(streams), settings, on_step)
        else:
            if isinstance(streams[0], torch.Generator):
                raise ValueError("the philox sampler takes stream keys (`base.image_streams`), not torch generators")
            keys = keys_tensor(streams, self.device)
            out = sample_tokens(self.decoder(settings.precision), cond, steps, self.n_embed, keys, settings, on_step)
        out = self.net.permuter(out, reverse=True)
        return out.reshape(batch, self.grid, self.grid)

    def decoder(self, precision: str = "fp32") -> "TamingDecoder":
        """The GPT as a `TamingDecoder` in `precision` ('fp32' or 'bf16'), built once per precision and kept."""
        if precision not in PRECISION_DTYPES:
            raise CortexError(f"sampling precision must be one of {', '.join(PRECISION_DTYPES)}, got {precision!r}")
        if precision not in self._decoders:
            self._decoders[precision] = TamingDecoder(self.net.transformer, PRECISION_DTYPES[precision])
        return self._decoders[precision]

    def _sample_host(self, cond: torch.Tensor, generators: list[torch.Generator], settings: SamplerSettings,
                     on_step: StepCallback | None) -> torch.Tensor:
        """The older sampler: taming's GPT eagerly over a preallocated cache, each image's noise from its host generator."""
        gpt = self.net.transformer
        steps = self.grid * self.grid
        batch = cond.shape[0]
        x = cond
        out = torch.empty(batch, steps, dtype=torch.long, device=self.device)
        dtype = torch.get_autocast_dtype(self.device.type) if torch.is_autocast_enabled(self.device.type) else gpt.pos_emb.dtype
        cache = KVCache(gpt, batch, cond.shape[1] + steps, self.device, dtype)
        for n in range(steps):
            logits = forward_cached(gpt, x, cache)
            logits = logits[:, -1, : self.n_embed].float()  # the GPT vocabulary may also hold class ids
            x = pick_tokens(logits, generators, settings)
            out[:, n] = x[:, 0]
            if on_step is not None:
                on_step(n + 1, steps)
        return out

    @torch.no_grad()
    def prior_nll(self, tokens: torch.Tensor, classes: Sequence[Concept], batch_size: int = 32) -> torch.Tensor:
        """Per-token negative log-likelihood of grids under the GPT prior, conditioned on their classes.

        Teacher-forced exactly as `sample` draws: the cond stage's class token(s), then the image tokens
        in the permuter's order; position i is scored by the logits after the conditioning and tokens < i
        (the first image token by the conditioning alone), softmaxed over the K image tokens only (the
        GPT vocabulary may also hold class ids, which `sample` never draws).

        Args:
            tokens: LongTensor (B x m x m or B x m^2) of token ids in raster order.
            classes: one class per grid (its `class_id` conditions the prior).

        Returns:
            float tensor (B,) on the CPU: the mean over the m^2 positions of -log p(token_i | class, tokens_<i).
        """
        tokens = token_rows(tokens, classes, self.grid, self.n_embed)
        ids = [int(c.class_id) for c in classes]
        for cid in ids:
            if self.n_classes and not 0 <= cid < self.n_classes:
                raise CortexError(f"class id {cid} is outside this model's {self.n_classes} classes")
        out = []
        for start in range(0, len(ids), batch_size):
            z = self.net.permuter(tokens[start:start + batch_size].to(self.device))
            cond = torch.tensor(ids[start:start + batch_size], device=self.device, dtype=torch.long)[:, None]
            _, cond = self.net.encode_to_c(cond)
            logits, _ = self.net.transformer(torch.cat((cond, z), dim=1)[:, :-1])
            logits = logits[:, cond.shape[1] - 1:, : self.n_embed].float()
            logp = logits.log_softmax(dim=-1).gather(-1, z[..., None])[..., 0]
            out.append(-logp.mean(dim=1).cpu())
        return torch.cat(out) if out else torch.zeros(0)

    @torch.no_grad()
    def sample_uncached(self, class_ids: list[int], settings: SamplerSettings = SamplerSettings(greedy=True)) -> torch.Tensor:
        """taming's own `Net2NetTransformer.sample` (no KV cache); the reference for tests and benchmarks."""
        cond = torch.tensor(class_ids, device=self.device, dtype=torch.long)[:, None]
        _, cond = self.net.encode_to_c(cond)
        empty = torch.zeros(len(class_ids), 0, dtype=torch.long, device=self.device)
        out = self.net.sample(
            empty, cond, steps=self.grid * self.grid, temperature=settings.temperature,
            sample=not settings.greedy, top_k=None if settings.greedy else settings.top_k,
        )
        return self.net.permuter(out, reverse=True).reshape(len(class_ids), self.grid, self.grid)


def _shape(config: Any) -> ModelShape:
    """Sizes of a (sanitized) taming config: K and d of the first stage, grid = resolution / 2^(levels - 1)."""
    try:
        fs = config.model.params.first_stage_config.params
        dd = fs.ddconfig
        resolution = int(dd.resolution)
        cond = config.model.params.get("cond_stage_config")
        n_classes = int(cond.params.n_classes) if cond is not None and "n_classes" in cond.get("params", {}) else 0
        return ModelShape(
            n_embed=int(fs.n_embed), embed_dim=int(fs.embed_dim), grid=resolution // 2 ** (len(dd.ch_mult) - 1),
            image_size=resolution, n_classes=n_classes, config_hash=config_hash(config),
        )
    except Exception as exc:  # a missing key of a hand-edited config
        raise CortexError(f"taming config lacks the first stage's sizes (n_embed, embed_dim, ddconfig): {first_line(exc)}") from exc


def build_net(config: dict[str, Any]) -> Any:
    """A freshly initialised taming network from a config dict (the mini model's training starts here)."""
    main = taming_shim.install()
    with contextlib.redirect_stdout(io.StringIO()):  # taming prints shapes while building
        return main.instantiate_from_config(OmegaConf.create(config).model)


def load_vqgm(config_path: str | Path, ckpt_path: str | Path, device: torch.device | str = "cpu") -> TamingVQGM:
    """Load a taming class-conditional model with strict checkpoint keys.

    Args:
        config_path: taming config yaml whose `model.target` is `Net2NetTransformer`.
        ckpt_path: `.safetensors`, a torch state dict, or a Lightning checkpoint (`state_dict` key).
        device: where to put the model.

    Raises:
        CortexError: unreadable files, a config that is not a taming model, or checkpoint keys
            that do not match the config (named in the message).
    """
    config = sanitize_config(_load_yaml(Path(config_path)))
    taming_main = taming_shim.install()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # taming prints shapes while building
            net = taming_main.instantiate_from_config(config.model)
    except Exception as exc:
        raise CortexError(f"config {str(config_path)!r} does not build a taming model: {first_line(exc)}") from exc
    state = read_state_dict(Path(ckpt_path))
    state = {k: v for k, v in state.items() if not k.startswith(IGNORABLE_PREFIXES)}
    expected = net.state_dict()
    missing = sorted(k for k in expected if k not in state and not k.startswith(IGNORABLE_PREFIXES))
    unexpected = sorted(k for k in state if k not in expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_describe(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_describe(unexpected)}")
        raise CortexError(f"checkpoint {str(ckpt_path)!r} does not match config {str(config_path)!r}; " + "; ".join(parts))
    mismatched = [k for k, v in state.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if mismatched:
        k = mismatched[0]
        raise CortexError(
            f"checkpoint {str(ckpt_path)!r} does not match config {str(config_path)!r}; "
            f"shape of {k} is {tuple(state[k].shape)}, config expects {tuple(expected[k].shape)}"
            + (f" (+{len(mismatched) - 1} more)" if len(mismatched) > 1 else "")
        )
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    net.load_state_dict(state, strict=False)  # strictness checked above, loss keys excepted
    net = net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return TamingVQGM(net, config, torch.device(device))


class KVCache:
    """Preallocated keys and values of every GPT layer: (layers, B, heads, length, head size) each."""

    def __init__(self, gpt: Any, batch: int, length: int, device: torch.device, dtype: torch.dtype):
        cfg = gpt.config
        shape = (cfg.n_layer, batch, cfg.n_head, length, cfg.n_embd // cfg.n_head)
        self.keys = torch.empty(shape, device=device, dtype=dtype)
        self.values = torch.empty(shape, device=device, dtype=dtype)
        self.length = 0


def _attend(attn: Any, x: torch.Tensor, cache: KVCache, layer: int) -> torch.Tensor:
    """taming's `CausalSelfAttention` on new positions x (B, T, C), reading and extending the cache in place."""
    b, t, c = x.shape
    heads = attn.n_head
    start, end = cache.length, cache.length + t
    k = attn.key(x).view(b, t, heads, c // heads).transpose(1, 2)
    q = attn.query(x).view(b, t, heads, c // heads).transpose(1, 2)
    v = attn.value(x).view(b, t, heads, c // heads).transpose(1, 2)
    cache.keys[layer, :, :, start:end] = k
    cache.values[layer, :, :, start:end] = v
    k, v = cache.keys[layer, :, :, :end], cache.values[layer, :, :, :end]
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
    if start == 0:  # the prompt attends causally; taming masks only when there is no past
        att = att.masked_fill(attn.mask[:, :, :t, :t] == 0, float("-inf"))
    y = (F.softmax(att, dim=-1) @ v).transpose(1, 2).contiguous().view(b, t, c)
    return attn.proj(y)


def forward_cached(gpt: Any, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """taming's `GPT.forward_with_past` (eval mode) with the cache written in place, not re-concatenated each step.

    taming concatenates every layer's whole past twice per token (O(n^2) copies over a grid);
    the same arithmetic on a preallocated cache gives bit-identical logits on CPU (tested).
    """
    x = gpt.tok_emb(idx)
    t = x.shape[1]
    x = x + gpt.pos_emb[:, cache.length:cache.length + t, :]
    for layer, block in enumerate(gpt.blocks):
        x = x + _attend(block.attn, block.ln1(x), cache, layer)
        x = x + block.mlp(block.ln2(x))
    cache.length += t
    return gpt.head(gpt.ln_f(x))


class TamingDecoder(torch.nn.Module):
    """taming's mingpt `GPT` ready for the GPU-native sampler (`sampler.Decoder`).

    Its weights are cast once to the sampling dtype (autocast would re-cast every frozen weight at every
    step); the three q/k/v Linears are one fused matmul; attention is `scaled_dot_product_attention` over a
    static KV cache (module buffers, so a captured step keeps their addresses) with the causal mask of the
    positions written, which gives taming's `forward_with_past` arithmetic up to float rounding.
    """

    def __init__(self, gpt: Any, dtype: torch.dtype):
        super().__init__()
        cfg = gpt.config
        self.n_head, self.n_embd, self.block_size = cfg.n_head, cfg.n_embd, cfg.block_size
        self.dtype = dtype
        self.tok_emb = copy.deepcopy(gpt.tok_emb).to(dtype)
        self.register_buffer("pos_emb", gpt.pos_emb.detach()[0].to(dtype).clone(), persistent=False)
        self.ln1 = torch.nn.ModuleList()
        self.qkv = torch.nn.ModuleList()
        self.proj = torch.nn.ModuleList()
        self.ln2 = torch.nn.ModuleList()
        self.mlp = torch.nn.ModuleList()
        for block in gpt.blocks:
            attn = block.attn
            fused = torch.nn.Linear(self.n_embd, 3 * self.n_embd, bias=attn.query.bias is not None)
            fused.weight.data = torch.cat([attn.query.weight, attn.key.weight, attn.value.weight]).detach().clone()
            if fused.bias is not None:
                fused.bias.data = torch.cat([attn.query.bias, attn.key.bias, attn.value.bias]).detach().clone()
            self.qkv.append(fused)
            self.ln1.append(copy.deepcopy(block.ln1))
            self.proj.append(copy.deepcopy(attn.proj))
            self.ln2.append(copy.deepcopy(block.ln2))
            self.mlp.append(copy.deepcopy(block.mlp))
        self.ln_f = copy.deepcopy(gpt.ln_f)
        self.head = copy.deepcopy(gpt.head)
        self.to(device=gpt.pos_emb.device, dtype=dtype).eval().requires_grad_(False)
        self._caches: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.k_cache = self.v_cache = self.causal = None

    def setup_cache(self, batch: int, length: int) -> None:
        """Select the static KV cache for `batch` rows of `length` positions (allocated, zeroed, on first use)."""
        if length > self.block_size:
            raise CortexError(f"the GPT's block size {self.block_size} is shorter than {length} positions")
        if (batch, length) not in self._caches:
            device = self.pos_emb.device
            shape = (len(self.qkv), batch, self.n_head, length, self.n_embd // self.n_head)
            causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
            self._caches[(batch, length)] = (torch.zeros(shape, device=device, dtype=self.dtype),
                                             torch.zeros(shape, device=device, dtype=self.dtype), causal)
        self.k_cache, self.v_cache, self.causal = self._caches[(batch, length)]

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, visible: int | None = None) -> torch.Tensor:
        """Logits (B x T x V) of tokens (B x T) at cache positions (T,); their keys and values go to the cache.

        `visible` (eager callers only: a Python int changes the graph): attend to the first `visible` cache
        positions instead of the whole masked cache, the same numbers for a fraction of the work on a CPU.
        """
        b, t = tokens.shape
        heads, width = self.n_head, self.n_embd
        x = self.tok_emb(tokens) + self.pos_emb[positions]
        end = self.k_cache.shape[3] if visible is None else visible
        mask = self.causal[positions, :end]  # T x L: a position sees itself and what came before
        for layer in range(len(self.qkv)):
            q, k, v = self.qkv[layer](self.ln1[layer](x)).view(b, t, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
            self.k_cache[layer, :, :, positions] = k
            self.v_cache[layer, :, :, positions] = v
            keys, values = self.k_cache[layer, :, :, :end], self.v_cache[layer, :, :, :end]
            if visible is not None and t == 1:  # eager, one query: plain matmuls beat the fused kernel's set-up on a CPU
                y = ((q @ keys.transpose(-2, -1)) * (1.0 / math.sqrt(keys.shape[-1]))).softmax(dim=-1) @ values
            else:
                y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
            x = x + self.proj[layer](y.transpose(1, 2).reshape(b, t, width))
            x = x + self.mlp[layer](self.ln2[layer](x))
        return self.head(self.ln_f(x))


class TamingBackend:
    """Taming class-conditional models: a config yaml (`--config`) and a checkpoint (`--ckpt`)."""

    name = NAME

    def locate(self, path: Path | None, config: Path | None, ckpt: Path | None) -> ModelFiles:
        if path is not None:
            raise CortexError(f"the taming backend takes --config and --ckpt, not a path ({str(path)!r})")
        if config is None or ckpt is None:
            raise CortexError("a taming model needs --config (its yaml) and --ckpt (its checkpoint)")
        return ModelFiles(Path(config).expanduser().resolve(), Path(ckpt).expanduser().resolve())

    def describe(self, files: ModelFiles) -> ModelShape:
        return _shape(sanitize_config(_load_yaml(Path(files.config))))

    def load(self, files: ModelFiles, device: torch.device | str) -> TamingVQGM:
        return load_vqgm(files.config, files.ckpt, device)


BACKEND = TamingBackend()
