"""Make the llamagen backend's golden reference with the OFFICIAL LlamaGen code (not run by the tests).

The tests check `cortex_cli/backends/llamagen.py` against what FoundationVision/LlamaGen's own modules compute
on a tiny configuration with seeded random weights. This script builds that configuration with the official
classes, perturbs every parameter (so no zero-init leaves a path untested), saves both checkpoints in the
official layout (`{"model": state_dict}`) and records the official outputs:

    config.json         the tiny configuration and the official commit
    gpt.pt, vq.pt       the checkpoints (weights stored in fp16 to keep the folder small; the goldens are computed
                        in fp32 from exactly those values)
    reference.pt        greedy grids (top-k 1) with and without classifier-free guidance, teacher-forced logits
                        and per-grid cross-entropy, the decoder's pixels of two grids and the encoder's codes of those pixels
    gpt_b_shapes.json   parameter names and shapes of the official GPT-B (ImageNet: 16384 codes, 1000 classes, 16x16)
    vq_16_shapes.json   parameter and buffer names and shapes of the official VQ-16

Usage (the official sources are plain PyTorch; only these files are imported):

    git --git-dir=PATH/TO/LlamaGen/.git archive HEAD autoregressive/models tokenizer/tokenizer_image/vq_model.py \\
        utils/drop_path.py | tar x -C /tmp/llamagen-official
    python tests/data/llamagen/make_reference.py /tmp/llamagen-official --commit SHA
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
SEED = 20240611
# the tiny GPT: 2 layers of width 32 (2 heads of 16), 64 codes, 10 classes (+ the null row), a 6 x 6 grid
GPT = {"dim": 32, "n_layer": 2, "n_head": 2, "multiple_of": 32, "vocab_size": 64, "num_classes": 10, "grid": 6}
# the tiny VQ: 64 codes of width 8, 32 channels (GroupNorm's 32 groups need at least 32), 4 levels = 8x downsampling
VQ = {"codebook_size": 64, "codebook_embed_dim": 8, "ch": 32, "ch_mult": [1, 1, 1, 1], "num_res_blocks": 0, "z_channels": 32}
CFG_SCALE = 4.0
CLASSES = [0, 3, 7, 9]
TEACHER_CLASSES = [2, 5, 9]
DECODED = 2  # the first greedy grids with guidance whose pixels are kept


def official_modules(source: Path):
    sys.path.insert(0, str(source))
    from autoregressive.models import gpt as gpt_module
    from autoregressive.models import generate as generate_module
    from tokenizer.tokenizer_image import vq_model as vq_module
    return gpt_module, generate_module, vq_module


def build_gpt(gpt_module):
    args = gpt_module.ModelArgs(
        dim=GPT["dim"], n_layer=GPT["n_layer"], n_head=GPT["n_head"], multiple_of=GPT["multiple_of"],
        vocab_size=GPT["vocab_size"], num_classes=GPT["num_classes"], block_size=GPT["grid"] ** 2, cls_token_num=1,
        model_type="c2i", token_dropout_p=0.0, resid_dropout_p=0.0, ffn_dropout_p=0.0)  # class dropout 0.1: the null row
    return gpt_module.Transformer(args).eval()


def build_vq(vq_module):
    args = vq_module.ModelArgs(codebook_size=VQ["codebook_size"], codebook_embed_dim=VQ["codebook_embed_dim"],
                               encoder_ch_mult=VQ["ch_mult"], decoder_ch_mult=VQ["ch_mult"], z_channels=VQ["z_channels"],
                               codebook_show_usage=False)
    model = vq_module.VQModel(args)
    # VQModel fixes 128 channels and 2 residual blocks; the official Encoder/Decoder take smaller ones
    sizes = {"ch": VQ["ch"], "ch_mult": VQ["ch_mult"], "num_res_blocks": VQ["num_res_blocks"], "z_channels": VQ["z_channels"]}
    model.encoder = vq_module.Encoder(**sizes)
    model.decoder = vq_module.Decoder(**sizes)
    return model.eval()


@torch.no_grad()
def perturb(model: torch.nn.Module, generator: torch.Generator, logit_gain: float = 1.0) -> None:
    """Every parameter random: norms near 1, biases small, weights ~ 1/sqrt(fan-in), embeddings ~ N(0, 1)."""
    for name, p in sorted(model.named_parameters()):
        noise = torch.randn(p.shape, generator=generator)
        if "norm" in name and name.endswith("weight"):
            p.copy_(1 + 0.25 * noise)
        elif name.endswith("bias"):
            p.copy_(0.1 * noise)
        elif "embedding" in name:
            p.copy_(noise)
        else:
            gain = logit_gain if name == "output.weight" else 1.0
            p.copy_(gain * noise / math.sqrt(p[0].numel()))


def greedy(generate_module, gpt, classes: list[int], cfg_scale: float) -> torch.Tensor:
    cond = torch.tensor(classes)
    return generate_module.generate(gpt, cond, GPT["grid"] ** 2, cfg_scale=cfg_scale, cfg_interval=-1,
                                    temperature=1.0, top_k=1, top_p=1.0, sample_logits=True).long()


@torch.no_grad()
def teacher_forced(gpt, tokens: torch.Tensor, classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The official forward over (class, tokens[:-1]) in eval mode: logits (B x L x V) and each grid's cross-entropy."""
    for layer in gpt.layers:  # no KV cache: the plain causal forward
        layer.attention.kv_cache = None
    cond = torch.tensor(classes)
    positions = torch.arange(tokens.shape[1])
    logits, _ = gpt(tokens[:, :-1], cond, input_pos=positions)
    losses = [gpt(tokens[i:i + 1, :-1], cond[i:i + 1], input_pos=positions, targets=tokens[i:i + 1])[1] for i in range(len(classes))]
    return logits, torch.stack(losses)


def greedy_margin(gpt, grids: torch.Tensor, classes: list[int], cfg_scale: float) -> float:
    """The smallest gap between the best and second-best (guided) logit along the greedy grids: ties would make them fragile."""
    logits, _ = teacher_forced(gpt, grids, classes)
    if cfg_scale > 1.0:
        null, _ = teacher_forced(gpt, grids, [GPT["num_classes"]] * len(classes))
        logits = null + (logits - null) * cfg_scale
    top2 = logits.topk(2, dim=-1).values
    return float((top2[..., 0] - top2[..., 1]).min())


def shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a checkout (or `git archive`) of FoundationVision/LlamaGen")
    parser.add_argument("--commit", default="unknown", help="the official commit the sources are from")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    torch.manual_seed(0)
    gpt_module, generate_module, vq_module = official_modules(args.source)
    generator = torch.Generator().manual_seed(SEED)

    gpt = build_gpt(gpt_module)
    perturb(gpt, generator, logit_gain=3.0)
    vq = build_vq(vq_module)
    perturb(vq, generator)
    gpt_state = {k: v.half() for k, v in gpt.state_dict().items()}
    vq_state = {k: v.half() for k, v in vq.state_dict().items()}
    gpt.load_state_dict(gpt_state)  # the goldens come from exactly the stored (fp16) values, in fp32
    vq.load_state_dict(vq_state)
    torch.save({"model": gpt_state}, args.out / "gpt.pt")
    torch.save({"model": vq_state}, args.out / "vq.pt")

    tokens = torch.randint(0, GPT["vocab_size"], (len(TEACHER_CLASSES), GPT["grid"] ** 2), generator=generator)
    logits, nll = teacher_forced(gpt, tokens, TEACHER_CLASSES)
    grids_cfg = greedy(generate_module, gpt, CLASSES, CFG_SCALE)
    grids_plain = greedy(generate_module, gpt, CLASSES, 1.0)
    margins = (greedy_margin(gpt, grids_cfg, CLASSES, CFG_SCALE), greedy_margin(gpt, grids_plain, CLASSES, 1.0))
    assert min(margins) > 1e-3, f"a near-tie along a greedy grid ({margins}); pick another SEED"
    m, d = GPT["grid"], VQ["codebook_embed_dim"]
    decoded = grids_cfg[:DECODED]
    with torch.no_grad():
        pixels = vq.decode_code(decoded, (DECODED, d, m, m))
        _, _, (_, _, codes) = vq.encode(pixels.clamp(-1, 1))
    reference = {
        "classes": torch.tensor(CLASSES), "cfg_scale": torch.tensor(CFG_SCALE),
        "greedy_cfg": grids_cfg, "greedy_plain": grids_plain,
        "teacher_classes": torch.tensor(TEACHER_CLASSES), "teacher_tokens": tokens, "teacher_logits": logits, "teacher_nll": nll,
        "pixels_cfg": pixels, "codes_of_pixels": codes.reshape(DECODED, m * m),
    }
    torch.save(reference, args.out / "reference.pt")
    config = {"official_repo": "FoundationVision/LlamaGen", "official_commit": args.commit, "seed": SEED,
              "gpt": GPT, "vq": VQ, "image_size": m * 2 ** (len(VQ["ch_mult"]) - 1), "cfg_scale": CFG_SCALE,
              "greedy_margins": margins}
    (args.out / "config.json").write_text(json.dumps(config, indent=1) + "\n")

    with torch.device("cpu"):  # the official constructors call .item(), which the meta device refuses
        gpt_b = gpt_module.GPT_models["GPT-B"](vocab_size=16384, block_size=256, num_classes=1000)
        vq_16 = vq_module.VQ_models["VQ-16"]()
    (args.out / "gpt_b_shapes.json").write_text(json.dumps({"official_commit": args.commit, "shapes": shapes(gpt_b)}) + "\n")
    (args.out / "vq_16_shapes.json").write_text(json.dumps({"official_commit": args.commit, "shapes": shapes(vq_16)}) + "\n")
    print(f"margins {margins}; greedy with CFG {grids_cfg[:, :8].tolist()}; pixels in [{float(pixels.min()):.2f}, {float(pixels.max()):.2f}]")


if __name__ == "__main__":
    main()
