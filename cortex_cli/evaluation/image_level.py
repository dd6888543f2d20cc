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

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import torch

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
from .masking import FILLS, Masking, insertion_images, mask_images, masking_of
from .metrics import BootstrapCI, accuracy_and_probability, curve_auc, paired_bootstrap_ci, ranked_positions, verdict
from .tables import TableSpec, interval, method_label, num, pct

KIND = "image-level"
TITLE = "Image level (paper Figure 3): mean P(true class) after masking the top-n tokens"
USES_JUDGES = True  # takes judge_weights


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


SETTINGS = ImageLevelSettings


def presets(quick: bool) -> dict[str, ImageLevelSettings]:
    """The runs of `cortex eval all`: the defaults (or its quick test's tiny settings), with the paper's fill and with tokens."""
    base = ImageLevelSettings(images_per_class=1, ns=(5, 20), random_draws=1, samples=2, classes=common.QUICK_CLASSES,
                              train_images=2) if quick else ImageLevelSettings()
    return {KIND: base, f"{KIND} tokens": replace(base, fill="tokens")}


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

    KIND: ClassVar[str] = KIND

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


@dataclass(frozen=True)
class TestSet:
    """The masked images of a run: generated test images, their labels and keys, the n grid and how they are masked."""

    labels: torch.Tensor  # (B,) true classes
    tokens: torch.Tensor  # (B, m, m)
    keys: list[int]  # each image's identity (noise and random orders are keyed by it)
    ns: list[int]  # 0 and the sorted distinct n values
    masking: Masking

    def curves(self, judges: Sequence[Judge], rankings: torch.Tensor) -> SelectionCurves:
        """Deletion and insertion of one ranking of every image's positions (`masked_probabilities`)."""
        return masked_probabilities(judges, self.masking.images, self.labels, rankings, self.ns,
                                    lambda chosen: mask_images(self.masking, chosen), lambda kept: insertion_images(self.masking, kept))


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
    test = _test_set(run, settings)
    cortex = _cortex_curves(run, test, settings)
    draws = []
    for draw in range(settings.random_draws):
        run.report(draw, settings.random_draws, "random positions")
        draws.append(test.curves(run.judges, random_rankings(test.keys, model.grid * model.grid, settings.seed, draw)))
    run.report(0, 1, "frequency baseline")
    frequency = test.curves(run.judges, frequency_rankings(store, model, run.classes, test.tokens, test.labels, test.keys, settings,
                                                           device))
    result = _result(run, settings, test, cortex, draws, frequency)
    stem = common.result_stem(KIND, settings.fill)  # a token-filled run does not overwrite the black one
    return common.finish(run, KIND, result, _plot(result, run.out / f"{stem}.png"), name=stem,
                         params=common.settings_params(settings, extractors))


run = run_image_level


def _test_set(run: common.Evaluation, settings: ImageLevelSettings) -> TestSet:
    """The run's generated test images (sampled if missing), decoded, and how they are masked."""
    ids, labels, tokens = common.test_images(run.store, run.model, run.classes, settings.images_per_class, seed=settings.first_seed,
                                             device=run.device, progress=run.reporter("test images"))
    keys = image_keys(run.store, run.model, ids)
    masking = masking_of(run.decode(tokens), tokens, run.model.grid, settings.fill, run.decode)
    return TestSet(labels, tokens, keys, [0, *sorted(set(settings.ns))], masking)


def _cortex_curves(run: common.Evaluation, test: TestSet, settings: ImageLevelSettings) -> dict[str, SelectionCurves]:
    """Selection ('ce', or 'ce/<method>' when several methods are compared) -> the curves of its TSV ranking."""
    out = {}
    for info in run.extractors:
        net = load_extractor(info, run.device)
        for method in settings.methods:
            sal = SaliencySettings(samples=settings.samples, seed=settings.seed, method=method)
            name = curve_name(info.name, method, settings.methods)
            tsv = common.saliency_of(
                net, run.vqgm, test.tokens, test.labels.tolist(), test.keys, sal, batch_size=settings.batch_size,
                progress=lambda d, t, info="", name=name: run.report(d, t, f"saliency {name}"),
            )
            rankings = torch.stack([ranked_positions(m) for m in tsv])
            run.report(0, 1, f"masking {name}")
            out[name] = test.curves(run.judges, rankings)
    return out


def _per_image(curves: SelectionCurves, judge: str) -> dict[str, torch.Tensor]:
    return {"deletion": curves.deletion[judge], "insertion": curves.insertion[judge]}


def _result(run: common.Evaluation, settings: ImageLevelSettings, test: TestSet, cortex: dict[str, SelectionCurves],
            draws: list[SelectionCurves], frequency: SelectionCurves) -> ImageLevelResult:
    """Figure 3's curves (CORTEX selections, then random: the mean of its draws), AUCs and their paired intervals."""
    ns = test.ns
    probability, accuracy, spread, beats, per_image = {}, {}, {}, {}, {}
    for j in (judge.name for judge in run.judges):
        stacked = torch.tensor([d.mean_deletion[j] for d in draws])
        probability[j] = {name: c.mean_deletion[j] for name, c in cortex.items()} | {"random": stacked.mean(0).tolist()}
        accuracy[j] = ({name: c.accuracy[j] for name, c in cortex.items()}
                       | {"random": torch.tensor([d.accuracy[j] for d in draws]).mean(0).tolist()})
        spread[j] = stacked.std(0, unbiased=False).tolist()
        rnd = probability[j]["random"]
        beats[j] = {name: sum(c < r for c, r in zip(probability[j][name][1:], rnd[1:])) / (len(ns) - 1) for name in cortex}
        # judge -> selection -> kind -> (B, len(ns)); random's per-image curves: the mean over its draws
        per_image[j] = ({name: _per_image(c, j) for name, c in cortex.items()}
                        | {"random": {kind: torch.stack([getattr(d, kind)[j] for d in draws]).mean(0) for kind in ("deletion", "insertion")},
                           "frequency": _per_image(frequency, j)})
    fractions = [n / (run.model.grid * run.model.grid) for n in ns]
    curves = {j: {name: {kind: values.mean(0).tolist() for kind, values in kinds.items()} for name, kinds in sels.items()}
              for j, sels in per_image.items()}
    aucs = {j: {name: {kind: curve_auc(fractions, values) for kind, values in kinds.items()} for name, kinds in sels.items()}
            for j, sels in per_image.items()}
    auc = {j: {name: {kind: float(v.mean()) for kind, v in kinds.items()} for name, kinds in sels.items()} for j, sels in aucs.items()}
    auc_ci = {j: auc_comparisons(sels, list(cortex), derive_seed("image-level-auc", settings.seed), settings.bootstrap)
              for j, sels in aucs.items()}
    return ImageLevelResult(
        model=run.model.name, extractors=[i.name for i in run.extractors], judges=[j.name for j in run.judges],
        n_images=len(test.keys), ns=ns, fill=settings.fill, random_draws=settings.random_draws, probability=probability,
        accuracy=accuracy, random_spread=spread, cortex_beats_random=beats, seconds=0.0, settings=asdict(settings),
        methods=list(settings.methods), curves=curves, auc=auc, auc_ci=auc_ci, auc_range=[fractions[0], fractions[-1]],
    )


def _plot(result: ImageLevelResult, path: Path) -> Path:
    """Deletion and insertion curves, one panel per judge and kind."""
    label = {"random": "random", "frequency": "frequency baseline"}
    return plots.line_grid(
        result.ns, {f"{kind} ({'top-n masked' if kind == 'deletion' else 'all but the top n masked'})":
                    {j: {label.get(k, f"CORTEX {k.upper()}"): v[kind] for k, v in lines.items()} for j, lines in result.curves.items()}
                    for kind in ("deletion", "insertion")},
        path, xlabel="ranked tokens n", ylabel="mean P(true class)",
        title=f"{result.model}: image-level deletion and insertion ({result.fill} fill, {result.n_images} images)",
    )


# -- tables (`cortex report`, the terminal, the atlas) -----------------------------------------------------------

def tables(r: dict) -> list[TableSpec]:
    """The tables of a stored result (its JSON form)."""
    ns = r["ns"]
    show = [i for i, n in enumerate(ns) if n == 0 or n % 10 == 0] or list(range(len(ns)))
    rows = []
    for judge, methods in r["probability"].items():
        for m, ps in methods.items():
            rows.append([judge, method_label(m)] + [num(ps[i]) for i in show])
    t1 = TableSpec(f"mean P(true class) vs masked tokens n ({r['n_images']} images, {r['fill']} fill)",
                   ["judge", "selection"] + [f"n={ns[i]}" for i in show], rows)
    beats = [[j, method_label(x), pct(v)] for j, d in r["cortex_beats_random"].items() for x, v in d.items()]
    t2 = TableSpec("share of n values where CORTEX leaves a lower P than random", ["judge", "selection", "share"], beats)
    return [t1, t2] + _auc_tables(r)


def _auc_tables(r: dict) -> list[TableSpec]:
    """Deletion and insertion AUC per judge and selection, and CORTEX - random / - frequency with intervals (stored since issue 24)."""
    if not r.get("auc"):
        return []
    low, high = r.get("auc_range") or [0.0, 1.0]
    rows = [[judge, method_label(m), num(a["deletion"]), num(a["insertion"])] for judge, sels in r["auc"].items() for m, a in sels.items()]
    out = [TableSpec(f"AUC of P(true class) over n/m^2 in [{low:.3f}, {high:.3f}], divided by that range (trapezoid; {r['fill']} fill): "
                     "deletion masks the top n (lower is better), insertion masks all but the top n (higher is better)",
                     ["judge", "selection", "deletion AUC", "insertion AUC"], rows)]
    diffs, held = [], {}
    for judge, sels in r.get("auc_ci", {}).items():
        for m, others in sels.items():
            for other, c in others.items():
                diffs.append([judge, f"{method_label(m)} - {other}", f"{c['deletion']['mean']:+.3f}", interval(c["deletion"]),
                              c["deletion_verdict"], f"{c['insertion']['mean']:+.3f}", interval(c["insertion"]), c["insertion_verdict"]])
                if other == "random":
                    held.setdefault(m, []).append(c["insertion_verdict"] == "win")
    if diffs:
        n_boot = next(c["insertion"]["resamples"] for sels in r["auc_ci"].values() for o in sels.values() for c in o.values())
        yes = [method_label(m) for m, wins in held.items() if all(wins)]
        no = [method_label(m) for m, wins in held.items() if not all(wins)]
        said = (f"insertion AUC above random's with a 95% CI excluding 0 for every judge: {', '.join(yes) or 'none'}"
                + (f"; not for: {', '.join(no)}" if no else ""))
        out.append(TableSpec(f"AUC differences, paired bootstrap 95% CI over {r['n_images']} images ({n_boot} resamples); win = deletion "
                             f"CI below 0, insertion CI above 0. {said}",
                             ["judge", "comparison", "Δ deletion", "95% CI", "verdict", "Δ insertion", "95% CI", "verdict"], diffs))
    return out
