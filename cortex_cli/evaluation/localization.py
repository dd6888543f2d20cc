"""Ground-truth localization (beyond the paper; mini world only): are the salient tokens on the object?

Mini-world images with known object masks (split 'loc', never used for training) are encoded with the
model's VQGAN. A token counts as *on the object* when at least half of its pixel patch lies inside
the object mask (`metrics.INSIDE_FRACTION`). For each ranking of the m^2 positions we report the
precision of the top-n (n = 1, 5, 10, 20) and the pointing game (top-1 on the object):

- CORTEX: positions by TSV of each extractor, target the true concept;
- frequency baseline: positions by how often their token occurs in the class's generated training
  images, seeds 0..train_images-1 (the paper's baseline, which needs no extractor); ties in seeded
  random order;
- specific baseline: positions by how specific their token is to the class (smoothed P(class | token)
  over the same seeds of every class; `queries.specificity`), a stronger extractor-free ranking;
- random: seeded random orders (the floor), next to its exact expectation, the object's share of
  positions.

A named concept in `--classes` (`cortex concepts add red --classes ...`) is evaluated as one unit: its
images are the 'loc' images of each member, CORTEX explains the concept's score (`--score`, read off a
class extractor; an extractor trained for the concept: its own), and the frequency and specific baselines
count all its members' training images. Its ground truth is the attribute's pixels when its name is a
mini-world attribute (`world.ATTRIBUTES`: "red" = the red parts of the objects), else its members' object
masks; `ground_truth` in the result says which, per class or concept ('object' or 'attribute:<name>').
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch

from ..models import registry as model_registry, subjects
from ..models.subjects import Subject, SubjectLike
from ..core.errors import CortexError
from .common import EvaluationResult
from ..extractors.registry import load_extractor
from ..images.generation import ensure_images, resolve_sampler
from ..miniworld import world
from ..index.rankings import ImageSet, specificity, token_counts_of
from ..models.registry import ClassInfo, ModelInfo
from ..attribution import SaliencySettings
from ..core.seeding import derive_seed, generator_for
from ..store.database import Store
from ..models.targets import DEFAULT_RULE, UNION_RULES, Target
from . import common, plots
from .metrics import INSIDE_FRACTION, mean, patches_inside, pointing_game, precision_at_n, random_floor, ranked_positions
from .tables import TableSpec, method_label, num

KIND = "localization"
TITLE = "Ground truth (mini world): share of top-n tokens on the object"
USES_JUDGES = False
SPLIT = "loc"  # the mini world's split for localization images (disjoint seeds from train/val/test)


@dataclass
class LocalizationSettings:
    """What `cortex eval localization` measures."""

    images_per_class: int = 5  # mini-world images per concept
    ns: tuple[int, ...] = (1, 5, 10, 20)
    random_draws: int = 10
    seed: int = 0  # saliency noise, random orders and tie-breaking
    first_seed: int = 0  # the first world-image seed of every concept
    samples: int = 20  # SmoothGrad samples N
    train_images: int = 20  # generated training images per class (seeds 0..N-1) for the frequency/specific counts
    classes: tuple[str, ...] = ()  # class ids or names, or named concepts (each evaluated as one unit)
    batch_size: int = 16
    score: str = DEFAULT_RULE  # a named concept's f_Y read off a class extractor (`targets.UNION_RULES`)


SETTINGS = LocalizationSettings


def presets(quick: bool) -> dict[str, LocalizationSettings]:
    """The run of `cortex eval all`: the defaults, or its quick test's tiny settings."""
    if not quick:
        return {KIND: LocalizationSettings()}
    return {KIND: LocalizationSettings(images_per_class=1, ns=(1, 5), random_draws=2, samples=2, train_images=2,
                                       classes=common.QUICK_CLASSES)}


@dataclass
class MethodScores:
    """Precision@n and pointing game of one ranking method, over all images."""

    precision: dict[str, float]  # str(n) -> mean precision@n
    pointing_game: float
    per_class_precision: dict[str, float]  # class (or concept) name -> precision at the 2nd n (5 by default)


@dataclass(frozen=True)
class LocalizationResult(EvaluationResult):
    """Precision@n and the pointing game of each ranking (CORTEX per extractor, the baselines, random) on the ground truth."""

    KIND: ClassVar[str] = KIND
    model: str
    n_images: int
    ns: list[int]
    inside_fraction: float  # the overlap rule for "on the object"
    object_share: float  # mean share of positions on the object = the random floor's expectation
    methods: dict[str, MethodScores]  # 'ce', 're', ..., 'frequency', 'random'
    seconds: float
    ground_truth: dict[str, str] = field(default_factory=dict)  # class or concept name -> 'object' or 'attribute:<name>'
    settings: dict = field(default_factory=dict)
    json_path: str = ""
    plot_path: str = ""
    evaluation_id: int = 0


Unit = SubjectLike  # what one evaluated name stands for: a class, or a named concept (one unit; `subjects.Subject`)


def members_of(unit: Unit) -> list[ClassInfo]:
    """The classes whose images a unit has: a class itself, a concept its members."""
    return list(Subject.of(unit).members)


def ground_truth_of(unit: Unit) -> str:
    """'attribute:<name>' for a concept named like a mini-world attribute (e.g. "red"), else 'object'."""
    attribute = None if Subject.of(unit).is_class else world.attribute_named(unit.name)
    return f"attribute:{attribute}" if attribute else "object"


@dataclass(frozen=True)
class WorldImages:
    """The evaluated 'loc' images, unit by unit, member by member, seed by seed."""

    images: torch.Tensor  # (B, 3, 64, 64) in [-1, 1]
    labels: torch.Tensor  # (B,) each image's own class id
    masks: torch.Tensor  # (B, 64, 64) bool: its unit's ground truth
    units: list[int]  # (B,) index of each image's unit
    keys: list[int]  # (B,) each image's identity: derive_seed('localization', class id, seed)


def unit_images(units: Sequence[Unit], per_class: int, seed: int) -> WorldImages:
    """The 'loc' images of each unit: seeds seed..seed+per_class-1 of each of its member classes, with its ground truth."""
    imgs, labels, masks, owners, keys = [], [], [], [], []
    for u, unit in enumerate(units):
        truth = ground_truth_of(unit)
        for cls in members_of(unit):
            for i in range(per_class):
                s = world.sample(cls.class_id, seed + i, SPLIT)
                imgs.append(s.image)
                masks.append(world.attribute_mask(s, truth.split(":", 1)[1]) if truth != "object" else s.mask)
                labels.append(cls.class_id)
                owners.append(u)
                keys.append(derive_seed("localization", cls.class_id, seed + i))
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return WorldImages(x, torch.tensor(labels), torch.from_numpy(np.stack(masks)), owners, keys)


def _class_scores(store: Store, model: ModelInfo, unit: Unit, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(K,) token counts and (K,) specificity of a class (a concept: all its members) over training seeds 0..n-1
    (every class's must exist)."""
    ids = [i for cls in members_of(unit) for i in ensure_images(store, model, cls, "train", n, seed=0, device=device)]
    image_set = ImageSet(tuple(c.pk for c in members_of(unit)), "train", tuple(ids), tuple(range(n)), (resolve_sampler(model).label(),))
    counts, _ = token_counts_of(store, model, ids)
    score = specificity(store, model, unit, image_set)[0]
    return torch.from_numpy(counts).double(), torch.from_numpy(score).double()


def resolve_units(store: Store, model: ModelInfo, names: Sequence[str]) -> list[Unit]:
    """The classes and named concepts in `names` (every class of the model when empty); a class name wins (`subjects.subject`)."""
    named = [name.strip() for name in names if name.strip()]
    if not named:
        return [Subject.of(c) for c in model_registry.classes(store, model)]
    return [subjects.subject(store, model, name) for name in named]


def _trained_for(info) -> str | None:
    """The concept an extractor was trained for (`train-extractor --concept`), or None for a class extractor."""
    return getattr(getattr(info, "config", None), "concept", None)


def unit_targets(info, units: Sequence[Unit], score: str) -> list[Target] | None:
    """What `info` explains for each unit (a class: its logit; a concept: `subjects.index_target`), or None when it
    cannot explain them all (an extractor trained for a concept explains that concept only)."""
    if _trained_for(info) is not None and any(Subject.of(u).is_class for u in units):
        return None
    try:
        return [subjects.index_target(info, unit, score) for unit in units]
    except CortexError:
        return None


def frequency_ranking(tokens: torch.Tensor, counts: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Positions of one token grid ranked by their token's class frequency (ties in random order)."""
    flat = tokens.reshape(-1).cpu()
    order = torch.randperm(flat.numel(), generator=generator)
    score = counts[flat][order]
    return order[torch.sort(-score, stable=True).indices]


@dataclass(frozen=True)
class Scorer:
    """Scores rankings of every image's positions against the images' ground truth: precision@n, pointing game, per unit."""

    insides: Sequence[torch.Tensor]  # per image: which positions lie on its ground truth
    labels: Sequence[str]  # per image: its unit's name
    ns: Sequence[int]

    def __call__(self, rankings: Sequence[torch.Tensor]) -> MethodScores:
        ns = self.ns
        precision = {str(n): mean([precision_at_n(r, m, n) for r, m in zip(rankings, self.insides)]) for n in ns}
        pointing = mean([pointing_game(r, m) for r, m in zip(rankings, self.insides)])
        probe = ns[1] if len(ns) > 1 else ns[0]
        per_class: dict[str, list[float]] = {}
        for r, m, name in zip(rankings, self.insides, self.labels):
            per_class.setdefault(name, []).append(precision_at_n(r, m, probe))
        return MethodScores(precision, pointing, {k: mean(v) for k, v in per_class.items()})


def require_mini(model: ModelInfo) -> None:
    """CortexError unless `model` is the mini world's (the only one with ground-truth masks)."""
    if not model.is_mini:
        raise CortexError(
            f"localization needs ground-truth object masks, which only the mini world has; model {model.name!r} is not the mini model (use --model mini)"
        )


def run_localization(
    store: Store,
    model: ModelInfo,
    *,
    extractors: str = "all",
    settings: LocalizationSettings = LocalizationSettings(),
    device: torch.device | str = "cpu",
    out_dir: str | Path | None = None,
    progress: common.Progress | None = None,
) -> LocalizationResult:
    """Run the ground-truth localization evaluation (mini model only), write JSON + PNG, store it.

    Args:
        store: the open database.
        model: must be the mini model (its world has object masks).
        extractors: 'all' or comma-separated extractor names.
        settings: images, n values, random draws, seed; `classes` may name concepts (one unit each, scored by `score`).
        device: where models run.
        out_dir: where `localization.json`/`.png` go (default `$CORTEX_HOME/reports/<model>/`).
        progress: progress(done, total, info=...) callback.

    Returns:
        LocalizationResult (also stored in the `evaluations` table).

    Raises:
        CortexError: a model other than the mini world, bad settings, an unknown class or concept, missing extractors,
            a named extractor trained for another concept.
    """
    _validate(settings, model)
    units = resolve_units(store, model, settings.classes)
    member_ids = [str(c.class_id) for u in units for c in members_of(u)] if settings.classes else settings.classes
    run = common.begin(store, model, extractors=extractors, classes=member_ids, device=device, out_dir=out_dir,
                       progress=progress, with_judges=False)
    explaining = _explaining(run.extractors, units, settings.score, named=extractors != "all")
    encoded = encoded_world(run, units, settings.images_per_class, settings.first_seed, settings.batch_size)
    scores = Scorer(encoded.insides, [units[u].name for u in encoded.found.units], settings.ns)
    methods = {info.name: scores(_cortex_rankings(run, encoded, info, targets, settings)) for info, targets in explaining}
    freq_rankings, specific_rankings = _baseline_rankings(run, units, encoded, settings)
    methods["frequency"] = scores(freq_rankings)
    methods["specific"] = scores(specific_rankings)
    draws = [scores([torch.randperm(model.grid ** 2, generator=generator_for("localization-random", settings.seed, k, d))
                     for k in encoded.found.keys])
             for d in range(settings.random_draws)]
    methods["random"] = MethodScores(
        {str(n): mean([d.precision[str(n)] for d in draws]) for n in settings.ns},
        mean([d.pointing_game for d in draws]),
        {c: mean([d.per_class_precision[c] for d in draws]) for c in draws[0].per_class_precision},
    )
    result = LocalizationResult(
        model=model.name, n_images=len(encoded.found.labels), ns=list(settings.ns), inside_fraction=INSIDE_FRACTION,
        object_share=mean([random_floor(m) for m in encoded.insides]), methods=methods, seconds=0.0, settings=asdict(settings),
        ground_truth={u.name: ground_truth_of(u) for u in units},
    )
    return common.finish(run, KIND, result, _plot(result, run.out / "localization.png"), common.settings_params(settings, extractors))


run = run_localization


def _validate(settings: LocalizationSettings, model: ModelInfo) -> None:
    require_mini(model)
    if settings.images_per_class < 1 or settings.random_draws < 1:
        raise CortexError("--images-per-class and --random-draws must be >= 1")
    if not settings.ns or any(not 0 < n <= model.grid ** 2 for n in settings.ns):
        raise CortexError(f"n values must lie in 1..{model.grid ** 2}, got {list(settings.ns)}")
    if settings.score not in UNION_RULES:
        raise CortexError(f"--score must be one of {', '.join(UNION_RULES)}, got {settings.score!r}")


def _explaining(infos: Sequence, units: Sequence[Unit], score: str, *, named: bool) -> list[tuple[object, list[Target]]]:
    """(extractor, what it explains for each unit) of every extractor that can explain them all; an extractor trained for
    a concept cannot explain others: refused when `named`, skipped among 'all'."""
    out = []
    for info in infos:
        targets = unit_targets(info, units, score)
        if targets is not None:
            out.append((info, targets))
        elif named:
            concept = _trained_for(info)
            raise CortexError(f"extractor {info.name!r} was trained for concept {concept!r} and explains only it; evaluate "
                              f"--classes {concept!r}, or choose a class extractor (--extractor ce)")
    if not out:
        raise CortexError("no extractor can explain every evaluated class and concept (an extractor trained for a concept "
                          "explains only that concept); evaluate fewer --classes or name --extractor")
    return out


@dataclass(frozen=True)
class EncodedWorld:
    """Mini-world images with their ground truth, encoded by the model's VQGAN (`encoded_world`)."""

    found: WorldImages  # the images at the world's size, their labels, units and keys
    tokens: torch.Tensor  # (B, m, m) their token grids
    insides: list[torch.Tensor]  # per image: which positions lie on its ground truth (`metrics.patches_inside`)


def encoded_world(run: common.Evaluation, units: Sequence[Unit], per_class: int, first_seed: int, batch_size: int) -> EncodedWorld:
    """The 'loc' images of `units` (`unit_images`), resized to the model's image size when it differs, and encoded."""
    model, vqgm = run.model, run.vqgm
    found = unit_images(units, per_class, first_seed)
    images, masks = found.images, found.masks
    if images.shape[-1] != model.image_size:
        images = torch.nn.functional.interpolate(images, size=model.image_size, mode="bilinear", antialias=True)
        masks = torch.nn.functional.interpolate(masks[:, None].float(), size=model.image_size, mode="nearest")[:, 0] > 0.5
    tokens = torch.cat([vqgm.encode_images(chunk.to(vqgm.device)).cpu() for chunk in images.split(batch_size)])
    return EncodedWorld(found, tokens, [patches_inside(m, model.grid) for m in masks])


def _cortex_rankings(run: common.Evaluation, encoded: EncodedWorld, info, targets: Sequence[Target],
                     settings: LocalizationSettings) -> list[torch.Tensor]:
    """Each image's positions ranked by the TSV of what `info` explains for its unit."""
    found, model = encoded.found, run.model
    net = load_extractor(info, run.device)
    sal = SaliencySettings(samples=settings.samples, seed=settings.seed)
    groups: dict[str, tuple[Target, list[int]]] = {}  # images explained alike go through one call, in image order
    for j, u in enumerate(found.units):
        groups.setdefault(targets[u].key, (targets[u], []))[1].append(j)
    tsv = torch.empty(len(found.keys), model.grid, model.grid)
    for target, idx in groups.values():
        tsv[idx] = common.saliency_of(
            target.explained(net), run.vqgm, encoded.tokens[idx], target.per_image(found.labels[idx].tolist()),
            [found.keys[j] for j in idx], sal, batch_size=settings.batch_size,
            progress=lambda d, t, info="", name=info.name: run.report(d, t, f"saliency {name}"),
        )
    return [ranked_positions(m) for m in tsv]


def _baseline_rankings(run: common.Evaluation, units: Sequence[Unit], encoded: EncodedWorld,
                       settings: LocalizationSettings) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(frequency, specific) rankings of every image's positions, both counted over the training seeds 0..train_images-1."""
    store, model, keys = run.store, run.model, encoded.found.keys
    freq_rankings, specific_rankings = [], []
    for other in model_registry.classes(store, model):  # the specific score compares every class's images
        ensure_images(store, model, other, "train", settings.train_images, seed=0, device=run.device)
    for k, unit in enumerate(units):
        run.report(k, len(units), f"token counts of {unit.name}")
        counts, specific = _class_scores(store, model, unit, settings.train_images, run.device)
        for j in (j for j, u in enumerate(encoded.found.units) if u == k):
            freq_rankings.append(frequency_ranking(encoded.tokens[j], counts, generator_for("localization-ties", settings.seed, keys[j])))
            specific_rankings.append(frequency_ranking(encoded.tokens[j], specific,
                                                       generator_for("localization-ties", settings.seed, keys[j])))
    return freq_rankings, specific_rankings


def _plot(result: LocalizationResult, path: Path) -> Path:
    """Precision@n of every ranking."""
    label = {"frequency": "frequency baseline", "specific": "specific baseline", "random": "random"}
    ns = result.ns
    return plots.line_panels(
        list(ns),
        {"precision@n": {label.get(k, f"CORTEX {k.upper()}"): [v.precision[str(n)] for n in ns] for k, v in result.methods.items()}},
        path, xlabel="top-n tokens",
        ylabel="share on the object" if set(result.ground_truth.values()) == {"object"} else "share on the ground truth (object or attribute)",
        title=f"{result.model}: localization on {result.n_images} mini-world images",
    )


# -- tables (`cortex report`, the terminal, the atlas) -----------------------------------------------------------

def tables(r: dict) -> list[TableSpec]:
    """The tables of a stored result (its JSON form)."""
    ns = r["ns"]
    rows = [[method_label(m)] + [num(s["precision"][str(n)]) for n in ns] + [num(s["pointing_game"])]
            for m, s in r["methods"].items()]
    return [TableSpec(
        f"{r['n_images']} mini-world images; a token is on the object when >= {int(100 * r['inside_fraction'])}% of its patch is; "
        f"object share of positions {num(r['object_share'])}",
        ["selection"] + [f"precision@{n}" for n in ns] + ["pointing game"], rows,
    )]
