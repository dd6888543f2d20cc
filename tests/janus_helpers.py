"""A tiny random-weight Janus snapshot, built offline by transformers itself (no download).

It has the layout of a real snapshot (`config.json`, `model.safetensors`, `generation_config.json`,
tokenizer, processor and chat template), so cortex loads it exactly as it loads `Janus-Pro-1B`:
16 px images, a 4x4 token grid (VQ: 3 levels, 4x down), K=64 codes of width 8 (Janus's width),
a 1-layer 32-wide Llama, a byte-level tokenizer with Janus's special tokens.
"""

from __future__ import annotations

from pathlib import Path

import torch

SPECIALS = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "<image_placeholder>", "<begin_of_image>", "<end_of_image>")
BOS, EOS, PAD, IMAGE, BOI, EOI = range(len(SPECIALS))
# Janus's sft format ("<|User|>: ...\n\n<|Assistant|>:"), as a chat template
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}<|User|>: {% else %}<|Assistant|>: {% endif %}"
    "{% for content in message['content'] %}{% if content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}"
    "{{ '\\n\\n' }}{% endfor %}{% if add_generation_prompt %}<|Assistant|>:{% endif %}"
)
TINY_JANUS_LABELS = "0\tgoldfinch\n1\twater ouzel\n2\tblack grouse\n3\tanalog clock\n"


def tiny_tokenizer():
    """A byte-level tokenizer (256 bytes + Janus's special tokens) that prepends BOS, like Janus's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for byte in pre_tokenizers.ByteLevel.alphabet():
        vocab[byte] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIALS))
    tok.post_processor = processors.TemplateProcessing(single=f"{SPECIALS[BOS]} $A", special_tokens=[(SPECIALS[BOS], BOS)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=SPECIALS[BOS], eos_token=SPECIALS[EOS], pad_token=SPECIALS[PAD],
        extra_special_tokens={"image_token": SPECIALS[IMAGE], "boi_token": SPECIALS[BOI], "eoi_token": SPECIALS[EOI]},
    )


def build_tiny_janus(directory: Path, seed: int = 0, codebook_scale: float = 1.0) -> Path:
    """Save a random-weight `JanusForConditionalGeneration` snapshot into `directory`; returns it.

    `codebook_scale` multiplies the VQ codebook (the decoder reads it l2-normalised, so only the
    generation embeddings' inputs and nothing a test compares change with it).
    """
    from transformers import GenerationConfig, JanusConfig, JanusForConditionalGeneration, JanusImageProcessor, JanusProcessor

    tokenizer = tiny_tokenizer()
    config = JanusConfig(
        text_config=dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256),
        vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=16, patch_size=4,
                           projection_dim=32, num_image_tokens=16, mlp_ratio=2.0),
        vq_config=dict(embed_dim=8, num_embeddings=64, latent_channels=32, base_channels=32, channel_multiplier=[1, 1, 2],
                       num_res_blocks=1, projection_dim=32, image_token_embed_dim=32, num_hidden_layers=1),
        image_token_id=IMAGE,
    )
    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(config).eval()
    if codebook_scale != 1.0:
        with torch.no_grad():
            model.model.vqmodel.quantize.embedding.weight.mul_(codebook_scale)
    model.generation_config = GenerationConfig(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
                                               generation_kwargs={"boi_token_id": BOI})
    processor = JanusProcessor(image_processor=JanusImageProcessor(size={"height": 16, "width": 16}), tokenizer=tokenizer,
                               chat_template=CHAT_TEMPLATE, num_image_tokens=16)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
