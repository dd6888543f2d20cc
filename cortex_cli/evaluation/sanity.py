"""Sanity checks of the saliency maps (Adebayo et al. 2018): do they depend on what the extractor learned?

Gradient explanations can look right and mean nothing: a map that barely changes when the extractor's
weights are randomised, or when it was trained on permuted labels, explains the input's structure, not
the extractor. On the mini world's 'loc' images (as `cortex eval localization`: encoded by the VQGAN,
object masks known), target the true class, with the same noise keys for every variant:

- cascading model-parameter randomisation: the extractor's layers, output -> input, are re-initialised one
  more at a time (step i: the i+1 layers nearest the output); a *layer* is a weighted module (Conv2d,
  Linear) together with the batch norm that directly follows it, and is re-initialised by its modules'
  own `reset_parameters()` under a seed keyed by (layer name, --seed), on a deep copy (the stored weights
  are never touched);
- independent randomisation: each layer alone;
- data randomisation: an extractor of the same architecture trained with the same recipe (Adam, weight
  decay, StepLR, batch size, epochs) on labels permuted over the training images by a seeded permutation.
  To keep the command within minutes on a CPU its data are smaller (`permuted_per_class`, 20 images per
  class instead of the mini recipe's 300) and by default they are the mini world's 'train' images encoded
  by the VQGAN (`permuted_source='world'`) rather than images sampled from the prior ('generated', the
  recipe's own source: sampling is what costs minutes on a CPU); the last epoch is kept (validation
  accuracy on permuted labels is chance by design). It is cached under `$CORTEX_HOME/extractors/<model>/<name>-permuted-<seed>/`
  (not registered, so no 'all extractors' command sees it) and reused when its recipe is unchanged.

Per variant: the mean over images of the Spearman rank correlation of its TSV map with the trained
extractor's (over the m^2 positions, ties at their average rank), the top-20 overlap |top20(a) ∩ top20(b)| / 20,
and localisation precision@5 (share of the top 5 on the object). The floor: two unrelated seeded random
rankings (expected top-20 overlap 20/m^2) and random positions' precision@5 (the object's share of positions).
The check of the issue: after the full cascade and for the label-permuted extractor, top-20 overlap <= floor
+ 0.1 and precision@5 <= 1.5 x random; `checks` says which held (a failure is a finding, reported as such).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from ..models import registry as model_registry
from ..core.environment import artifacts_dir
from ..core.errors import CortexError
from ..extractors.architectures import build_extractor
from ..extractors.accuracy import embed_batch, load_split
from ..extractors.registry import ExtractorInfo, load_extractor, read_state_dict
from ..extractors.subsets import ClassSpace
from ..extractors.training import TrainConfig
from ..attribution import SaliencySettings
from ..miniworld import world
from ..models.registry import ModelInfo
from ..core.seeding import derive_seed, generator_for
from ..store.database import Store
from . import common, plots
from .common import EvaluationResult
from .localization import EncodedWorld, encoded_world, require_mini
from .metrics import mean, precision_at_n, random_floor, ranked_positions, top_n_overlap
from .tables import TableSpec, num

KIND = "sanity"
TITLE = "Sanity checks (Adebayo et al. 2018): maps under weight randomisation and label permutation"
USES_JUDGES = False

TOP_N = 20  # the top-n of the overlap (the top-20)
PRECISION_N = 5  # localisation precision@5
OVERLAP_MARGIN = 0.1  # the check: overlap <= random floor + 0.1
PRECISION_FACTOR = 1.5  # the check: precision@5 <= 1.5 x random
PERMUTED_SOURCES = ("world", "generated")
PERMUTED_VERSION = 1  # bump when the permuted-label training changes, so stale caches are retrained

_NORMS = (nn.modules.batchnorm._BatchNorm,)
_WEIGHTED = (nn.Conv2d, nn.Linear)


@dataclass
class SanitySettings:
    """What `cortex eval sanity` measures."""

    images_per_class: int = 2  # mini-world 'loc' images per class: seeds first_seed .. +N-1
    first_seed: int = 0
    seed: int = 0  # saliency noise, re-initialisation, the label permutation and its training, the random floor
    samples: int = 10  # SmoothGrad samples N
    independent: bool = True  # also randomise each layer alone
    random_draws: int = 10  # pairs of random rankings of each image (the overlap floor)
    permuted_per_class: int = 20  # training images per class of the label-permuted extractor (the recipe's: 300 on mini)
    permuted_epochs: int = 30  # its epochs (the mini recipe's 30); StepLR's step scaled when fewer
    permuted_source: str = "world"  # its images: 'world' (mini-world 'train' images, encoded) or 'generated' (sampled)
    classes: tuple[str, ...] = ()
    batch_size: int = 16


SETTINGS = SanitySettings


def presets(quick: bool) -> dict[str, SanitySettings]:
    """The run of `cortex eval all`: the defaults, or its quick test's tiny settings."""
    if not quick:
        return {KIND: SanitySettings()}
    return {KIND: SanitySettings(images_per_class=1, samples=2, random_draws=2, permuted_per_class=3, permuted_epochs=2,
                                 independent=False, classes=common.QUICK_CLASSES)}


@dataclass(frozen=True)
class SanityStep:
    """One variant's maps against the trained extractor's, over every image."""

    layers: list[str]  # the modules re-initialised (label-permuted: every layer)
    spearman: float  # mean Spearman rank correlation with the trained maps
    top20_overlap: float  # mean |top-20 ∩ trained top-20| / 20
    precision_at_5: float  # mean share of the top 5 on the object


@dataclass(frozen=True)
class ExtractorSanity:
    """Every variant of one extractor."""

    layers: list[list[str]]  # the layers, output -> input (each: a weighted module and its batch norm)
    trained_precision_at_5: float
    cascade: list[SanityStep]
    independent: list[SanityStep]
    label_permuted: SanityStep
    permuted_training: dict  # its recipe and fit: epochs, images, accuracy on the permuted and on the true labels
    checks: dict[str, bool]  # the four conditions
    passed: bool


@dataclass(frozen=True)
class SanityResult(EvaluationResult):
    """The first extractor's variants against its trained maps (the others in `others`), the random floor and the check."""

    KIND: ClassVar[str] = KIND
    model: str
    extractor: str  # the extractor whose variants the top-level keys describe
    n_images: int
    cascade: list[SanityStep]
    independent: list[SanityStep]
    label_permuted: SanityStep
    random_floor: dict  # top20_overlap (seeded random pairs), its expectation 20/m^2, spearman, precision_at_5
    trained_precision_at_5: float
    layers: list[list[str]]
    permuted_training: dict
    checks: dict[str, bool]
    passed: bool
    seconds: float
    others: dict[str, ExtractorSanity] = field(default_factory=dict)  # further extractors (`--extractor ce,re`)
    settings: dict = field(default_factory=dict)
    json_path: str = ""
    plot_path: str = ""
    evaluation_id: int = 0


# -- metrics ------------------------------------------------------------------------------------------------------

def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n of a flat tensor, ties at their average rank (float64)."""
    v = values.reshape(-1).double().cpu().numpy()
    order = np.argsort(v, kind="stable")
    sorted_v = v[order]
    ranks = np.empty(len(v))
    start = 0
    while start < len(v):
        end = start
        while end + 1 < len(v) and sorted_v[end + 1] == sorted_v[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return torch.from_numpy(ranks)


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two maps of the same positions (nan when either is constant)."""
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denom if denom > 0 else float("nan")


def compare(maps: torch.Tensor, reference: torch.Tensor, insides: Sequence[torch.Tensor], layers: Sequence[str]) -> SanityStep:
    """A variant's (B, m, m) maps against the trained ones: mean Spearman, top-20 overlap, precision@5."""
    return SanityStep(
        list(layers),
        mean([spearman(a, b) for a, b in zip(maps, reference)]),
        mean([top_n_overlap(a, b, TOP_N) for a, b in zip(maps, reference)]),
        mean([precision_at_n(ranked_positions(a), inside, PRECISION_N) for a, inside in zip(maps, insides)]),
    )


def random_pairs(keys: Sequence[int], positions: int, seed: int, draws: int) -> tuple[float, float]:
    """(mean top-20 overlap, mean Spearman) of `draws` pairs of independent seeded random rankings per image."""
    overlaps, rhos = [], []
    for key in keys:
        for d in range(draws):
            a = torch.rand(positions, generator=generator_for("sanity-random", seed, key, d, "a"))
            b = torch.rand(positions, generator=generator_for("sanity-random", seed, key, d, "b"))
            overlaps.append(top_n_overlap(a, b, TOP_N))
            rhos.append(spearman(a, b))
    return mean(overlaps), mean(rhos)


# -- layers and their randomisation -------------------------------------------------------------------------------

def _own_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def layers_of(net: nn.Module) -> list[list[str]]:
    """The parametrised layers of a network, output -> input: a Conv2d/Linear with the batch norm directly after it.

    Registration order is the forward order in the extractors (`extractors/architectures.py`); a batch norm that
    follows another parametrised module than a Conv2d/Linear, or stands first, is a layer of its own.
    """
    groups: list[list[str]] = []
    previous: nn.Module | None = None
    for name, module in net.named_modules():
        if not _own_parameters(module):
            continue
        if isinstance(module, _NORMS) and isinstance(previous, _WEIGHTED) and groups:
            groups[-1].append(name)
        else:
            groups.append([name])
        previous = module
    if not groups:
        raise CortexError("the extractor has no parametrised layers to randomise")
    return groups[::-1]


def reinitialise(module: nn.Module, name: str, seed: int) -> None:
    """`module.reset_parameters()` in place, drawn on the CPU from a stream keyed by (layer name, seed)."""
    if not hasattr(module, "reset_parameters"):
        raise CortexError(f"layer {name!r} ({type(module).__name__}) has no reset_parameters(); it cannot be re-initialised")
    fresh = copy.deepcopy(module).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed("sanity-reinit", name, seed))
        fresh.reset_parameters()
    with torch.no_grad():
        for key, value in fresh.state_dict().items():
            module.state_dict()[key].copy_(value)


def randomised(net: nn.Module, layers: Sequence[Sequence[str]], seed: int) -> nn.Module:
    """A deep copy of `net` with the modules of `layers` re-initialised (`reinitialise`); `net` is untouched."""
    out = copy.deepcopy(net)
    modules = dict(out.named_modules())
    for layer in layers:
        for name in layer:
            if name not in modules:
                raise CortexError(f"the extractor has no layer {name!r}")
            reinitialise(modules[name], name, seed)
    return out.eval()


# -- the label-permuted extractor ---------------------------------------------------------------------------------

def permuted_recipe(info: ExtractorInfo, settings: SanitySettings) -> TrainConfig:
    """The trained extractor's recipe (its stored hyper-parameters) with the smaller data and schedule of `settings`."""
    stored = {f.name: info.hparams[f.name] for f in fields(TrainConfig) if f.name in info.hparams}
    base = TrainConfig.mini(**stored) if not stored else TrainConfig(**stored)
    step = max(1, round(base.step_size * settings.permuted_epochs / base.epochs))
    return replace(base, epochs=settings.permuted_epochs, train_per_class=settings.permuted_per_class, step_size=step,
                   seed=settings.seed).validate()


def permuted_name(info: ExtractorInfo, seed: int) -> str:
    """The cache directory's name of `info`'s label-permuted twin."""
    return f"{info.name}-permuted-{seed}"


def train_permuted(store: Store, model: ModelInfo, info: ExtractorInfo, settings: SanitySettings, vqgm, *,
                   device: torch.device | str = "cpu", progress: common.Progress | None = None) -> tuple[nn.Module, dict]:
    """(network in eval mode, training record) of `info`'s architecture trained on permuted labels; cached.

    The training images are the recipe's (split 'train', seeds data_seed..), in class then seed order; their labels
    are shuffled by a permutation keyed by (--seed, model), so every image keeps a label drawn from the same
    class frequencies but unrelated to its content.
    """
    tc = permuted_recipe(info, settings)
    subset = ([c for c in model_registry.classes(store, model) if c.class_id in info.config.class_ids]
              if info.config.class_ids is not None else None)
    payload = {"version": PERMUTED_VERSION, "model": [model.name, model.ckpt_path], "config": info.config.to_dict(),
               "train": asdict(tc), "source": settings.permuted_source, "permutation": ["sanity-permutation", settings.seed, model.name]}
    fingerprint = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    run_dir = artifacts_dir("extractors", model.name, permuted_name(info, settings.seed))
    weights, record_path = run_dir / "weights.safetensors", run_dir / "run.json"
    net = build_extractor(info.config)
    if record_path.is_file() and weights.is_file():
        record = json.loads(record_path.read_text())
        if record.get("fingerprint") == fingerprint:
            net.load_state_dict(read_state_dict(weights))
            return _frozen(net, device), record["training"]
    tokens, true_labels = _training_grids(store, model, subset, tc, settings.permuted_source, vqgm, device, progress)
    if info.config.class_ids is not None:  # a subset extractor's outputs are 0..n-1 in class-id order
        to_output = torch.full((max(info.config.class_ids) + 1,), -1, dtype=torch.long)
        to_output[torch.tensor(info.config.class_ids)] = torch.arange(len(info.config.class_ids))
        true_labels = to_output[true_labels]
    labels = true_labels[torch.randperm(len(true_labels), generator=generator_for("sanity-permutation", settings.seed, model.name))]
    n = len(labels)
    batches = [(i, min(i + tc.batch_size, n)) for i in range(0, n, tc.batch_size)]
    if len(batches) > 1 and batches[-1][1] - batches[-1][0] < 2:
        batches.pop()  # batch norm cannot train on one sample
    with torch.random.fork_rng(devices=[]):  # initialisation and dropout from the keyed stream, the global one untouched
        torch.manual_seed(derive_seed("sanity-permuted-init", settings.seed, info.name))
        net = build_extractor(info.config).to(device)
        optimizer = torch.optim.Adam(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=tc.step_size, gamma=tc.gamma)
        for epoch in range(1, tc.epochs + 1):
            net.train()
            order = torch.randperm(n, generator=generator_for("sanity-permuted-shuffle", settings.seed, epoch))
            for b, (lo, hi) in enumerate(batches):
                idx = order[lo:hi]
                loss = F.cross_entropy(net(embed_batch(vqgm, tokens[idx]).to(device)), labels[idx].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                common.report(progress, (epoch - 1) * len(batches) + b + 1, tc.epochs * len(batches),
                              f"label-permuted {info.name}: epoch {epoch}/{tc.epochs} loss {float(loss.detach()):.3f}")
            scheduler.step()
    net.eval()
    with torch.no_grad():
        predicted = torch.cat([net(embed_batch(vqgm, chunk).to(device)).argmax(1).cpu() for chunk in tokens.split(256)])
    training = {"epochs": tc.epochs, "train_per_class": tc.train_per_class, "step_size": tc.step_size, "batch_size": tc.batch_size,
                "lr": tc.lr, "n_train": n, "acc_permuted_labels": round(float((predicted == labels).float().mean()), 4),
                "acc_true_labels": round(float((predicted == true_labels).float().mean()), 4)}
    tmp = weights.with_name(weights.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(tmp))
    os.replace(tmp, weights)
    record_path.write_text(json.dumps({"fingerprint": fingerprint, "extractor": info.name, "recipe": asdict(tc),
                                       "training": training}, indent=2, sort_keys=True) + "\n")
    return _frozen(net, device), training


def _training_grids(store: Store, model: ModelInfo, subset, tc: TrainConfig, source: str, vqgm, device, progress) -> tuple[torch.Tensor, torch.Tensor]:
    """(token grids, class ids) of the permuted extractor's training images, in class then seed order."""
    if source == "generated":
        data = load_split(store, model, "train", tc.train_per_class, seed=tc.data_seed, device=device, classes=subset,
                          progress=lambda d, t, info="": common.report(progress, d, t, f"permuted training images: {info}"))
        return data.tokens, data.labels
    classes = subset if subset is not None else model_registry.classes(store, model)
    pixels = [world.sample(c.class_id, tc.data_seed + i, "train").image for c in classes for i in range(tc.train_per_class)]
    images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 127.5 - 1
    if images.shape[-1] != model.image_size:
        images = F.interpolate(images, size=model.image_size, mode="bilinear", antialias=True)
    grids = []
    for i, chunk in enumerate(images.split(64)):
        grids.append(vqgm.encode_images(chunk.to(vqgm.device)).cpu())
        common.report(progress, min((i + 1) * 64, len(images)), len(images), "permuted training images (encoding)")
    labels = torch.tensor([c.class_id for c in classes for _ in range(tc.train_per_class)], dtype=torch.long)
    return torch.cat(grids), labels


def _frozen(net: nn.Module, device: torch.device | str) -> nn.Module:
    net = net.eval().to(device)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


# -- the evaluation -----------------------------------------------------------------------------------------------

def checks_of(cascade: Sequence[SanityStep], permuted: SanityStep, floor: float, random_p5: float) -> dict[str, bool]:
    """The issue's four conditions: full cascade and label-permuted, overlap <= floor + 0.1 and P@5 <= 1.5 x random."""
    full = cascade[-1]
    return {
        "cascade_overlap": full.top20_overlap <= floor + OVERLAP_MARGIN,
        "cascade_precision": full.precision_at_5 <= PRECISION_FACTOR * random_p5,
        "permuted_overlap": permuted.top20_overlap <= floor + OVERLAP_MARGIN,
        "permuted_precision": permuted.precision_at_5 <= PRECISION_FACTOR * random_p5,
    }


def run_sanity(
    store: Store,
    model: ModelInfo,
    *,
    extractors: str = "ce",
    settings: SanitySettings = SanitySettings(),
    device: torch.device | str = "cpu",
    out_dir: str | Path | None = None,
    progress: common.Progress | None = None,
) -> SanityResult:
    """Run the sanity checks (mini model only), write JSON + PNG, store the result.

    Args:
        store: the open database.
        model: must be the mini model (its world has object masks for precision@5).
        extractors: an extractor name (default 'ce'), several comma-separated or 'all'; the first one's variants are
            the top-level keys, the others go to `others`.
        settings: images, SmoothGrad samples, seed, the label-permuted extractor's size.
        device: where models run.
        out_dir: where `sanity.json`/`.png` go (default `$CORTEX_HOME/reports/<model>/`).
        progress: progress(done, total, info=...) callback.

    Returns:
        SanityResult (also stored in the `evaluations` table).

    Raises:
        CortexError: a model other than the mini world, bad settings, unknown classes or extractors.
    """
    _validate(settings, model)
    run = common.begin(store, model, extractors=extractors, classes=settings.classes, device=device, out_dir=out_dir,
                       progress=progress, with_judges=False)
    encoded = encoded_world(run, run.classes, settings.images_per_class, settings.first_seed, settings.batch_size)
    random_p5 = mean([random_floor(inside) for inside in encoded.insides])
    floor_overlap, floor_rho = random_pairs(encoded.found.keys, model.grid ** 2, settings.seed, settings.random_draws)
    floor = {"top20_overlap": floor_overlap, "expected_top20_overlap": TOP_N / model.grid ** 2, "spearman": floor_rho,
             "precision_at_5": random_p5}
    blocks = {info.name: _extractor_sanity(run, info, encoded, settings, floor) for info in run.extractors}
    first_name, first = next(iter(blocks.items()))
    n_images = len(encoded.found.keys)
    result = SanityResult(
        model=model.name, extractor=first_name, n_images=n_images, cascade=first.cascade, independent=first.independent,
        label_permuted=first.label_permuted, random_floor=floor, trained_precision_at_5=first.trained_precision_at_5,
        layers=first.layers, permuted_training=first.permuted_training, checks=first.checks, passed=first.passed, seconds=0.0,
        others={k: v for k, v in blocks.items() if k != first_name}, settings=asdict(settings),
    )
    plot = plot_cascade(blocks, floor, run.out / "sanity.png", f"{model.name}: sanity of the TSV maps on {n_images} mini-world images")
    return common.finish(run, KIND, result, plot, common.settings_params(settings, extractors))


run = run_sanity


def _validate(settings: SanitySettings, model: ModelInfo) -> None:
    require_mini(model)
    for key in ("images_per_class", "samples", "random_draws", "permuted_per_class", "permuted_epochs", "batch_size"):
        if int(getattr(settings, key)) < 1:
            raise CortexError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(settings, key)}")
    if settings.permuted_source not in PERMUTED_SOURCES:
        raise CortexError(f"--permuted-source must be one of {', '.join(PERMUTED_SOURCES)}, got {settings.permuted_source!r}")


def _extractor_sanity(run: common.Evaluation, info: ExtractorInfo, encoded: EncodedWorld, settings: SanitySettings,
                      floor: dict) -> ExtractorSanity:
    """Every variant of one extractor against its trained maps: the cascade, each layer alone, the label-permuted twin."""
    labels, keys, insides = encoded.found.labels.tolist(), encoded.found.keys, encoded.insides
    saliency = SaliencySettings(samples=settings.samples, seed=settings.seed)  # every variant: the same noise keys
    net = load_extractor(info, run.device)
    groups = layers_of(net)
    jobs = common.Jobs(2 + len(groups) * (2 if settings.independent else 1))

    def maps_of(variant: nn.Module, what: str) -> torch.Tensor:
        out = common.saliency_of(variant, run.vqgm, encoded.tokens, labels, keys, saliency, batch_size=settings.batch_size)
        run.report(jobs.next(), jobs.total, f"{info.name}: {what}")
        return out

    trained = maps_of(net, "trained")
    cascade, independent = [], []
    variant = copy.deepcopy(net)
    for i, layer in enumerate(groups):  # each layer's stream is keyed by its name: step i = layers 0..i re-drawn
        variant = randomised(variant, [layer], settings.seed)
        cascade.append(compare(maps_of(variant, f"cascade {i + 1}/{len(groups)}"), trained, insides,
                               [n for g in groups[:i + 1] for n in g]))
    if settings.independent:
        for i, layer in enumerate(groups):
            alone = randomised(net, [layer], settings.seed)
            independent.append(compare(maps_of(alone, f"layer {i + 1}/{len(groups)} alone"), trained, insides, layer))
    permuted_net, training = train_permuted(run.store, run.model, info, settings, run.vqgm, device=run.device,
                                            progress=lambda d, t, info="": run.report(jobs.done, jobs.total, info))
    if info.config.class_ids is not None:  # answer in the model's class ids, as the trained one does
        permuted_net = ClassSpace(permuted_net, info.config.class_ids, info.config.n_classes, permuted_name(info, settings.seed)).eval()
    permuted = compare(maps_of(permuted_net, "label-permuted"), trained, insides, [n for g in groups for n in g])
    checks = checks_of(cascade, permuted, floor["top20_overlap"], floor["precision_at_5"])
    return ExtractorSanity(
        groups, mean([precision_at_n(ranked_positions(a), inside, PRECISION_N) for a, inside in zip(trained, insides)]),
        cascade, independent, permuted, training, checks, all(checks.values()))


def plot_cascade(blocks: dict[str, ExtractorSanity], floor: dict, path: Path, title: str) -> Path:
    """One panel per extractor: Spearman, top-20 overlap and precision@5 along the cascade (step 0: trained)."""
    longest = max(len(b.cascade) for b in blocks.values())
    x = list(range(longest + 1))
    panels = {}
    for name, block in blocks.items():
        pad = [float("nan")] * (longest - len(block.cascade))
        panels[f"CORTEX {name.upper()} cascade"] = {
            "Spearman": [1.0] + [s.spearman for s in block.cascade] + pad,
            "top-20 overlap": [1.0] + [s.top20_overlap for s in block.cascade] + pad,
            "precision@5": [block.trained_precision_at_5] + [s.precision_at_5 for s in block.cascade] + pad,
            "label-permuted top-20 overlap": [block.label_permuted.top20_overlap] * len(x),
            "random top-20 overlap": [floor["top20_overlap"]] * len(x),
            "random precision@5": [floor["precision_at_5"]] * len(x),
        }
    return plots.line_panels(x, panels, path, xlabel="layers re-initialised, output -> input", ylabel="vs the trained maps",
                             title=title)


# -- tables (`cortex report`, the terminal, the atlas) -----------------------------------------------------------

def sanity_verdict(checks: dict, floor: dict) -> str:
    """The issue's check in words: which of its four conditions held."""
    limit = f"top-20 overlap <= {num(floor['top20_overlap'] + 0.1)} (random floor + 0.1) and precision@5 <= {num(1.5 * floor['precision_at_5'])} (1.5 x random)"
    failed = [name.replace("_", " ") for name, ok in checks.items() if not ok]
    if not failed:
        return f"PASSED: after the full cascade and for the label-permuted extractor, {limit}"
    return (f"FAILED ({', '.join(failed)}): the maps keep more of the trained extractor's than the check allows "
            f"({limit}); a finding about these explanations, not an error")


def tables(r: dict) -> list[TableSpec]:
    """The cascade (one row per step), the label-permuted extractor and the floor; independent layers second."""
    floor = r["random_floor"]

    def row(variant: str, step: dict, layers: str) -> list[str]:
        return [variant, layers, num(step["spearman"]), num(step["top20_overlap"]), num(step["precision_at_5"])]

    def blocks() -> list[tuple[str, dict]]:
        return [(r["extractor"], r)] + list(r.get("others", {}).items())

    columns = ["variant", "layers re-initialised", "Spearman", "top-20 overlap", "precision@5"]
    rows, alone = [], []
    for name, b in blocks():
        label = name.upper()
        rows.append([f"{label} trained", "none", "1.000", "1.000", num(b["trained_precision_at_5"])])
        for i, step in enumerate(b["cascade"]):
            rows.append(row(f"{label} cascade {i + 1}", step, f"{len(step['layers'])} modules, down to {step['layers'][-1]}"))
        t = b["permuted_training"]
        rows.append(row(f"{label} label-permuted", b["label_permuted"],
                        f"all (trained on permuted labels: fit {num(t.get('acc_permuted_labels'), 2)}, true-label acc {num(t.get('acc_true_labels'), 2)})"))
        alone += [row(f"{label} layer {i + 1} alone", step, ", ".join(step["layers"])) for i, step in enumerate(b["independent"])]
    rows.append(["random floor", "two unrelated random maps", num(floor["spearman"]), num(floor["top20_overlap"]), num(floor["precision_at_5"])])
    verdicts = "; ".join(f"{name.upper()}: {sanity_verdict(b['checks'], floor)}" for name, b in blocks())
    out = [TableSpec(f"{r['n_images']} mini-world images, each variant against the trained extractor's TSV maps "
                     f"(layers output -> input); check: {verdicts}", columns, rows)]
    if alone:
        out.append(TableSpec("independent randomisation: one layer at a time, the others trained", columns, alone))
    return out
