"""Concept-level questions answered in SQL (GROUP BY in the database, never all rows in Python).

- `top_tokens`: T*_concept, the k tokens occurring most often in the per-image top-n sets of a class
  (paper §3.3 eq. 6, "Freq"), beside an extractor-free baseline over the same images: the paper's
  frequency baseline (most frequent tokens over all positions) or a stronger one, the tokens most
  specific to the class (smoothed P(class | token) over the same seeds of every class).
- `token_usage`: which classes use a token most, as a salient token and as a plain occurrence.

Both read one saliency run (`pick_run`: the newest run of the extractor that covers the class) and
count exactly one set of images: the run's indexed images of the split, or seeds 0..N-1 with
`images=N`; results say how many images they counted. Occurrence counts over a chosen set are read
from the images' token grids; `token_usage` over a whole run reads the run's own counts
(`store/run_counts.py`), which are added once per indexed image and so cover exactly that set.
Ranks are 1-based; ties are broken by the smaller token (or class) id.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from typing import Any, Sequence

import numpy as np

from ..attribution import method_named
from ..core.errors import CortexError
from ..core.results import Result
from ..extractors.registry import get_extractor
from ..models.registry import ClassInfo, ModelInfo, classes
from ..models.subjects import Subject, SubjectLike
from ..store import images as image_store
from ..store import index as index_store
from ..store import queries as query_store
from ..store import run_counts
from ..store.database import Store
from ..store.index import RunInfo  # re-exported: runs are read in store/index.py
from ..models.targets import BINARY, CLASS, UNION_RULES


@dataclass
class TokenRow:
    """One token of T*_concept."""

    rank: int
    token: int
    count: int  # occurrences in the per-image top-n sets
    n_images: int  # images whose top-n contains the token
    mean_tsv: float


@dataclass
class BaselineRow:
    """One token of the frequency baseline (all positions of all images, no extractor)."""

    rank: int
    token: int
    count: int
    n_images: int
    score: float | None = None  # 'specific': smoothed P(class | token)


@dataclass(frozen=True)
class TopTokensResult(Result):
    """`cortex top-tokens`: the concept's salient tokens, optionally beside the baseline."""

    model: str
    class_id: int | None  # None for a named concept
    class_name: str  # the class's name, or the concept's
    extractor: str
    run_id: int
    split: str
    k: int
    images_indexed: int  # images counted (exactly these: seeds `image_seeds` of the split)
    rows: list[TokenRow]
    image_seeds: str = ""  # the counted images' seeds, as ranges ('0-19')
    baseline_kind: str | None = None  # 'frequency' or 'specific'
    baseline: list[BaselineRow] | None = None
    baseline_images: int | None = None  # images counted by the baseline (the same images as the rows)
    contrast_classes: int | None = None  # 'specific': classes compared (every class of the model)
    contrast_images: int | None = None  # 'specific': images of all classes counted
    overlap: int | None = None  # tokens in both lists
    overlap_fraction: float | None = None  # overlap / len(rows)
    jaccard: float | None = None
    target: str = "class"  # what the run explains (`targets`)
    concept: str | None = None  # a named concept: its name, and its member classes (their images are counted together)
    members: list[str] | None = None



    def table_rows(self) -> list[dict[str, Any]]:
        """One row per rank: the salient token, and the baseline's token of that rank when there is a baseline."""
        base = self.baseline or []
        rows = []
        for i in range(max(len(self.rows), len(base))):
            r = self.rows[i] if i < len(self.rows) else None
            row: dict[str, Any] = {"rank": i + 1, "token": r.token if r else None, "count": r.count if r else None,
                                   "n_images": r.n_images if r else None, "mean_tsv": r.mean_tsv if r else None}
            if self.baseline_kind:
                b = base[i] if i < len(base) else None
                row |= {"baseline_token": b.token if b else None, "baseline_count": b.count if b else None,
                        "baseline_n_images": b.n_images if b else None}
            rows.append(row)
        return rows

@dataclass
class ClassUsage:
    """How much one class uses a token."""

    class_rank: int  # rank of this class among classes using the token
    class_id: int
    class_name: str
    count: int
    n_images: int
    token_rank: int  # rank of the token within this class's list (1 = its most used token)


@dataclass(frozen=True)
class TokenUsage(Result):
    """`cortex token`: classes that use a token most."""

    model: str
    token: int
    extractor: str | None
    run_id: int | None
    split: str
    salient: list[ClassUsage]  # from the saliency index (empty if nothing indexed)
    occurrence: list[ClassUsage]  # plain occurrences over the same images
    images_counted: int = 0  # images of all classes both views count



    def table_rows(self) -> list[dict[str, Any]]:
        """One row per class and view ('salient' from the index, 'occurrence' over the same images)."""
        return [{"view": view, **dataclasses.asdict(u)} for view, usages in (("salient", self.salient), ("occurrence", self.occurrence))
                for u in usages]

def extractor_id(store: Store, model: ModelInfo, name: str) -> int:
    """The id of a model's extractor by name; CortexError (with what to run) if there is none."""
    return get_extractor(store, model, name).id


def runs(store: Store, model: ModelInfo, extractor: str | None = None) -> list[RunInfo]:
    """Saliency runs of a model, newest first (optionally of one extractor)."""
    return index_store.runs(store, model.id, extractor_id(store, model, extractor) if extractor is not None else None)


def _index_hint(about: Subject | None, extractor: str | None) -> str:
    target = f"'{about.name}'" if about is not None else "<class>"
    ext = f" --extractor {extractor}" if extractor else ""
    return f"run `cortex index --class {target}{ext}` first"


def pick_run(store: Store, model: ModelInfo, about: SubjectLike | None = None, *, extractor: str | None = None,
             run: int | None = None, method: str | None = None) -> RunInfo:
    """The run to read: `run` if given, else the newest run (of `extractor`, of attribution `method`) that covers `about`.

    A class is read from runs that explain each image's class ('class' target), a concept from runs of
    its own target (`run_targets`); a given `run` is read whatever it explains.

    Raises:
        CortexError: the extractor does not exist, or nothing (of this class or concept) is indexed yet.
    """
    candidates = runs(store, model, extractor)
    if method is not None:
        method_named(method)  # an unknown name lists the known ones
        candidates = [r for r in candidates if r.method == method]
        extractor = f"{extractor or 'ce'} --method {method}"  # for the hint
    if run is not None:
        chosen = [r for r in candidates if r.id == run]
        if not chosen:
            raise CortexError(f"saliency run {run} does not exist for model {model.name!r}")
        return chosen[0]
    if about is None:
        candidates = [r for r in candidates if r.target == CLASS]
        if not candidates:
            raise CortexError(f"nothing is indexed yet for model {model.name!r}; {_index_hint(None, extractor)}")
        return candidates[0]
    about = Subject.of(about)
    wanted = run_targets(about, binary=extractor is not None)
    candidates = [r for r in candidates if r.target in wanted]
    covering = query_store.first_run_with_class(store, [r.id for r in candidates], about.class_pks)
    if covering is not None:
        return next(r for r in candidates if r.id == covering)
    raise CortexError(f"{about.kind} {about.name!r} is not indexed yet; {_index_hint(about, extractor)}")


def run_targets(about: Subject, *, binary: bool = False) -> set[str]:
    """The run targets that explain a class (each image's class logit, 'class') or a concept: its union scores read off a
    class extractor, and ('binary') an extractor's own concept score when that extractor is named."""
    if about.is_class:
        return {CLASS}
    keys = {about.target(rule).key for rule in UNION_RULES}
    return keys | {BINARY} if binary else keys


@dataclass(frozen=True)
class ImageSet:
    """Exactly which images of a class (or of a concept's classes) a count uses (class, then seed order)."""

    class_pks: tuple[int, ...]
    split: str
    ids: tuple[int, ...]
    seeds: tuple[int, ...]
    samplers: tuple[str, ...]  # the distinct sampler labels of these images

    def __len__(self) -> int:
        return len(self.ids)


def run_images(store: Store, run: RunInfo, about: SubjectLike, split: str, images: int | None = None) -> ImageSet:
    """The `split` images of a class (a concept: of each member) indexed under `run`; with `images`, exactly seeds 0..images-1.

    Raises:
        CortexError: nothing indexed, or fewer than `images` of the requested seeds are indexed (of some member).
    """
    if images is not None and images < 1:
        raise CortexError(f"--images must be >= 1, got {images}")
    about = Subject.of(about)
    hint = f"run `cortex index --class '{about.name}' --extractor {run.extractor} --split {split}"
    found: list[tuple[int, int, str]] = []
    for member in about.members:
        mine = query_store.run_class_images(store, run.id, member.pk, split, below_seed=images)
        of = "" if about.is_class else f" (member {member.name!r})"
        if not mine:
            raise CortexError(f"{about.name!r}{of} has no indexed {split} images in run {run.id}; {hint}` first")
        have = len({seed for _, seed, _ in mine})
        if images is not None and have < images:
            raise CortexError(f"only {have} of the {split} seeds 0..{images - 1} of {about.name!r}{of} are indexed in run {run.id}; "
                              f"{hint} --images {images}` first")
        found += mine
    return ImageSet(tuple(about.class_pks), split, tuple(int(i) for i, _, _ in found), tuple(int(sd) for _, sd, _ in found),
                    tuple(sorted({str(sm) for _, _, sm in found})))


def token_counts_of(store: Store, model: ModelInfo, image_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(K,) occurrences of every token over exactly these images, and (K,) how many of them hold it."""
    grids = list(_token_grids(store, model, image_ids))
    if not grids:
        return np.zeros(model.n_embed, dtype=np.int64), np.zeros(model.n_embed, dtype=np.int64)
    ordered = np.sort(np.stack(grids), axis=1)  # (images, m*m): a token's first place in its sorted row marks one holder
    first = np.ones(ordered.shape, dtype=bool)
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    counts = np.bincount(ordered.ravel(), minlength=model.n_embed)
    holders = np.bincount(ordered[first], minlength=model.n_embed)
    return counts, holders


def _token_grids(store: Store, model: ModelInfo, image_ids: Sequence[int]):
    """Flat token arrays of the given images, read in chunks (order not guaranteed)."""
    dtype = "<u2" if model.n_embed <= 65536 else "<i4"
    for blob in image_store.iter_token_blobs(store, image_ids):
        yield np.frombuffer(blob, dtype=dtype).astype(np.int64)


def frequency_baseline(store: Store, model: ModelInfo, image_set: ImageSet, k: int) -> list[BaselineRow]:
    """The paper's baseline: the k tokens occurring most often over all positions of exactly these images."""
    counts, holders = token_counts_of(store, model, image_set.ids)
    present = np.flatnonzero(counts)
    order = present[np.lexsort((present, -counts[present]))][:k]  # by count, then the smaller token id
    return [BaselineRow(i + 1, int(t), int(counts[t]), int(holders[t])) for i, t in enumerate(order)]


@dataclass
class Contrast:
    """The images a class-specificity score compares against: the same seeds of every class."""

    classes: int
    images: int


def specificity(store: Store, model: ModelInfo, about: SubjectLike, image_set: ImageSet
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Contrast]:
    """(K,) smoothed P(class | token), the class's (K,) counts and (K,) holders, and the contrast.

    Counts come from the same seeds (and sampler) of every class of the model, so the score is
    P̂(c | t) = (n_c(t) + 1) / (sum_c' n_c'(t) + C): a token used by this class alone scores near 1,
    one spread evenly over all classes near 1/C. A concept counts as one class made of its members
    (C = the other classes + 1). `about` names whose images `image_set` holds (its classes are `image_set.class_pks`).

    Raises:
        CortexError: some class lacks images of these seeds (with the command that makes them).
    """
    every = classes(store, model)
    wanted = set(image_set.seeds)
    by_class: dict[int, list[int]] = {c.pk: [] for c in every}
    for pk, image_id in image_store.images_of_seeds(store, model.id, image_set.split, image_set.samplers, sorted(wanted)):
        by_class[pk].append(image_id)
    lacking = [c for c in every if len(by_class[c.pk]) < len(wanted)]
    if lacking:
        names = ", ".join(repr(c.name) for c in lacking[:3]) + (" ..." if len(lacking) > 3 else "")
        raise CortexError(
            f"the specific baseline compares the same {image_set.split} seeds of every class; {len(lacking)} class(es) lack them "
            f"({names}); run `cortex index --class all --images {max(wanted) + 1} --split {image_set.split}` first"
        )
    own, own_holders = token_counts_of(store, model, image_set.ids)
    mine = set(image_set.class_pks)
    total = own.copy()
    for c in every:
        if c.pk not in mine:
            total += token_counts_of(store, model, by_class[c.pk])[0]
    groups = len(every) - len(mine) + 1
    score = (own + 1) / (total + groups)
    return score, own, own_holders, Contrast(len(every), sum(len(v) for v in by_class.values()))


def specific_baseline(store: Store, model: ModelInfo, about: SubjectLike, image_set: ImageSet, k: int
                      ) -> tuple[list[BaselineRow], Contrast]:
    """The k tokens most specific to the class or concept (`specificity`), among those it uses; no extractor.

    Ties go to the larger count, then the smaller token id.
    """
    score, own, holders, contrast = specificity(store, model, about, image_set)
    order = sorted((t for t in range(model.n_embed) if own[t] > 0), key=lambda t: (-score[t], -own[t], t))[:k]
    return [BaselineRow(i + 1, t, int(own[t]), int(holders[t]), round(float(score[t]), 6)) for i, t in enumerate(order)], contrast


BASELINES = ("frequency", "specific")


def top_tokens(
    store: Store,
    model: ModelInfo,
    about: SubjectLike,
    *,
    extractor: str | None = None,
    k: int = 100,
    baseline: str | None = None,
    run: int | None = None,
    split: str = "train",
    images: int | None = None,
    method: str | None = None,
) -> TopTokensResult:
    """T*_concept of a class or a named concept: the k tokens most frequent in its images' top-n sets.

    A concept's images are its members' images indexed under a run of its own target (`pick_run`); all of them
    are counted together, with `images`=N meaning seeds 0..N-1 of every member.

    Args:
        store: the open database.
        model, about: the model and the class or named concept.
        extractor: read the newest run of this extractor ('ce', 're', ...); None: any extractor's newest.
        k: how many tokens (the paper uses 100).
        baseline: also rank tokens without an extractor over the same images: 'frequency' (the
            paper's: most frequent over all positions) or 'specific' (P(class | token)).
        run: read this saliency run id instead.
        split: which images of the class to count.
        images: count exactly seeds 0..images-1; None: every image of the class the run indexed.
        method: read the newest run of this attribution method ('smoothgrad', 'gradient', ...); None: any.

    Returns:
        TopTokensResult (rows ordered by count, then token id) with the number of images counted.

    Raises:
        CortexError: k <= 0, unknown baseline or extractor, or the images are not indexed yet.
    """
    if k <= 0:
        raise CortexError(f"-k must be a positive number of tokens, got {k}")
    if baseline is not None and baseline not in BASELINES:
        raise CortexError(f"--baseline must be one of {', '.join(BASELINES)}, got {baseline!r}")
    about = Subject.of(about)
    chosen = pick_run(store, model, about, extractor=extractor, run=run, method=method)
    image_set = run_images(store, chosen, about, split, images)
    found = query_store.top_salient_tokens(store, chosen.id, image_set.class_pks, image_set.ids, k)
    rows = [TokenRow(i + 1, t, n, ni, m) for i, (t, n, ni, m) in enumerate(found)]
    result = TopTokensResult(model.name, about.class_id, about.name, chosen.extractor, chosen.id, split, k,
                             len(image_set), rows, image_seeds=_seed_ranges(image_set.seeds), target=chosen.target,
                             concept=about.concept_name, members=None if about.is_class else [m.name for m in about.members])
    if baseline is not None:
        if baseline == "frequency":
            base, contrast = frequency_baseline(store, model, image_set, k), None
        else:
            base, contrast = specific_baseline(store, model, about, image_set, k)
        ours, theirs = {r.token for r in rows}, {r.token for r in base}
        both, union = len(ours & theirs), len(ours | theirs)
        result = dataclasses.replace(
            result, baseline_kind=baseline, baseline=base, baseline_images=len(image_set),
            contrast_classes=contrast.classes if contrast else None, contrast_images=contrast.images if contrast else None,
            overlap=both, overlap_fraction=both / len(ours) if ours else 0.0, jaccard=both / union if union else 0.0,
        )
    return result


def _seed_ranges(seeds: Sequence[int]) -> str:
    """'0-19' or '0-9,12' for a sorted list of seeds."""
    parts: list[str] = []
    unique = sorted(set(seeds))
    i = 0
    while i < len(unique):
        j = i
        while j + 1 < len(unique) and unique[j + 1] == unique[j] + 1:
            j += 1
        parts.append(str(unique[i]) if i == j else f"{unique[i]}-{unique[j]}")
        i = j + 1
    return ",".join(parts)

def _rank_within(per_class: dict[int, dict[int, int]], token: int) -> dict[int, int]:
    """class -> 1 + tokens counted more often than `token` in that class (ties: smaller id first)."""
    ranks = {}
    for pk, counts in per_class.items():
        mine = counts.get(token, 0)
        ranks[pk] = 1 + sum(1 for t, n in counts.items() if n > mine or (n == mine and t < token))
    return ranks


def _token_usage_from_counts(
    store: Store, model: ModelInfo, token: int, top: int, chosen: RunInfo, split: str, by_pk: dict[int, ClassInfo]
) -> TokenUsage:
    """`token_usage` over every image the run indexed, from the run's counts (milliseconds at 20M rows)."""
    def usage(view: str) -> list[ClassUsage]:
        found = run_counts.classes_using(store, chosen.id, split, token, top, view)
        return [ClassUsage(i + 1, c.class_id, by_pk[c.class_pk].name, c.count, c.images, c.token_rank) for i, c in enumerate(found)]

    return TokenUsage(model.name, token, chosen.extractor, chosen.id, split, usage("salient"), usage("occurrence"),
                      images_counted=run_counts.images_indexed(store, chosen.id, split))


def token_usage(
    store: Store,
    model: ModelInfo,
    token: int,
    *,
    top: int = 20,
    extractor: str | None = None,
    run: int | None = None,
    split: str = "train",
    images: int | None = None,
) -> TokenUsage:
    """Which classes use `token` most, as a salient token (index) and as a plain occurrence.

    Both views count the same images: those the run indexed (of `split`; with `images`, only seeds
    0..images-1). Without any run, the occurrence view counts every stored image of the split.

    Args:
        store: the open database.
        model: the model whose codebook the token belongs to.
        token: a codebook index in [0, K).
        top: how many classes to list for each view.
        extractor: read the newest run of this extractor; None: the newest run of any.
        run: read this saliency run id instead.
        split: which images to count.
        images: restrict to seeds 0..images-1 of every class.

    Returns:
        TokenUsage; `salient` is empty when nothing is indexed yet.

    Raises:
        CortexError: token out of range, top or images <= 0, unknown extractor or run.
    """
    if not 0 <= token < model.n_embed:
        raise CortexError(f"token {token} is outside model {model.name!r}'s codebook (0..{model.n_embed - 1})")
    if top <= 0:
        raise CortexError(f"--top must be a positive number of classes, got {top}")
    if images is not None and images < 1:
        raise CortexError(f"--images must be >= 1, got {images}")
    by_pk = {c.pk: c for c in classes(store, model)}
    chosen: RunInfo | None
    try:
        chosen = pick_run(store, model, None, extractor=extractor, run=run)
    except CortexError:
        if extractor is not None or run is not None:
            raise
        chosen = None
    if chosen is not None and images is None:
        return _token_usage_from_counts(store, model, token, top, chosen, split, by_pk)
    salient: list[ClassUsage] = []
    image_ids: dict[int, list[int]] = {}
    for image_id, pk in query_store.split_images(store, model.id, split, below_seed=images, run_id=chosen.id if chosen else None):
        image_ids.setdefault(pk, []).append(image_id)
    if chosen is not None:
        per_class: dict[int, dict[int, int]] = {}
        holders: dict[int, int] = {}
        for pk, t, n, ni in query_store.salient_pair_counts(store, chosen.id, model.id, split, below_seed=images):
            per_class.setdefault(pk, {})[t] = n
            if t == token:
                holders[pk] = ni
        using = sorted((pk for pk, c in per_class.items() if token in c), key=lambda pk: (-per_class[pk][token], by_pk[pk].class_id))[:top]
        ranks = _rank_within({pk: per_class[pk] for pk in using}, token)
        salient = [
            ClassUsage(i + 1, by_pk[pk].class_id, by_pk[pk].name, per_class[pk][token], holders[pk], ranks[pk])
            for i, pk in enumerate(using)
        ]
    occurrence_counts: dict[int, dict[int, int]] = {}
    occurrence_holders: dict[int, int] = {}
    for pk, ids in image_ids.items():
        counts, holders_of = token_counts_of(store, model, ids)
        if counts[token] > 0:
            occurrence_counts[pk] = {int(t): int(counts[t]) for t in np.flatnonzero(counts)}
            occurrence_holders[pk] = int(holders_of[token])
    using = sorted(occurrence_counts, key=lambda pk: (-occurrence_counts[pk][token], by_pk[pk].class_id))[:top]
    ranks = _rank_within({pk: occurrence_counts[pk] for pk in using}, token)
    occurrence = [
        ClassUsage(i + 1, by_pk[pk].class_id, by_pk[pk].name, occurrence_counts[pk][token], occurrence_holders[pk], ranks[pk])
        for i, pk in enumerate(using)
    ]
    return TokenUsage(
        model.name, token, chosen.extractor if chosen else None, chosen.id if chosen else None, split, salient, occurrence,
        images_counted=sum(len(v) for v in image_ids.values()),
    )
