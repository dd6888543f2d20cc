"""Image-level evaluation (paper Figure 3): mask the top-n TSV patches vs n random patches, and insertion beside it.

On generated test images, each extractor's TSV map (target: the true class) ranks the m^2
positions (one ranking per attribution method when several are compared on the same images); for n = 5, 10, ..., 50 the pixel patches of the top-n positions are masked and every
judge scores the image. The floor masks n random positions (several seeded draws, the same
draws for every extractor). A faithful explanation drops the judges' probability of the true
class faster than random.

Beside that deletion curve, insertion (RISE, Petsiuk et al. 2018): start from the fully masked image
(every position filled with the same fill) and put back the top-n positions (their patches; with
`fill='tokens'`, their tokens on a grid of the background token, decoded: `masking.insertion_images`),
on the same n grid. A faithful explanation raises the probability faster than random. A third ranking joins
both curves: the frequency baseline (positions by how often their token occurs in the class's
generated training images, seeds 0..train_images-1; ties in seeded random order; no extractor).

AUC (`metrics.curve_auc`): the trapezoid area under P(true class) over x = n / m^2 for n in
{0} + ns, divided by the x range covered, i.e. the curve's mean height (RISE's AUC when ns reaches
m^2). It is taken per image, so CORTEX - random and CORTEX - frequency get a paired bootstrap 95%
interval over images (one seeded resampling of the images for every interval; random's per-image
AUC is the mean over its draws). Deletion: lower is better; insertion: higher is better.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import torch

from ..models import registry as model_registry
from ..core.errors import CortexError
from .common import EvaluationResult
from ..extractors.registry import load_extractor
from ..images.generation import ensure_images, image_keys
from ..judges.pixel_judges import Judge
from ..models.registry import ModelInfo
from ..attribution import METHODS, SaliencySettings, method_named
from ..index.rankings import token_counts_of
from ..core.seeding import derive_seed, generator_for
from ..store.database import Store
from . import common, plots
from .localization import frequency_ranking
from .masking import FILLS, background_token, insertion_images, mask_images
from .metrics import BootstrapCI, accuracy_and_probability, curve_auc, paired_bootstrap_ci, ranked_positions, verdict


@dataclass
class ImageLevelSettings:
    """What `cortex eval image-level` measures."""

    images_per_class: int = 4  # generated test images per class
    ns: tuple[int, ...] = tuple(range(5, 55, 5))  # numbers of masked positions (paper: 5..50)
    fill: str = "black"  # 'black' (the paper's), 'mean' or 'blur' patches, or 'tokens' (refilled grid, decoded)
    random_draws: int = 3  # seeded random-position draws per image (the floor)
    seed: int = 0  # saliency noise and random positions
    first_seed: int = 0  # test images: seeds first_seed .. first_seed+images_per_class-1
    classes: tuple[str, ...] = ()  # class ids or names; empty: every class of the model
    samples: int = 20  # SmoothGrad samples N
    batch_size: int = 16
    methods: tuple[str, ...] = ("smoothgrad",)  # attribution methods compared on the same images (attribution.METHODS)
    train_images: int = 20  # generated training images per class (seeds 0..N-1) whose token counts rank the frequency baseline
    bootstrap: int = 2000  # resamples of the AUC differences' paired bootstrap intervals

    def validate(self, grid: int) -> "ImageLevelSettings":
        if self.fill not in FILLS:
            raise CortexError(f"--fill must be one of {', '.join(FILLS)}, got {self.fill!r}")
        if self.random_draws < 1:
            raise CortexError(f"--random-draws must be >= 1, got {self.random_draws}")
        if self.images_per_class < 1:
            raise CortexError(f"--images-per-class must be >= 1, got {self.images_per_class}")
        if self.train_images < 1 or self.bootstrap < 1:
            raise CortexError(f"--train-images and --bootstrap must be >= 1, got {self.train_images} and {self.bootstrap}")
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
class AucComparison:
    """A CORTEX selection's AUC minus another selection's, per image: paired bootstrap intervals over images."""

    deletion: BootstrapCI  # lower is better: 'win' when the interval lies below 0
    insertion: BootstrapCI  # higher is better: 'win' when the interval lies above 0
    deletion_verdict: str  # 'win', 'loss' or 'n.s.'
    insertion_verdict: str


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
    # deletion and insertion on the same n grid; selections: those of `probability` and 'frequency' (the baseline)
    curves: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)  # judge -> selection -> deletion/insertion -> P per n
    auc: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # judge -> selection -> {'deletion', 'insertion'}: mean AUC
    auc_ci: dict[str, dict[str, dict[str, AucComparison]]] = field(default_factory=dict)  # judge -> CORTEX selection -> 'random'/'frequency' -> CI
    auc_range: list[float] = field(default_factory=list)  # [first, last] x = n / m^2 the AUC covers


def random_rankings(image_keys: Sequence[int], positions: int, seed: int, draw: int) -> torch.Tensor:
    """(B, positions) seeded random orders, one per image; the same (seed, key, draw), the same order."""
    return torch.stack([torch.randperm(positions, generator=generator_for("image-level-random", seed, int(k), draw)) for k in image_keys])


@dataclass(frozen=True)
class SelectionCurves:
    """One ranking's judge scores on the n grid: per-image P(true class) for deletion and insertion."""

    deletion: dict[str, torch.Tensor]  # judge -> (B, len(ns)) P(true class) with the top-n positions masked
    insertion: dict[str, torch.Tensor]  # judge -> (B, len(ns)) with every position but the top n masked
    mean_deletion: dict[str, list[float]]  # judge -> mean P per n (Figure 3's curve)
    accuracy: dict[str, list[float]]  # judge -> deletion top-1 accuracy per n


Masker = Callable[[Sequence[torch.Tensor]], torch.Tensor]  # positions per image -> images with them masked (or kept)


def masked_probabilities(
    judges: Sequence[Judge],
    images: torch.Tensor,
    labels: torch.Tensor,
    rankings: torch.Tensor,
    ns: Sequence[int],
    mask: Masker,
    insert: Masker,
) -> SelectionCurves:
    """Judges' P(true class) after masking each image's first n ranked positions (deletion) and all but them (insertion).

    Args:
        judges: the classifiers.
        images: (B, 3, H, W) in [-1, 1], unmasked.
        labels: (B,) true classes.
        rankings: (B, m^2) positions per image, most important first.
        ns: the numbers of ranked positions (0 = deletion masks nothing, insertion masks everything).
        mask: positions per image -> the images with them masked (`masking.mask_images` with the run's fill).
        insert: positions per image -> the fully masked images with only them put back (`masking.insertion_images`).

    Returns:
        SelectionCurves.
    """
    names = [j.name for j in judges]
    deletion: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    insertion: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    means: dict[str, list[float]] = {n: [] for n in names}
    accs: dict[str, list[float]] = {n: [] for n in names}
    column = labels.reshape(-1, 1)
    for n in ns:
        deleted = mask([r[:n] for r in rankings]) if n else images
        inserted = insert([r[:n] for r in rankings]) if n < rankings.shape[1] else images
        for j in judges:
            probs = j.probabilities(deleted).cpu()
            acc, p = accuracy_and_probability(probs, labels)
            means[j.name].append(p)
            accs[j.name].append(acc)
            deletion[j.name].append(probs.gather(1, column)[:, 0].double())
            insertion[j.name].append(j.probabilities(inserted).cpu().gather(1, column)[:, 0].double())
    return SelectionCurves({k: torch.stack(v, 1) for k, v in deletion.items()}, {k: torch.stack(v, 1) for k, v in insertion.items()},
                           means, accs)


def frequency_rankings(store: Store, model: ModelInfo, classes, tokens: torch.Tensor, labels: torch.Tensor, keys: Sequence[int],
                       settings: ImageLevelSettings, device) -> torch.Tensor:
    """(B, m^2) the frequency baseline's order of each test image's positions (ties in seeded random order)."""
    counts = {}
    for cls in classes:
        ids = ensure_images(store, model, cls, "train", settings.train_images, seed=0, device=device)
        counts[cls.class_id] = torch.from_numpy(token_counts_of(store, model, ids)[0]).double()
    return torch.stack([frequency_ranking(t, counts[int(c)], generator_for("image-level-ties", settings.seed, int(k)))
                        for t, c, k in zip(tokens, labels, keys)])


def auc_comparisons(per_image: dict[str, dict[str, torch.Tensor]], cortex: Sequence[str], seed: int, resamples: int
                    ) -> dict[str, dict[str, AucComparison]]:
    """CORTEX selection -> other ('random', 'frequency') -> paired bootstrap intervals of the per-image AUC differences."""
    out: dict[str, dict[str, AucComparison]] = {}
    for name in cortex:
        out[name] = {}
        for other in ("random", "frequency"):
            cis = {kind: paired_bootstrap_ci(per_image[name][kind], per_image[other][kind], seed=seed, resamples=resamples)
                   for kind in ("deletion", "insertion")}
            out[name][other] = AucComparison(cis["deletion"], cis["insertion"], verdict(cis["deletion"], higher_is_better=False),
                                             verdict(cis["insertion"]))
    return out


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
    fallback = background_token(tokens) if settings.fill == "tokens" else None

    def mask(chosen: Sequence[torch.Tensor]) -> torch.Tensor:
        return mask_images(images, chosen, model.grid, settings.fill, tokens=tokens, decode=lambda t: common.decode(vqgm, t),
                           fallback=fallback)

    def insert(kept: Sequence[torch.Tensor]) -> torch.Tensor:
        return insertion_images(images, kept, model.grid, settings.fill, tokens=tokens, decode=lambda t: common.decode(vqgm, t),
                                fallback=fallback)

    probability: dict[str, dict[str, list[float]]] = {j.name: {} for j in judges}
    accuracy: dict[str, dict[str, list[float]]] = {j.name: {} for j in judges}
    per_image: dict[str, dict[str, dict[str, torch.Tensor]]] = {j.name: {} for j in judges}  # judge -> selection -> kind -> (B, len(ns))
    selections = []

    def keep(name: str, found: SelectionCurves) -> None:
        for j in judges:
            per_image[j.name][name] = {"deletion": found.deletion[j.name], "insertion": found.insertion[j.name]}
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
            run.report(0, 1, f"masking {name}")
            found = masked_probabilities(judges, images, labels, rankings, ns, mask, insert)
            for j in judges:
                probability[j.name][name] = found.mean_deletion[j.name]
                accuracy[j.name][name] = found.accuracy[j.name]
            keep(name, found)
            selections.append(name)
    draws_p: dict[str, list[list[float]]] = {j.name: [] for j in judges}
    draws_a: dict[str, list[list[float]]] = {j.name: [] for j in judges}
    draws: list[SelectionCurves] = []
    for draw in range(settings.random_draws):
        run.report(draw, settings.random_draws, "random positions")
        found = masked_probabilities(judges, images, labels, random_rankings(keys, positions, settings.seed, draw), ns, mask, insert)
        draws.append(found)
        for j in judges:
            draws_p[j.name].append(found.mean_deletion[j.name])
            draws_a[j.name].append(found.accuracy[j.name])
    for j in judges:  # random's per-image curves: the mean over its draws
        per_image[j.name]["random"] = {kind: torch.stack([getattr(d, kind)[j.name] for d in draws]).mean(0)
                                       for kind in ("deletion", "insertion")}
    run.report(0, 1, "frequency baseline")
    keep("frequency", masked_probabilities(judges, images, labels, frequency_rankings(store, model, run.classes, tokens, labels, keys,
                                                                                       settings, device), ns, mask, insert))
    spread: dict[str, list[float]] = {}
    beats: dict[str, dict[str, float]] = {}
    for j in judges:
        stacked = torch.tensor(draws_p[j.name])
        probability[j.name]["random"] = stacked.mean(0).tolist()
        accuracy[j.name]["random"] = torch.tensor(draws_a[j.name]).mean(0).tolist()
        spread[j.name] = stacked.std(0, unbiased=False).tolist()
        rnd = probability[j.name]["random"]
        beats[j.name] = {name: sum(c < r for c, r in zip(probability[j.name][name][1:], rnd[1:])) / (len(ns) - 1) for name in selections}
    fractions = [n / positions for n in ns]
    curves = {j: {name: {kind: values.mean(0).tolist() for kind, values in kinds.items()} for name, kinds in sels.items()}
              for j, sels in per_image.items()}
    aucs = {j: {name: {kind: curve_auc(fractions, values) for kind, values in kinds.items()} for name, kinds in sels.items()}
            for j, sels in per_image.items()}
    auc = {j: {name: {kind: float(v.mean()) for kind, v in kinds.items()} for name, kinds in sels.items()} for j, sels in aucs.items()}
    auc_ci = {j: auc_comparisons(sels, selections, derive_seed("image-level-auc", settings.seed), settings.bootstrap)
              for j, sels in aucs.items()}
    result = ImageLevelResult(
        model=model.name, extractors=[i.name for i in infos], judges=[j.name for j in judges], n_images=len(ids),
        ns=ns, fill=settings.fill, random_draws=settings.random_draws, probability=probability, accuracy=accuracy,
        random_spread=spread, cortex_beats_random=beats, seconds=0.0, settings=asdict(settings), methods=list(settings.methods),
        curves=curves, auc=auc, auc_ci=auc_ci, auc_range=[fractions[0], fractions[-1]],
    )
    label = {"random": "random", "frequency": "frequency baseline"}
    plot = plots.line_grid(
        ns, {f"{kind} ({'top-n masked' if kind == 'deletion' else 'all but the top n masked'})":
             {j: {label.get(k, f"CORTEX {k.upper()}"): v[kind] for k, v in lines.items()} for j, lines in curves.items()}
             for kind in ("deletion", "insertion")},
        run.out / f"{common.result_stem('image-level', settings.fill)}.png", xlabel="ranked tokens n", ylabel="mean P(true class)",
        title=f"{model.name}: image-level deletion and insertion ({settings.fill} fill, {len(ids)} images)",
    )
    stem = common.result_stem("image-level", settings.fill)  # a token-filled run does not overwrite the black one
    return common.finish(run, "image-level", result, plot, name=stem, params=asdict(settings) | {"extractors": extractors})
