"""Concept-level evaluation (paper Table 2): mask every position whose token is in T*_concept.

T*_concept of a class: the k tokens most frequent in the per-image top-n (n = 20) TSV sets of its
indexed training images (the index is built first if needed). The frequency baseline: the k tokens
most frequent over all positions of the class's training images (no extractor). On generated test
images of each class, every position holding a token of the set is masked, and the judges score the
image before and after: accuracy, probability of the true class, ΔA, ΔP and the mean number n of
masked positions, aggregated over all classes.

A fairer column the paper lacks: the baseline cut to CORTEX's n. For each test image, the baseline
masks only as many positions as CORTEX (of that extractor) masked on it, taking the positions whose
tokens rank highest in the baseline's frequency list (ties in raster order).

`fill` masks the patches in pixels ('black', the paper's; 'mean'; 'blur') or in token space ('tokens':
each masked position refilled from its unmasked neighbours' tokens, `masking.fill_tokens`, and the
grid decoded by the model's VQGAN), so the judged image is one the decoder can produce.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Sequence

import torch

from ..models import registry as model_registry
from ..core.errors import CortexError
from ..judges.pixel_judges import judge_probabilities
from .common import EvaluationResult
from ..extractors.registry import load_extractor
from ..images.generation import ensure_images, resolve_sampler
from ..index.build import index_class
from ..judges.pixel_judges import Judge
from ..index.rankings import ImageSet, frequency_baseline, specific_baseline, top_tokens
from ..models.registry import ModelInfo
from ..attribution import SaliencySettings
from ..store.database import Store
from . import common, plots
from .masking import FILLS, Masking, mask_images, masking_of
from .metrics import MaskingEffect, masking_effect
from .tables import TableSpec, method_label, num, pct, signed_pct

KIND = "concept-level"
TITLE = "Concept level (paper Table 2): masking every token of T*_concept"
USES_JUDGES = True  # takes judge_weights

PAPER_K = 100  # the paper's k for ImageNet's 16384-token codebook
SMALL_CODEBOOK_SHARE = 1 / 16  # k for small codebooks: this share of K (k = 8 for the mini model's K = 128)


def default_k(n_embed: int) -> int:
    """The paper's k = 100, or K/16 for small codebooks (100 of the mini model's 128 tokens would mask almost all)."""
    return PAPER_K if n_embed >= 16 * PAPER_K else max(1, round(n_embed * SMALL_CODEBOOK_SHARE))


def _train_set(store: Store, model: ModelInfo, cls, n: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[str, ...]]:
    """(ids, seeds, samplers) of the class's training images of seeds 0..n-1 (default sampler)."""
    ids = ensure_images(store, model, cls, "train", n)
    return tuple(ids), tuple(range(n)), (resolve_sampler(model).label(),)


@dataclass
class ConceptLevelSettings:
    """What `cortex eval concept-level` measures."""

    k: int | None = None  # tokens per concept; None: default_k(K)
    top_n: int = 20  # per-image top-n of the index (the paper's n)
    train_images: int = 20  # indexed training images per class
    images_per_class: int = 4  # masked test images per class
    fill: str = "black"  # 'black' (the paper's), 'mean' or 'blur' patches, or 'tokens' (refilled grid, decoded)
    seed: int = 0  # saliency noise of the index
    first_seed: int = 0  # test images: seeds first_seed .. first_seed+images_per_class-1 (the index: training seeds 0..train_images-1)
    samples: int = 20  # SmoothGrad N of the index
    classes: tuple[str, ...] = ()
    batch_size: int = 16


SETTINGS = ConceptLevelSettings


def presets(quick: bool) -> dict[str, ConceptLevelSettings]:
    """The runs of `cortex eval all`: the defaults (or its quick test's tiny settings), with the paper's fill and with tokens."""
    base = ConceptLevelSettings(k=4, train_images=2, images_per_class=1, samples=2,
                                classes=common.QUICK_CLASSES) if quick else ConceptLevelSettings()
    return {KIND: base, f"{KIND} tokens": replace(base, fill="tokens")}


@dataclass(frozen=True)
class ConceptLevelResult(EvaluationResult):
    """Table 2: the judges before and after masking each selection's tokens, and the tokens of each class."""

    KIND: ClassVar[str] = KIND
    model: str
    k: int
    n_classes: int
    n_images: int
    judges: list[str]
    methods: list[str]  # 'ce', 're', 'baseline', 'baseline@ce', ...
    table: dict[str, dict[str, MaskingEffect]]  # judge -> method -> effect
    concept_tokens: dict[str, dict[str, list[int]]]  # method ('ce', 're', 'baseline') -> class name -> tokens
    seconds: float
    settings: dict = field(default_factory=dict)
    json_path: str = ""
    plot_path: str = ""
    evaluation_id: int = 0


def positions_of(tokens: torch.Tensor, token_set: Sequence[int]) -> list[int]:
    """Flat positions of a token grid whose token is in `token_set`."""
    wanted = torch.as_tensor(list(token_set), dtype=torch.long)
    return torch.isin(tokens.reshape(-1).cpu(), wanted).nonzero().flatten().tolist()


def cut_positions(tokens: torch.Tensor, ranked_tokens: Sequence[int], n: int) -> list[int]:
    """The n positions whose tokens rank highest in `ranked_tokens` (ties in raster order)."""
    rank = {int(t): i for i, t in enumerate(ranked_tokens)}
    flat = tokens.reshape(-1).tolist()
    candidates = sorted((rank[t], p) for p, t in enumerate(flat) if t in rank)
    return [p for _, p in candidates[:n]]


def run_concept_level(
    store: Store,
    model: ModelInfo,
    *,
    extractors: str = "all",
    settings: ConceptLevelSettings = ConceptLevelSettings(),
    device: torch.device | str = "cpu",
    out_dir: str | Path | None = None,
    judge_weights: str | Path | None = None,
    judges: Sequence[Judge] | None = None,
    progress: common.Progress | None = None,
) -> ConceptLevelResult:
    """Run the concept-level evaluation (Table 2), write JSON + PNG, and store the result.

    Args:
        store: the open database.
        model: the model whose images are masked.
        extractors: 'all' or comma-separated extractor names.
        settings: k, per-image top-n, training/test images, fill, seed.
        device: where models run.
        out_dir: where `concept_level.json`/`.png` go (default `$CORTEX_HOME/reports/<model>/`).
        judge_weights: extra directory of ImageNet judge weights.
        judges: judges to use instead of the model's (tests, custom judges).
        progress: progress(done, total, info=...) callback.

    Returns:
        ConceptLevelResult (also stored in the `evaluations` table).
    """
    k = _validate(settings, model)
    run = common.begin(store, model, extractors=extractors, classes=settings.classes, device=device, out_dir=out_dir,
                       progress=progress, judges=judges, judge_weights=judge_weights)
    concept_tokens = _cortex_tokens(run, settings, k) | _baseline_tokens(run, settings, k)
    ids, labels, tokens = common.test_images(store, model, run.classes, settings.images_per_class, seed=settings.first_seed,
                                             device=device, progress=run.reporter("test images"))
    names = {c.class_id: c.name for c in run.classes}
    selections: dict[str, list[list[int]]] = {}
    for method in [i.name for i in run.extractors] + ["baseline", "specific"]:
        selections[method] = [positions_of(t, concept_tokens[method][names[int(c)]]) for t, c in zip(tokens, labels)]
    for info in run.extractors:
        selections[f"baseline@{info.name}"] = [
            cut_positions(t, concept_tokens["baseline"][names[int(c)]], len(n)) for t, c, n in zip(tokens, labels, selections[info.name])
        ]
    table = _masking_effects(run, masking_of(run.decode(tokens), tokens, model.grid, settings.fill, run.decode), labels, selections)
    result = ConceptLevelResult(
        model=model.name, k=k, n_classes=len(run.classes), n_images=len(ids), judges=[j.name for j in run.judges],
        methods=list(selections), table=table, concept_tokens=concept_tokens, seconds=0.0,
        settings=asdict(settings) | {"k": k},
    )
    stem = common.result_stem(KIND, settings.fill)  # a token-filled run does not overwrite the black one
    return common.finish(run, KIND, result, _plot(result, settings.fill, run.out / f"{stem}.png"), name=stem,
                         params=common.settings_params(settings, extractors, k=k))


run = run_concept_level


def _validate(settings: ConceptLevelSettings, model: ModelInfo) -> int:
    """k (the settings' or `default_k`), or a CortexError naming the bad setting."""
    if settings.fill not in FILLS:
        raise CortexError(f"--fill must be one of {', '.join(FILLS)}, got {settings.fill!r}")
    k = settings.k if settings.k is not None else default_k(model.n_embed)
    if k < 1:
        raise CortexError(f"-k must be >= 1, got {k}")
    if settings.train_images < 1 or settings.images_per_class < 1:
        raise CortexError("--train-images and --images-per-class must be >= 1")
    return k


def _cortex_tokens(run: common.Evaluation, settings: ConceptLevelSettings, k: int) -> dict[str, dict[str, list[int]]]:
    """extractor -> class name -> T*_concept: the k tokens most frequent in its index's per-image top-n (indexed now if needed)."""
    sal = SaliencySettings(samples=settings.samples, top_n=settings.top_n, seed=settings.seed)
    concept_tokens: dict[str, dict[str, list[int]]] = {}
    total = len(run.extractors) * len(run.classes)
    done = 0
    for info in run.extractors:
        net = load_extractor(info, run.device)
        concept_tokens[info.name] = {}
        for cls in run.classes:
            run.report(done, total, f"index {info.name} / {cls.name}")
            run_id = index_class(run.store, run.model, info, cls, split="train", n_images=settings.train_images, settings=sal,
                                 device=run.device, batch_size=settings.batch_size, extractor=net).run_id
            top = top_tokens(run.store, run.model, cls, k=k, run=run_id, split="train", images=settings.train_images)
            concept_tokens[info.name][cls.name] = [r.token for r in top.rows]
            done += 1
    return concept_tokens


def _baseline_tokens(run: common.Evaluation, settings: ConceptLevelSettings, k: int) -> dict[str, dict[str, list[int]]]:
    """'baseline' (frequency) and 'specific' -> class name -> their k tokens, from the same training images.

    The extractor-free rankings read the training images of seeds 0..train_images-1; the specific one compares
    them with the same seeds of every class of the model.
    """
    store, model = run.store, run.model
    for other in model_registry.classes(store, model):
        ensure_images(store, model, other, "train", settings.train_images, device=run.device)
    baselines: dict[str, dict[str, list[int]]] = {"baseline": {}, "specific": {}}
    for cls in run.classes:
        image_set = ImageSet((cls.pk,), "train", *_train_set(store, model, cls, settings.train_images))
        baselines["baseline"][cls.name] = [r.token for r in frequency_baseline(store, model, image_set, k)]
        baselines["specific"][cls.name] = [r.token for r in specific_baseline(store, model, cls, image_set, k)[0]]
    return baselines


def _masking_effects(run: common.Evaluation, masking: Masking, labels: torch.Tensor,
                     selections: dict[str, list[list[int]]]) -> dict[str, dict[str, MaskingEffect]]:
    """judge -> selection -> the effect of masking each image's selected positions."""
    before = judge_probabilities(run.judges, masking.images)
    table: dict[str, dict[str, MaskingEffect]] = {j.name: {} for j in run.judges}
    for method, positions in selections.items():
        run.report(0, 1, f"masking {method}")
        after = judge_probabilities(run.judges, mask_images(masking, positions))
        for j in run.judges:
            table[j.name][method] = masking_effect(before[j.name], after[j.name], labels, [len(p) for p in positions])
    return table


def _plot(result: ConceptLevelResult, fill: str, path: Path) -> Path:
    """ΔA and ΔP of every selection, per judge."""
    table = result.table
    return plots.bar_panels(
        list(table),
        {
            "ΔA (accuracy change)": {m: [table[j][m].delta_acc for j in table] for m in result.methods},
            "ΔP (probability change)": {m: [table[j][m].delta_p for j in table] for m in result.methods},
        },
        path, ylabel="after masking - before",
        title=f"{result.model}: concept-level masking (k={result.k}, {fill} fill, {result.n_images} test images)",
    )


# -- tables (`cortex report`, the terminal, the atlas) -----------------------------------------------------------

def tables(r: dict) -> list[TableSpec]:
    """Before-numbers per judge, then one row per judge x selection (fits 80 columns)."""
    before, rows = [], []
    for judge, cells in r["table"].items():
        first = next(iter(cells.values()))
        before.append([judge, pct(first["acc"]), num(first["p"])])
        for m in r["methods"]:
            e = cells[m]
            rows.append([judge, method_label(m), num(e["mean_n"], 1), signed_pct(e["delta_acc"]), num(e["delta_p"])])
    scope = f"k={r['k']} tokens per concept, {r['n_classes']} classes, {r['n_images']} test images, {r.get('settings', {}).get('fill', 'black')} fill"
    return [
        TableSpec(f"before masking ({scope})", ["judge", "Acc", "P"], before),
        TableSpec("after masking every position whose token is in the selection (n = mean positions masked)",
                  ["judge", "selection", "n", "ΔA", "ΔP"], rows),
    ]
