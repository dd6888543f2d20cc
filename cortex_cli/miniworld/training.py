"""Train the bundled mini model from nothing: VQGAN, class-conditional GPT prior, two judges.

Every stage is seeded and writes its weights to a build directory, so an interrupted
`cortex train-mini` resumes at the first unfinished stage. Nothing is downloaded: the
VQGAN is trained with L1 + MSE + codebook losses (no LPIPS, no discriminator).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..backends.taming import build_net
from ..core.results import Result
from ..models.configs import net2net_config, write_config
from ..models.registry import BUNDLED_DIR, MINI_NAME
from ..core.progress import Progress, named, report
from ..core.seeding import set_all_random_seeds
from ..core.weights import load_weights, save_weights
from . import world
from .judge_training import build_judge, judge_input



@dataclass
class MiniRecipe:
    """Hyper-parameters of the bundled mini model (the defaults made the committed weights)."""

    seed: int = 0
    n_embed: int = 256  # K
    embed_dim: int = 32  # d
    vq_images_per_concept: int = 300
    vq_steps: int = 1000
    vq_batch: int = 16
    vq_lr: float = 2e-3
    vq_object_weight: float = 4.0  # extra reconstruction weight on (dilated) object pixels
    gpt_images_per_concept: int = 400
    gpt_steps: int = 1200
    gpt_batch: int = 32
    gpt_lr: float = 1e-3
    # a second cosine cycle on fresh images: the first alone left the prior's samples blobby
    # (judges recognised ~70% of them); the bar is 85%
    gpt_refine_images_per_concept: int = 600
    gpt_refine_steps: int = 1500
    gpt_refine_lr: float = 5e-4
    gpt_layers: int = 4
    gpt_heads: int = 4
    gpt_width: int = 128
    judge_images_per_concept: int = 300
    judge_epochs: int = 3
    judge_lr: float = 1e-3
    judge_blur_sigma: float = 1.2  # max Gaussian blur of the judges' augmentation (decoders blur; judges must not care)
    judge_noise: float = 0.05  # std of additive pixel noise (in [0, 1] units) of the augmentation
    sampler_top_k: int = 8  # default sampler of the mini prior (top-16 gave judges 85%/88% on samples, top-8 86%/92%)
    threads: int = 0  # torch threads (0: leave torch's default)

    def config(self) -> dict:
        cfg = net2net_config(
            n_classes=len(world.CONCEPTS), n_embed=self.n_embed, embed_dim=self.embed_dim,
            ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=32,
            n_layer=self.gpt_layers, n_head=self.gpt_heads, n_embd=self.gpt_width,
        )
        cfg["cortex"] = {"sampler": {"top_k": self.sampler_top_k, "top_p": 1.0, "temperature": 1.0}}
        return cfg


def _images_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def train_vqgan(net, recipe: MiniRecipe, progress: Progress | None = None) -> dict:
    """Train the first stage in place; returns metrics."""
    set_all_random_seeds(recipe.seed)
    vq = net.first_stage_model
    vq.train = torch.nn.Module.train.__get__(vq)  # taming disables train() on the first stage
    vq.train(True)
    images, _, masks, _ = world.batch(recipe.vq_images_per_concept, "train")
    data = _images_tensor(images)
    # objects cover ~15% of the pixels: weight them up, or the codebook spends itself on backgrounds
    near_object = F.max_pool2d(torch.from_numpy(masks).float()[:, None], 3, stride=1, padding=1)
    weights = 1.0 + recipe.vq_object_weight * near_object
    params = [p for n, p in vq.named_parameters() if not n.startswith("loss.")]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=recipe.vq_lr, betas=(0.5, 0.9))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe.vq_steps)
    gen = torch.Generator().manual_seed(recipe.seed)
    usage = torch.zeros(recipe.n_embed)
    for step in range(recipe.vq_steps):
        idx = torch.randint(len(data), (recipe.vq_batch,), generator=gen)
        x, w = data[idx], weights[idx]
        h = vq.quant_conv(vq.encoder(x))
        quant, qloss, info = vq.quantize(h)
        xrec = vq.decode(quant)
        err = xrec - x
        loss = ((err.abs() + err.pow(2)) * w).mean() / w.mean() + qloss.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        usage += torch.bincount(info[2].flatten(), minlength=recipe.n_embed).float()
        # restart dead codes on random encoder outputs: small codebooks collapse without it
        if step % 100 == 99 and step < 0.8 * recipe.vq_steps:
            dead = (usage == 0).nonzero().flatten()
            if len(dead):
                flat = h.detach().permute(0, 2, 3, 1).reshape(-1, h.shape[1])
                pick = torch.randint(len(flat), (len(dead),), generator=gen)
                with torch.no_grad():
                    vq.quantize.embedding.weight[dead] = flat[pick] + 0.01 * torch.randn(len(dead), flat.shape[1], generator=gen)
            usage.zero_()
        report(progress, step + 1, recipe.vq_steps, f"vqgan loss {loss.item():.4f}")
    vq.eval()
    for p in vq.parameters():
        p.requires_grad_(False)
    return {"vq_final_loss": float(loss.item())}


@torch.no_grad()
def encode_dataset(net, images: np.ndarray, batch: int = 128) -> torch.Tensor:
    vq = net.first_stage_model
    out = []
    for chunk in _images_tensor(images).split(batch):
        _, _, info = vq.encode(chunk)
        out.append(info[2].reshape(len(chunk), -1))
    return torch.cat(out)


def train_gpt(net, recipe: MiniRecipe, progress: Progress | None = None, phase: int = 1) -> dict:
    """Train the class-conditional GPT prior on the VQGAN's tokens of mini-world images.

    Phase 1 trains from scratch; phase 2 continues with a second cosine cycle on other images.
    """
    set_all_random_seeds(recipe.seed + 10 * phase + 1)
    per_concept, steps, lr = (
        (recipe.gpt_images_per_concept, recipe.gpt_steps, recipe.gpt_lr) if phase == 1
        else (recipe.gpt_refine_images_per_concept, recipe.gpt_refine_steps, recipe.gpt_refine_lr)
    )
    images, labels, _, _ = world.batch(per_concept, "prior" if phase == 1 else "prior-refine")
    tokens = encode_dataset(net, images)
    labels_t = torch.from_numpy(labels)
    gpt = net.transformer
    gpt.train()
    for p in gpt.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(gpt.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    warm = 100
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + np.cos(np.pi * min(s, steps) / steps))
    )
    gen = torch.Generator().manual_seed(recipe.seed + 10 * phase + 1)
    for step in range(steps):
        idx = torch.randint(len(tokens), (recipe.gpt_batch,), generator=gen)
        z, c = tokens[idx], labels_t[idx][:, None]
        cz = torch.cat([c, z], dim=1)
        logits, _ = gpt(cz[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), z.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(gpt.parameters(), 1.0)
        opt.step()
        sched.step()
        report(progress, step + 1, steps, f"gpt loss {loss.item():.3f}")
    gpt.eval()
    for p in gpt.parameters():
        p.requires_grad_(False)
    return {f"gpt_phase{phase}_final_loss": float(loss.item())}


def _augment(x: torch.Tensor, recipe: MiniRecipe, gen: torch.Generator) -> torch.Tensor:
    """Blur half of a batch (one random sigma) and add pixel noise: robustness, not new content."""
    sigma = float(torch.empty(1).uniform_(0.3, recipe.judge_blur_sigma, generator=gen)) if recipe.judge_blur_sigma else 0.0
    if sigma:
        pick = torch.rand(len(x), generator=gen) < 0.5
        # deliberate lazy import: torchvision pulls in torch._dynamo, ~2 s on every cortex start (train-mini's module is imported by the CLI)
        from torchvision.transforms.functional import gaussian_blur

        x = torch.where(pick[:, None, None, None], gaussian_blur(x, kernel_size=5, sigma=sigma), x)
    if recipe.judge_noise:
        x = x + torch.randn(x.shape, generator=gen) * (recipe.judge_noise / 0.25)  # judge inputs are scaled by 1/0.25
    return x


def train_judge(kind: str, recipe: MiniRecipe, progress: Progress | None = None) -> tuple[torch.nn.Module, dict]:
    """Train one pixel classifier (`resnet` or `vit`) on mini-world images."""
    set_all_random_seeds(recipe.seed + (2 if kind == "resnet" else 3))
    model = build_judge(kind, len(world.CONCEPTS))
    images, labels, _, _ = world.batch(recipe.judge_images_per_concept, f"judge-{kind}")
    x, y = judge_input(torch.from_numpy(images)), torch.from_numpy(labels)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.judge_lr, weight_decay=0.05)
    batch = 64
    steps = recipe.judge_epochs * (len(x) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.judge_lr, total_steps=steps)
    gen = torch.Generator().manual_seed(recipe.seed + 7)
    model.train()
    step = 0
    for _ in range(recipe.judge_epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(len(x) // batch):
            idx = perm[i * batch : (i + 1) * batch]
            loss = F.cross_entropy(model(_augment(x[idx], recipe, gen)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            report(progress, step, steps, f"{kind} loss {loss.item():.3f}")
    model.eval()
    return model, {f"judge_{kind}_final_loss": float(loss.item())}


INT8_JUDGES = ("resnet",)  # the one bundled file over 8 MB in fp16 (4.9M parameters) ships as int8


def _save_half(state: dict[str, torch.Tensor], path: Path, int8: bool = False) -> None:
    save_weights(state, path, int8=int8)


def _load_into(module: torch.nn.Module, path: Path) -> None:
    state = load_weights(path)
    ref = module.state_dict()
    module.load_state_dict({k: v.to(ref[k].dtype) for k, v in state.items()}, strict=True)


@dataclass(frozen=True)
class BuildReport(Result):
    out_dir: Path
    seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def _stage(module: torch.nn.Module, path: Path, report: BuildReport, train: Callable[[], dict[str, float]]) -> None:
    """A stage of the build: its weights from `path` if an earlier build finished it, else trained (its metrics into
    `report`), saved in fp16 and loaded back, so later stages continue from the fp16-rounded weights that ship."""
    if path.is_file():
        _load_into(module, path)
        return
    report.metrics.update(train())
    _save_half(module.state_dict(), path)
    _load_into(module, path)


def build_mini(out_dir: Path, recipe: MiniRecipe = MiniRecipe(), work_dir: Path | None = None,
               progress: Callable[[str], Progress | None] | None = None) -> BuildReport:
    """Train every part of the mini model and write config.yaml, model.safetensors, judges and a recipe.

    Stages already finished in `work_dir` (default: out_dir/.work) are loaded, not retrained.
    `progress(stage name)` gives each stage's progress callback ('vqgan', 'prior', 'judge resnet', ...).
    """
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    work = work_dir or out_dir / ".work"
    work.mkdir(parents=True, exist_ok=True)
    report = BuildReport(out_dir)
    stage_progress = progress or (lambda name: None)
    cfg = recipe.config()
    net = build_net(cfg)  # a taming Net2NetTransformer, built by the taming backend
    vq_path, gpt_path = work / "vqgan.safetensors", work / "gpt.safetensors"
    t0 = time.time()
    _stage(net.first_stage_model, vq_path, report, lambda: train_vqgan(net, recipe, stage_progress("vqgan")))
    report.seconds["vqgan"] = time.time() - t0
    t0 = time.time()
    _stage(net.transformer, gpt_path, report, lambda: train_gpt(net, recipe, stage_progress("prior")))
    refined_path = work / "gpt_refined.safetensors"
    if recipe.gpt_refine_steps:
        _stage(net.transformer, refined_path, report, lambda: train_gpt(net, recipe, stage_progress("prior refine"), phase=2))
    report.seconds["prior"] = time.time() - t0
    for kind in ("resnet", "vit"):
        t0 = time.time()
        path = work / f"judge_{kind}.safetensors"
        if not path.is_file():
            model, metrics = train_judge(kind, recipe, stage_progress(f"judge {kind}"))
            report.metrics.update(metrics)
            _save_half(model.state_dict(), path, int8=kind in INT8_JUDGES)
        report.seconds[f"judge_{kind}"] = time.time() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    write_config(cfg, out_dir / "config.yaml")
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("first_stage_model.loss.")}
    _save_half(state, out_dir / "model.safetensors")
    for kind in ("resnet", "vit"):
        (out_dir / f"judge_{kind}.safetensors").write_bytes((work / f"judge_{kind}.safetensors").read_bytes())
    record = {
        "command": "cortex train-mini",
        "recipe": asdict(recipe),
        "seconds": report.seconds,
        "metrics": report.metrics,
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
    }
    (out_dir / "recipe.json").write_text(json.dumps(record, indent=2))
    return report


def train_mini(out_dir: Path | None = None, *, work_dir: Path | None = None, seed: int = 0, vq_steps: int | None = None,
               gpt_steps: int | None = None, progress: Progress | None = None) -> BuildReport:
    """`build_mini` as `cortex train-mini` asks for it: `MiniRecipe(seed)` with the step counts given (None or 0: the recipe's),
    written to the package's bundled mini directory unless `out_dir`; one `progress` for every stage, its note led by the
    stage's name."""
    recipe = MiniRecipe(seed=seed)
    if vq_steps:
        recipe.vq_steps = vq_steps
    if gpt_steps:
        recipe.gpt_steps = gpt_steps
    out = out_dir if out_dir is not None else BUNDLED_DIR / MINI_NAME
    return build_mini(out, recipe, work_dir=work_dir, progress=(lambda stage: named(progress, stage)) if progress is not None else None)
