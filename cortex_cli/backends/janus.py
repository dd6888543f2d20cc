"""The janus backend: the only module that imports transformers.

DeepSeek's Janus-Pro through transformers' `JanusForConditionalGeneration`: a VQ tokenizer (LlamaGen's
VQ: 16,384 codes of width 8, l2-normalised, 16x downsampling, 384 px -> 24x24 tokens) and a Llama
language model that writes image tokens through its generation head, with classifier-free guidance.
The prior is text-conditional, so a cortex class is a prompt: class "goldfinch" is sampled from
"a photo of a goldfinch" in the snapshot's chat template, as transformers' Janus examples prompt;
a prompt concept's class (`cortex concepts add NAME --prompt TEXT`) is sampled from TEXT verbatim.
A grid's prior NLL (`prior_nll`) is the unguided conditional's: guidance only shapes sampling.

A model is a local snapshot directory in transformers' format (`config.json`, `*.safetensors`,
tokenizer and processor files), e.g. `deepseek-community/Janus-Pro-1B` downloaded by the user;
nothing is ever downloaded (`local_files_only`). transformers is an optional extra
(`pip install "cortex-cli[janus]"`), imported when a janus model is first described or loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import json
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F

from ..core.errors import CortexError, first_line
from .base import Concept, ModelFiles, ModelShape, SamplerSettings, StepCallback, Streams, pick_tokens, token_rows

NAME = "janus"
PROMPT = "a photo of a {name}"
# DeepSeek's Janus generation recipe (generation_inference.py): CFG weight 5, temperature 1, no top-k/top-p
JANUS_SAMPLER = SamplerSettings(top_k=None, top_p=1.0, temperature=1.0, guidance=5.0)
# the sft format of Janus, for snapshots that ship no chat template
FALLBACK_TEMPLATE = "<|User|>: {prompt}\n\n<|Assistant|>:"


def _transformers() -> ModuleType:
    try:
        return importlib.import_module("transformers")
    except ImportError as exc:
        raise CortexError('the janus backend needs transformers 5: pip install "cortex-cli[janus]"') from exc


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers' loading bars and notices off (cortex prints one line per command)."""
    hf_logging = importlib.import_module("transformers.utils.logging")
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _read_config(directory: Path) -> Any:
    tf = _transformers()
    try:
        with _quiet():
            return tf.JanusConfig.from_pretrained(str(directory), local_files_only=True)
    except Exception as exc:
        raise CortexError(f"{str(directory)!r} holds no readable Janus config.json: {first_line(exc)}") from exc


def _shape(directory: Path, config: Any) -> ModelShape:
    vq = config.vq_config
    levels = len(vq.channel_multiplier) - 1
    grid = int(vq.num_patches)
    raw = json.loads((directory / "config.json").read_text())
    return ModelShape(
        n_embed=int(vq.num_embeddings), embed_dim=int(vq.embed_dim), grid=grid, image_size=grid * 2 ** levels, n_classes=0,
        config_hash=hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest(),
    )


class JanusVQGM:
    """A loaded `JanusForConditionalGeneration` (VQ tokenizer + text-conditional image-token prior) as a `VQGM`."""

    backend = NAME

    def __init__(self, net: Any, processor: Any, shape: ModelShape, device: torch.device):
        self.net = net
        self.processor = processor
        self.device = device
        self.n_embed, self.embed_dim, self.grid, self.image_size = shape.n_embed, shape.embed_dim, shape.grid, shape.image_size
        self.n_classes = 0  # text-conditional: any class names, one prompt each
        vq = net.model.vqmodel
        # the decoder reads l2-normalised codebook rows (`get_codebook_entry`): that is C
        self._codebook = F.normalize(vq.quantize.embedding.weight.detach().float(), p=2, dim=-1)
        self._dtype = vq.quantize.embedding.weight.dtype
        tokenizer = processor.tokenizer
        generation = net.generation_config
        # the ids transformers' Janus `generate` keeps in the unconditional prompt, from the same places
        self._bos = generation.bos_token_id if generation.bos_token_id is not None else tokenizer.bos_token_id
        self._pad = generation.pad_token_id if generation.pad_token_id is not None else tokenizer.pad_token_id
        boi = (generation.generation_kwargs or {}).get("boi_token_id")
        self._boi = boi if boi is not None else tokenizer.convert_tokens_to_ids(processor.image_start_token)
        lm = net.model.language_model
        params = inspect.signature(lm.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"  # renamed within transformers 5.x

    # -- codebook and embeddings ---------------------------------------------------------
    @property
    def codebook(self) -> torch.Tensor:
        """The codebook C (K x d): the VQ's l2-normalised code vectors, float32."""
        return self._codebook

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token grids (B x m x m or B x m^2) -> token-based embedding E (B x d x m x m)."""
        tokens = tokens.to(self.device).long().reshape(-1, self.grid, self.grid)
        return F.embedding(tokens, self.codebook).permute(0, 3, 1, 2).contiguous()

    # -- decode / encode -------------------------------------------------------------------
    @torch.no_grad()
    def decode_embedding(self, embedding: torch.Tensor) -> torch.Tensor:
        """E (B x d x m x m) -> images in [-1, 1] (B x 3 x H x W): the VQ's `post_quant_conv` and decoder."""
        vq = self.net.model.vqmodel
        return vq.decoder(vq.post_quant_conv(embedding.to(self.device, self._dtype))).float().clamp(-1, 1)

    def decode_tokens(self, tokens: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """Token grids -> images in [-1, 1]."""
        tokens = tokens.reshape(-1, self.grid, self.grid)
        return torch.cat([self.decode_embedding(self.embed(chunk)) for chunk in tokens.split(batch_size)])

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] at the model's resolution -> token grids (B x m x m).

        The nearest code by cosine, as Janus's VQ (LlamaGen, `codebook_l2_norm`) quantises; transformers'
        `JanusVQVAEVectorQuantizer.forward` compares unnormalised vectors, which its own decoder
        (normalised rows) does not read back.
        """
        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            raise CortexError(f"images are {tuple(images.shape[-2:])} px; this model takes {self.image_size}x{self.image_size}")
        vq = self.net.model.vqmodel
        hidden = vq.quant_conv(vq.encoder(images.to(self.device, self._dtype))).float()  # B x d x m x m
        flat = hidden.permute(0, 2, 3, 1).reshape(-1, self.embed_dim)
        tokens = (F.normalize(flat, dim=-1) @ self.codebook.T).argmax(dim=-1)
        return tokens.reshape(images.shape[0], self.grid, self.grid)

    # -- sampling --------------------------------------------------------------------------
    def default_sampler(self) -> SamplerSettings:
        """DeepSeek's Janus-Pro setting: classifier-free guidance 5, temperature 1, no top-k or top-p."""
        return JANUS_SAMPLER

    @torch.no_grad()
    def prior_nll(self, tokens: torch.Tensor, classes: Sequence[Concept], batch_size: int = 32) -> torch.Tensor:
        """Per-token negative log-likelihood of grids under the language model conditioned on their classes' prompts.

        Teacher-forced as `_sample_group` draws (the prompt, ending in the begin-of-image token, then the
        image tokens through the generation embeddings; the generation head's logits), in one forward
        pass, but without classifier-free guidance: the model's likelihood is its conditional language
        model's, and guidance is a sampling heuristic, so generated grids and edits alike are scored
        under the same unguided conditional. Prompts of equal length share a batch (never padded).

        Args:
            tokens: LongTensor (B x m x m or B x m^2) of token ids in raster order.
            classes: one class per grid (its `name`, or a prompt concept's `prompt` verbatim, is the prompt).

        Returns:
            float tensor (B,) on the CPU: the mean over the m^2 positions of -log p(token_i | prompt, tokens_<i).
        """
        if batch_size < 1:
            raise CortexError(f"batch_size must be at least 1, got {batch_size}")
        tokens = token_rows(tokens, classes, self.grid, self.n_embed)
        prompts = [self.prompt_ids(c.name, getattr(c, "prompt", "")) for c in classes]
        groups: dict[int, list[int]] = {}
        for i, ids in enumerate(prompts):
            groups.setdefault(len(ids), []).append(i)
        out = torch.empty(len(classes))
        for members in groups.values():
            for start in range(0, len(members), batch_size):
                chunk = members[start:start + batch_size]
                ids = torch.stack([prompts[i] for i in chunk]).to(self.device)
                out[chunk] = self._grid_nll(ids, tokens[chunk].to(self.device))
        return out

    def _grid_nll(self, ids: torch.Tensor, grids: torch.Tensor) -> torch.Tensor:
        """Mean -log p of each row of `grids` (B x m^2) after its prompt `ids` (B x L, equal lengths), on the CPU."""
        net = self.net
        embeds = torch.cat([net.get_input_embeddings()(ids), net.prepare_embeddings_for_image_generation(grids[:, :-1])], dim=1)
        hidden = net.model.language_model(inputs_embeds=embeds, use_cache=False).last_hidden_state
        logits = net.model.generation_head(hidden[:, ids.shape[1] - 1:]).float()  # the last prompt position predicts token 0
        logp = logits.log_softmax(dim=-1).gather(-1, grids[..., None])[..., 0]
        return -logp.mean(dim=1).cpu()

    def prompt(self, name: str, verbatim: str = "") -> str:
        """The chat-formatted prompt of a class name, or of a prompt concept's `verbatim` text (before the begin-of-image token)."""
        text = verbatim or PROMPT.format(name=name)
        if getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "text", "text": text}]}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True)
        return FALLBACK_TEMPLATE.format(prompt=text)

    def prompt_ids(self, name: str, verbatim: str = "") -> torch.Tensor:
        """Token ids (1-D) of a class's prompt, ending in the begin-of-image token."""
        return self.processor(text=[self.prompt(name, verbatim)], generation_mode="image", return_tensors="pt").input_ids[0]

    @torch.no_grad()
    def sample(
        self,
        classes: Sequence[Concept],
        streams: Streams,
        settings: SamplerSettings,
        on_step: StepCallback | None = None,
    ) -> torch.Tensor:
        """Text-conditional token grids, the language model's KV cache, CFG on the generation head's logits.

        The loop is transformers' `JanusForConditionalGeneration.generate(generation_mode="image")`
        (conditional and unconditional halves, the same unconditional prompt), except that each
        image draws its tokens from its own stream (`base.pick_tokens`: a philox key, counter = step, or the
        host sampler's generator) instead of the global RNG. transformers' model runs eagerly here (its
        dynamic cache does not capture), so the GPU-native sampler's compiled step does not apply. Prompts of equal length share a batch, so no prompt is ever padded.

        Returns:
            LongTensor (B x m x m) of token ids in raster order.
        """
        if len(classes) != len(streams):
            raise ValueError("classes and streams must have the same length")
        prompts = [self.prompt_ids(c.name, getattr(c, "prompt", "")) for c in classes]
        groups: dict[int, list[int]] = {}
        for i, ids in enumerate(prompts):
            groups.setdefault(len(ids), []).append(i)
        steps = self.grid * self.grid
        out = torch.empty(len(classes), steps, dtype=torch.long, device=self.device)
        done = 0
        total = steps * len(groups)

        def step(_: int, __: int) -> None:
            nonlocal done
            done += 1
            if on_step is not None:
                on_step(done, total)

        for members in groups.values():
            ids = torch.stack([prompts[i] for i in members]).to(self.device)
            out[members] = self._sample_group(ids, [streams[i] for i in members], settings, step)
        return out.reshape(len(classes), self.grid, self.grid)

    def _sample_group(self, ids: torch.Tensor, streams: Streams, settings: SamplerSettings,
                      on_step: StepCallback) -> torch.Tensor:
        net, lm = self.net, self.net.model.language_model
        guided = settings.guidance is not None and settings.guidance != 1.0
        if guided:
            uncond = ids.clone()
            uncond[(ids != self._bos) & (ids != self._boi)] = self._pad
            ids = torch.cat([ids, uncond])
        batch = len(streams)
        steps = self.grid * self.grid
        cache = _transformers().DynamicCache(config=lm.config)
        embeds = net.get_input_embeddings()(ids)
        out = torch.empty(batch, steps, dtype=torch.long, device=self.device)
        for n in range(steps):
            hidden = lm(inputs_embeds=embeds, use_cache=True, **{self._cache_arg: cache}).last_hidden_state[:, -1]
            logits = net.model.generation_head(hidden).float()
            if guided:
                cond, uncond_logits = logits.chunk(2)
                logits = uncond_logits + settings.guidance * (cond - uncond_logits)
            x = pick_tokens(logits, streams, settings, step=n)
            out[:, n] = x[:, 0]
            embeds = net.prepare_embeddings_for_image_generation(torch.cat([x, x]) if guided else x)
            on_step(n + 1, steps)
        return out


class JanusBackend:
    """Janus-Pro snapshots in transformers' format: one directory, `cortex models add NAME PATH --backend janus`."""

    name = NAME

    def locate(self, path: Path | None, config: Path | None, ckpt: Path | None) -> ModelFiles:
        if config is not None or ckpt is not None:
            raise CortexError("the janus backend takes one snapshot directory PATH, not --config/--ckpt")
        if path is None:
            raise CortexError("a janus model needs PATH, a local snapshot directory of its weights (config.json, *.safetensors, tokenizer)")
        directory = Path(path).expanduser().resolve()
        if not directory.is_dir():
            raise CortexError(f"janus snapshot {str(directory)!r} is not a directory")
        if not (directory / "config.json").is_file():
            raise CortexError(f"{str(directory)!r} is not a transformers snapshot (no config.json)")
        return ModelFiles(directory, directory)

    def describe(self, files: ModelFiles) -> ModelShape:
        directory = Path(files.config)
        return _shape(directory, _read_config(directory))

    def load(self, files: ModelFiles, device: torch.device | str) -> JanusVQGM:
        """The snapshot's model with every weight present and used (else a CortexError naming the keys)."""
        tf = _transformers()
        directory, device = Path(files.ckpt), torch.device(device)
        shape = self.describe(files)
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32  # the weights ship in bf16
        try:
            with _quiet():
                net, info = tf.JanusForConditionalGeneration.from_pretrained(
                    str(directory), local_files_only=True, output_loading_info=True, dtype=dtype)
                processor = tf.JanusProcessor.from_pretrained(str(directory), local_files_only=True)
        except Exception as exc:
            raise CortexError(f"janus snapshot {str(directory)!r} does not load: {first_line(exc)}") from exc
        problems = [f"{kind.replace('_', ' ')}: {_describe(info.get(kind))}" for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")
                    if info.get(kind)]
        if problems:
            raise CortexError(f"janus snapshot {str(directory)!r} does not match its config.json; " + "; ".join(problems))
        net = net.to(device).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        return JanusVQGM(net, processor, shape, device)


def _describe(keys: Any, limit: int = 6) -> str:
    keys = sorted(str(k if isinstance(k, str) else k[0]) for k in keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


BACKEND = JanusBackend()
