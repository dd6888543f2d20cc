"""Quality figures of the bundled mini model (the bars of the mini-world issue)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from ..backends.base import SamplerSettings, VQGM, image_generators, image_streams
from ..core.results import Result
from ..models.classnames import ClassName
from ..images.generation import default_sampler
from ..judges.pixel_judges import Judge, mini_judges
from ..models import registry as model_registry
from ..store.database import Store
from ..core.progress import Progress, report
from . import world
from .judge_training import judge_input


@dataclass(frozen=True)
class MiniReport(Result):
    """Reconstruction, codebook use and judge accuracies of the mini model."""

    psnr_db: float  # VQGAN reconstruction PSNR on held-out mini-world images
    codebook_used: int  # codes used on held-out images
    codebook_size: int
    perplexity: float  # exp(entropy) of held-out code usage
    judge_heldout_accuracy: dict[str, float]  # judge -> accuracy on held-out mini-world images
    judge_generated_accuracy: dict[str, dict[str, float]]  # judge -> concept -> accuracy on prior samples
    judge_generated_mean: dict[str, float]  # judge -> mean over concepts
    heldout_images: int
    generated_per_concept: int
    sampler: str
    seconds: float = 0.0
    bars: dict[str, bool] = field(default_factory=dict)


@torch.no_grad()
def mini_report(
    vqgm: VQGM,
    judges: list[Judge],
    *,
    heldout_per_concept: int = 40,
    generated_per_concept: int = 16,
    sampler: SamplerSettings,
    seed: int = 0,
    progress: Progress | None = None,
) -> MiniReport:
    """Measure the mini model on held-out mini-world images and on its own samples."""
    start = time.time()
    images, labels, _, _ = world.batch(heldout_per_concept, "heldout")
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    mse_sum, counts = 0.0, torch.zeros(vqgm.n_embed)
    for chunk in x.split(64):
        tokens = vqgm.encode_images(chunk)
        rec = vqgm.decode_tokens(tokens).cpu()
        mse_sum += ((rec - chunk) / 2).pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-10).log10().mul(-10).sum().item()
        counts += torch.bincount(tokens.flatten().cpu(), minlength=vqgm.n_embed).float()
    psnr = mse_sum / len(x)
    p = counts / counts.sum()
    perplexity = math.exp(-(p[p > 0] * p[p > 0].log()).sum().item())
    heldout = {}
    for j in judges:
        chunks = [images[i : i + 64] for i in range(0, len(images), 64)]
        pred = torch.cat([j.model(judge_input(torch.from_numpy(c)).to(vqgm.device)).argmax(-1).cpu() for c in chunks])
        heldout[j.name] = (pred == torch.from_numpy(labels)).float().mean().item()
    n_concepts = len(world.CONCEPTS)
    generated: dict[str, dict[str, float]] = {j.name: {} for j in judges}
    for c in range(n_concepts):
        classes = [ClassName(c, world.CONCEPTS[c].name)] * generated_per_concept
        seeds = [seed + i for i in range(generated_per_concept)]
        if sampler.noise == "host":  # the older report's streams: (seed, class id), no split
            streams = image_generators(classes, seeds)
        else:
            streams = image_streams(sampler, "mini-report", classes, ["report"] * len(seeds), seeds)
        tokens = vqgm.sample(classes, streams, sampler)
        imgs = vqgm.decode_tokens(tokens)
        for j in judges:
            generated[j.name][world.CONCEPTS[c].name] = (j.probabilities(imgs).argmax(-1).cpu() == c).float().mean().item()
        report(progress, c + 1, n_concepts, world.CONCEPTS[c].name)
    means = {name: sum(v.values()) / len(v) for name, v in generated.items()}
    result = MiniReport(
        psnr_db=psnr, codebook_used=int((counts > 0).sum()), codebook_size=vqgm.n_embed, perplexity=perplexity,
        judge_heldout_accuracy=heldout, judge_generated_accuracy=generated, judge_generated_mean=means,
        heldout_images=len(x), generated_per_concept=generated_per_concept, sampler=sampler.label(),
        seconds=time.time() - start,
        bars={
            **{f"judge {k} held-out >= 0.95": v >= 0.95 for k, v in heldout.items()},
            **{f"judge {k} generated mean >= 0.85": v >= 0.85 for k, v in means.items()},
        },
    )
    return result


def report_mini(store: Store, device: torch.device | str = "cpu", *, heldout_per_concept: int = 40, generated_per_concept: int = 16,
                seed: int = 0, progress: Progress | None = None) -> MiniReport:
    """`mini_report` of the registered mini model on `device`, with its bundled judges and its default sampler."""
    vqgm = model_registry.load_model(model_registry.get_model(store, model_registry.MINI_NAME), device)
    return mini_report(vqgm, mini_judges(device), heldout_per_concept=heldout_per_concept, generated_per_concept=generated_per_concept,
                       sampler=default_sampler(vqgm), seed=seed, progress=progress)
