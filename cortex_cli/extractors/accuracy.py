"""Extractor data and accuracy: splits of generated token grids, logits through the codebook, Table 1."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..models import registry as model_registry
from ..core.errors import CortexError
from ..images.generation import ensure_images, image_tokens
from ..core.progress import Progress, report
from ..core.results import Result
from ..models.registry import ClassInfo, ModelInfo
from ..store.database import Store
from .architectures import count_parameters
from .registry import ExtractorInfo, list_extractors, load_extractor

TABLE1_KS = (1, 3, 5, 10)


@dataclass
class SplitData:
    """The token grids (N x m x m, int32) and labels (class ids) of one split, in class then seed order.

    A concept's split (`load_concept_split`) has labels 0 (not the concept) and 1 (the concept), and `classes`
    holds each image's class id.
    """

    split: str
    tokens: torch.Tensor
    labels: torch.Tensor
    image_ids: list[int]
    classes: torch.Tensor | None = None  # each image's class id where `labels` are not class ids

    def __len__(self) -> int:
        return len(self.image_ids)


def load_split(
    store: Store, model: ModelInfo, split: str, per_class: int, *, seed: int = 0,
    device: torch.device | str = "cpu", progress: Progress | None = None, classes: Sequence[ClassInfo] | None = None,
) -> SplitData:
    """`per_class` generated images of every class of `model` (or of `classes`) in `split` (generating missing ones).

    Args:
        split: 'train', 'val' or 'test'.
        per_class: images per class (image seeds seed .. seed+per_class-1).
        seed: first image seed.
        device: where missing images are sampled.
        progress: called as progress(images ready, total, info).
        classes: only these classes (a subset extractor's); None: every class of the model.

    Returns:
        SplitData on the CPU.
    """
    if per_class < 1:
        raise CortexError(f"images per class must be positive, got {per_class} for the {split} split")
    classes = list(classes) if classes is not None else model_registry.classes(store, model)
    if not classes:
        raise CortexError(f"model {model.name!r} has no classes; register it with labels (`cortex models add --labels ...`)")
    total = per_class * len(classes)
    ids: list[int] = []
    labels: list[int] = []
    for i, cls in enumerate(classes):
        done_before = i * per_class

        def class_progress(done: int, _n: int, info: str = "", _base: int = done_before, _name: str = cls.name) -> None:
            report(progress, _base + done, total, f"{split} images: {_name}")

        got = ensure_images(store, model, cls, split, per_class, seed=seed, device=device, progress=class_progress)
        ids += got
        labels += [cls.class_id] * len(got)
    tokens = image_tokens(store, model, ids).to(torch.int32)
    return SplitData(split, tokens, torch.tensor(labels, dtype=torch.long), ids)


def concept_counts(per_member: int, members: Sequence[ClassInfo], others: Sequence[ClassInfo]) -> list[tuple[ClassInfo, int]]:
    """How many images of each class a concept's balanced split takes: `per_member` of each member (Y), and as many
    not-Y images in all, spread evenly over the other classes in class-id order (the first `n_Y mod n_other` of them
    take one more; a class that would take none is left out).

    Raises:
        CortexError: no member, or no class outside the concept (nothing is not-Y).
    """
    if per_member < 1:
        raise CortexError(f"images per class must be positive, got {per_member}")
    if not members:
        raise CortexError("a concept's split needs at least one member class")
    if not others:
        raise CortexError("every class of the model is a member of the concept: no image is not the concept")
    base, extra = divmod(per_member * len(members), len(others))
    ordered = sorted(others, key=lambda c: c.class_id)
    negatives = [(cls, base + (1 if i < extra else 0)) for i, cls in enumerate(ordered)]
    return [(cls, per_member) for cls in sorted(members, key=lambda c: c.class_id)] + [(c, n) for c, n in negatives if n]


def load_concept_split(
    store: Store, model: ModelInfo, split: str, per_member: int, member_ids: Sequence[int], *, seed: int = 0,
    device: torch.device | str = "cpu", progress: Progress | None = None,
) -> SplitData:
    """A concept's balanced binary split: `per_member` generated images of each member class (label 1) and as many
    images of the model's other classes (label 0), spread by `concept_counts`; missing images are generated.

    Each class's images are its image seeds seed, seed+1, ... (the same images a class extractor trains on), so
    they are keyed by (model, class, split, seed, sampler) like every generated image.

    Returns:
        SplitData on the CPU, members first, with `classes` (each image's class id).
    """
    wanted = {int(c) for c in member_ids}
    classes = model_registry.classes(store, model)
    missing = sorted(wanted - {c.class_id for c in classes})
    if missing:
        raise CortexError(f"model {model.name!r} has no class {missing[0]}; `cortex models list --all-classes` lists its classes")
    plan = concept_counts(per_member, [c for c in classes if c.class_id in wanted], [c for c in classes if c.class_id not in wanted])
    total, done = sum(n for _, n in plan), 0
    ids: list[int] = []
    class_ids: list[int] = []
    for cls, n in plan:
        def class_progress(got: int, _n: int, info: str = "", _base: int = done, _name: str = cls.name) -> None:
            report(progress, _base + got, total, f"{split} images: {_name}")

        got = ensure_images(store, model, cls, split, n, seed=seed, device=device, progress=class_progress)
        ids += got
        class_ids += [cls.class_id] * len(got)
        done += n
    tokens = image_tokens(store, model, ids).to(torch.int32)
    owners = torch.tensor(class_ids, dtype=torch.long)
    labels = torch.tensor([int(c in wanted) for c in class_ids], dtype=torch.long)
    return SplitData(split, tokens, labels, ids, owners)


def embed_batch(vqgm: Any, tokens: torch.Tensor) -> torch.Tensor:
    """E for a batch of token grids, through the model's codebook (never stored)."""
    with torch.no_grad():
        return vqgm.embed(tokens.long()).float()


@torch.no_grad()
def extractor_logits(net: torch.nn.Module, vqgm: Any, tokens: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits (N x classes, CPU) of an extractor in eval mode for token grids (N x m x m)."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    outs = [net(embed_batch(vqgm, chunk).to(device)).float().cpu() for chunk in tokens.split(batch_size)]
    net.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0, 0)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = TABLE1_KS) -> dict[str, float]:
    """Fraction of rows whose label is among the k highest logits, for each k (the paper's Table 1).

    Args:
        logits: N x C scores.
        labels: N class indices.
        ks: the k values; k >= C counts every row as correct.

    Returns:
        {'top1': ..., 'top3': ..., ...} in [0, 1].
    """
    if logits.ndim != 2 or labels.ndim != 1 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits must be N x C and labels N, got {tuple(logits.shape)} and {tuple(labels.shape)}")
    n, c = logits.shape
    if n == 0:
        raise ValueError("topk_accuracy needs at least one row")
    order = logits.topk(min(max(ks), c), dim=1).indices
    hits = order == labels.view(-1, 1)
    return {f"top{k}": int(hits[:, :min(k, c)].any(dim=1).sum()) / n for k in ks}


def binary_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """A concept extractor's accuracy (output 1 = the concept) on N x 2 logits and 0/1 labels.

    Returns:
        {'binary': all rows, 'y': the concept's rows, 'not_y': the other rows}, each the fraction called right
        (NaN for a side with no row).
    """
    if logits.ndim != 2 or logits.shape[-1] != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"binary accuracy needs N x 2 logits and N labels, got {tuple(logits.shape)} and {tuple(labels.shape)}")
    if labels.numel() == 0:
        raise ValueError("binary_accuracy needs at least one row")
    right = (logits.argmax(1) == labels).float()

    def mean(mask: torch.Tensor) -> float:
        return float(right[mask].mean()) if bool(mask.any()) else float("nan")

    return {"binary": float(right.mean()), "y": mean(labels == 1), "not_y": mean(labels == 0)}


@dataclass
class ExtractorScore:
    """One row of Table 1: an extractor's top-k accuracy on the test split (a concept extractor: its binary accuracy)."""

    name: str
    arch: str
    n_params: int
    n_images: int
    accuracy: dict[str, float] = field(default_factory=dict)  # top1/top3/top5/top10 in [0, 1]; a concept's: binary/y/not_y
    per_class_top1: dict[str, float] = field(default_factory=dict)  # class name -> top-1 (a concept's: called Y or not-Y right)
    classes: list[str] = field(default_factory=list)  # a subset's classes or a concept's members, by class id; empty: all
    concept: str = ""  # the concept a concept extractor was trained for (2 outputs: not-Y, Y); empty: a class extractor


def score_extractor(
    store: Store, model: ModelInfo, info: ExtractorInfo, data: SplitData, *, device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> ExtractorScore:
    """Table-1 accuracies of one registered extractor on `data` (a subset extractor: among its own classes only; a
    concept extractor: its binary accuracy on a `load_concept_split`)."""
    net = load_extractor(info, device)
    logits = extractor_logits(net, model_registry.load_model(model, device), data.tokens, batch_size)
    names = {c.class_id: c.name for c in model_registry.classes(store, model)}
    if info.config.concept is not None:
        if data.classes is None:
            raise ValueError(f"concept extractor {info.name!r} is scored on a concept's split (load_concept_split)")
        right = logits.argmax(1) == data.labels
        per_class = {names[int(c)]: float(right[data.classes == c].float().mean()) for c in data.classes.unique()}
        return ExtractorScore(info.name, info.arch, count_parameters(net), len(data), binary_accuracy(logits, data.labels), per_class,
                              [names.get(c, str(c)) for c in info.config.concept_class_ids or ()], info.config.concept)
    own = info.config.class_ids
    if own is not None:
        if not set(data.labels.tolist()) <= set(own):
            raise ValueError(f"extractor {info.name!r} is scored on images of classes it was not trained on")
        logits = logits[:, own]  # rank among its own classes only; column i is class own[i]
    labels = torch.searchsorted(torch.tensor(own), data.labels) if own is not None else data.labels
    acc = topk_accuracy(logits, labels)
    pred = logits.argmax(1)
    per_class = {names[int(cid)]: float((pred[labels == out] == out).float().mean())
                 for cid, out in zip(data.labels.unique(), labels.unique())}
    return ExtractorScore(info.name, info.arch, count_parameters(net), len(data), acc, per_class,
                          [names.get(c, str(c)) for c in own or ()])


def require_extractors(store: Store, model: ModelInfo) -> list[ExtractorInfo]:
    """The extractors of `model`, or a CortexError saying how to train one."""
    infos = list_extractors(store, model)
    if not infos:
        raise CortexError(f"model {model.name!r} has no extractor; run `cortex train-extractor --model {model.name} --arch ce` first")
    return infos


def test_extractors(
    store: Store, model: ModelInfo, *, per_class: int | None = None, seed: int | None = None,
    device: torch.device | str = "cpu", progress: Progress | None = None,
) -> list[ExtractorScore]:
    """Table 1 for every registered extractor of `model` on the test split.

    A concept extractor is scored on its concept's balanced test split (`load_concept_split`, `per_class` images of each
    member and as many of the other classes): its binary accuracy, not a top-k one.

    Args:
        per_class: test images per class; None uses each extractor's training setting (default 50).
        seed: first test-image seed; None uses each extractor's data seed (default 0).
        device: where to run.
        progress: called as progress(done, total, info) while test images are generated.

    Returns:
        One ExtractorScore per extractor, by name.

    Raises:
        CortexError: the model has no extractor.
    """
    infos = require_extractors(store, model)
    cache: dict[tuple[int, int, tuple[int, ...] | None, bool], SplitData] = {}
    scores = []
    for info in infos:
        n = per_class or int(info.hparams.get("test_per_class", 50))
        s = int(info.hparams.get("data_seed", 0)) if seed is None else seed
        concept = info.config.concept_class_ids if info.config.concept is not None else None
        own = concept if concept is not None else info.config.class_ids
        ids = tuple(own) if own is not None else None  # a subset's classes' images; a concept's members' and as many others
        key = (n, s, ids, concept is not None)
        if key not in cache:
            if concept is not None:
                cache[key] = load_concept_split(store, model, "test", n, concept, seed=s, device=device, progress=progress)
            else:
                subset = [c for c in model_registry.classes(store, model) if c.class_id in ids] if ids is not None else None
                cache[key] = load_split(store, model, "test", n, seed=s, device=device, progress=progress, classes=subset)
        scores.append(score_extractor(store, model, info, cache[key], device=device))
    return scores


@dataclass(frozen=True)
class TrainedExtractor(Result):
    """`train_extractor`: the training run and, with `bundle=True`, the files shipped in the package."""

    model: str
    result: Any  # extractors.TrainResult
    bundled: list[str]


@dataclass(frozen=True)
class ExtractorTests(Result):
    """`test_extractors`: the paper's Table 1, top-k accuracy of every registered extractor on the test split (a concept
    extractor's binary accuracy on its balanced test split)."""

    model: str
    split: str
    extractors: list[Any]  # extractors.ExtractorScore

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per extractor: its images and top-1/3/5/10 accuracy (a concept extractor: its binary accuracy)."""
        return [{"extractor": s.name, "arch": s.arch, "classes": f"concept {s.concept}" if s.concept else len(s.classes) or "all",
                 "images": s.n_images, **s.accuracy} for s in self.extractors]
