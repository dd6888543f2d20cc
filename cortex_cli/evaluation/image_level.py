"""Image-level evaluation (paper Figure 3): mask the top-n TSV patches vs n random patches.

On generated test images, each extractor's TSV map (target: the true class) ranks the m^2
positions (one ranking per attribution method when several are compared on the same images); for n = 5, 10, ..., 50 the pixel patches of the top-n positions are masked and every
judge scores the image. The floor masks n random positions (several seeded draws, the same
draws for every extractor). A faithful explanation drops the judges' probability of the true
class faster than random.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

import torch

from .. import model_registry
from ..errors import CortexError
from .common import EvaluationResult
from ..extractors.registry import load_extractor
from ..generation import image_keys
from ..judges import Judge
from ..model_registry import ModelInfo
from ..attribution import METHODS, SaliencySettings, method_named
from ..seeding import generator_for
from ..store.database import Store
from . import common, plots
from .masking import FILLS, mask_patches
from .metrics import accuracy_and_probability, ranked_positions


@dataclass
class ImageLevelSettings:
    """What `cortex eval image-level` measures."""

    images_per_class: int = 4  # generated test images per class
    ns: tuple[int, ...] = tuple(range(5, 55, 5))  # numbers of masked positions (paper: 5..50)
    fill: str = "black"  # patch fill: 'black' (the paper's), 'mean' or 'blur'
    random_draws: int = 3  # seeded random-position draws per image (the floor)
    seed: int = 0  # saliency noise and random positions
    first_seed: int = 0  # test images: seeds first_seed .. first_seed+images_per_class-1
    classes: tuple[str, ...] = ()  # class ids or names; empty: every class of the model
    samples: int = 20  # SmoothGrad samples N
    batch_size: int = 16
    methods: tuple[str, ...] = ("smoothgrad",)  # attribution methods compared on the same images (attribution.METHODS)

    def validate(self, grid: int) -> "ImageLevelSettings":
        if self.fill not in FILLS:
            raise CortexError(f"--fill must be one of {', '.join(FILLS)}, got {self.fill!r}")
        if self.random_draws < 1:
            raise CortexError(f"--random-draws must be >= 1, got {self.random_draws}")
        if self.images_per_class < 1:
            raise CortexError(f"--images-per-class must be >= 1, got {self.images_per_class}")
        bad = [n for n in self.ns if not 0 < n <= grid * grid]
        if bad or not self.ns:
            raise CortexError(f"numbers of masked tokens must lie in 1..{grid * grid}; got {bad or 'none'}")
        if not self.methods:
            raise CortexError(f"--method needs at least one of {', '.join(METHODS)}")
        for method in self.methods:
            method_named(method)
        return self


def curve_name(extractor: str, method: str, methods: Sequence[str]) -> str:
    """A selection's key in the result: the extractor's name, with '/method' when several methods are compared."""
    return extractor if len(methods) == 1 else f"{extractor}/{method}"


@dataclass(frozen=True)
class ImageLevelResult(EvaluationResult):
    """Mean judge probability of the true class vs the number of masked positions."""

    KIND: ClassVar[str] = 'image-level'

    model: str
    extractors: list[str]
    judges: list[str]
    n_images: int
    ns: list[int]  # starts with 0 (unmasked)
    fill: str
    random_draws: int
    probability: dict[str, dict[str, list[float]]]  # judge -> selection ('ce', 're', 'ce/gradient', ..., 'random') -> P per n
    accuracy: dict[str, dict[str, list[float]]]  # judge -> method -> top-1 accuracy per n
    random_spread: dict[str, list[float]]  # judge -> std of P over the random draws, per n
    cortex_beats_random: dict[str, dict[str, float]]  # judge -> selection -> share of n>0 where P < random's
    seconds: float
    settings: dict = field(default_factory=dict)
    json_path: str = ""
    plot_path: str = ""
    evaluation_id: int = 0
    methods: list[str] = field(default_factory=lambda: ["smoothgrad"])  # attribution methods; several: selections are 'extractor/method'


def random_rankings(image_keys: Sequence[int], positions: int, seed: int, draw: int) -> torch.Tensor:
    """(B, positions) seeded random orders, one per image; the same (seed, key, draw), the same order."""
    return torch.stack([torch.randperm(positions, generator=generator_for("image-level-random", seed, int(k), draw)) for k in image_keys])


def masked_probabilities(
    judges: Sequence[Judge],
    images: torch.Tensor,
    labels: torch.Tensor,
    rankings: torch.Tensor,
    ns: Sequence[int],
    grid: int,
    fill: str,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Judges' (mean P(true class), accuracy) after masking each image's first n ranked positions.

    Args:
        judges: the classifiers.
        images: (B, 3, H, W) in [-1, 1].
        labels: (B,) true classes.
        rankings: (B, m^2) positions per image, most important first.
        ns: the numbers of positions to mask (0 = unmasked).
        grid: m.
        fill: patch fill.

    Returns:
        (judge -> [P per n], judge -> [accuracy per n]).
    """
    probs: dict[str, list[float]] = {j.name: [] for j in judges}
    accs: dict[str, list[float]] = {j.name: [] for j in judges}
    for n in ns:
        masked = mask_patches(images, [r[:n] for r in rankings], grid, fill) if n else images
        for j in judges:
            acc, p = accuracy_and_probability(j.probabilities(masked).cpu(), labels)
            probs[j.name].append(p)
            accs[j.name].append(acc)
    return probs, accs


def run_image_level(
    store: Store,
    model: ModelInfo,
    *,
    extractors: str = "all",
    settings: ImageLevelSettings = ImageLevelSettings(),
    device: torch.device | str = "cpu",
    out_dir: str | Path | None = None,
    judge_weights: str | Path | None = None,
    judges: Sequence[Judge] | None = None,
    progress: common.Progress | None = None,
) -> ImageLevelResult:
    """Run the image-level evaluation, write JSON + PNG, and store the result.

    Args:
        store: the open database.
        model: the model whose generated test images are masked.
        extractors: 'all' or comma-separated extractor names.
        settings: images, n values, fill, random draws, seed.
        device: where models run.
        out_dir: where `image_level.json`/`.png` go (default `$CORTEX_HOME/reports/<model>/`).
        judge_weights: extra directory of ImageNet judge weights.
        judges: judges to use instead of the model's (tests, custom judges).
        progress: progress(done, total, info=...) callback.

    Returns:
        ImageLevelResult (also stored in the `evaluations` table).
    """
    settings.validate(model.grid)
    run = common.begin(store, model, extractors=extractors, classes=settings.classes, device=device, out_dir=out_dir,
                       progress=progress, judges=judges, judge_weights=judge_weights)
    judges, infos = run.judges, run.extractors
    vqgm = model_registry.load_model(model, device)
    ids, labels, tokens = common.test_images(
        store, model, run.classes, settings.images_per_class, seed=settings.first_seed, device=device,
        progress=lambda d, t, info="": run.report(d, t, f"test images {info}"),
    )
    keys = image_keys(store, model, ids)
    images = common.decode(vqgm, tokens)
    ns = [0, *sorted(set(settings.ns))]
    positions = model.grid * model.grid
    probability: dict[str, dict[str, list[float]]] = {j.name: {} for j in judges}
    accuracy: dict[str, dict[str, list[float]]] = {j.name: {} for j in judges}
    selections = []
    for info in infos:
        net = load_extractor(info, device)
        for method in settings.methods:
            sal = SaliencySettings(samples=settings.samples, seed=settings.seed, method=method)
            name = curve_name(info.name, method, settings.methods)
            tsv = common.saliency_of(
                net, vqgm, tokens, labels.tolist(), keys, sal, batch_size=settings.batch_size,
                progress=lambda d, t, info="", name=name: run.report(d, t, f"saliency {name}"),
            )
            rankings = torch.stack([ranked_positions(m) for m in tsv])
            p, a = masked_probabilities(judges, images, labels, rankings, ns, model.grid, settings.fill)
            for j in judges:
                probability[j.name][name] = p[j.name]
                accuracy[j.name][name] = a[j.name]
            selections.append(name)
    draws_p: dict[str, list[list[float]]] = {j.name: [] for j in judges}
    draws_a: dict[str, list[list[float]]] = {j.name: [] for j in judges}
    for draw in range(settings.random_draws):
        run.report(draw, settings.random_draws, "random positions")
        p, a = masked_probabilities(judges, images, labels, random_rankings(keys, positions, settings.seed, draw), ns, model.grid, settings.fill)
        for j in judges:
            draws_p[j.name].append(p[j.name])
            draws_a[j.name].append(a[j.name])
    spread: dict[str, list[float]] = {}
    beats: dict[str, dict[str, float]] = {}
    for j in judges:
        stacked = torch.tensor(draws_p[j.name])
        probability[j.name]["random"] = stacked.mean(0).tolist()
        accuracy[j.name]["random"] = torch.tensor(draws_a[j.name]).mean(0).tolist()
        spread[j.name] = stacked.std(0, unbiased=False).tolist()
        rnd = probability[j.name]["random"]
        beats[j.name] = {name: sum(c < r for c, r in zip(probability[j.name][name][1:], rnd[1:])) / (len(ns) - 1) for name in selections}
    result = ImageLevelResult(
        model=model.name, extractors=[i.name for i in infos], judges=[j.name for j in judges], n_images=len(ids),
        ns=ns, fill=settings.fill, random_draws=settings.random_draws, probability=probability, accuracy=accuracy,
        random_spread=spread, cortex_beats_random=beats, seconds=0.0, settings=asdict(settings), methods=list(settings.methods),
    )
    plot = plots.line_panels(
        ns, {j: {("random" if k == "random" else f"CORTEX {k.upper()}"): v for k, v in lines.items()} for j, lines in probability.items()},
        run.out / "image_level.png", xlabel="masked tokens n", ylabel="mean P(true class)",
        title=f"{model.name}: image-level masking ({settings.fill} fill, {len(ids)} images)",
    )
    return common.finish(run, "image-level", result, plot, asdict(settings) | {"extractors": extractors})
