"""The token index: saliency over a class's generated images, written to the store batch by batch.

One `saliency_runs` row per parameter set (extractor and `SaliencySettings.run_key()`: method, its parameters,
n, reduction, precision).
Finished batches go to a writer thread (`index_writer`) while the next batch is computed; each
transaction holds a few hundred images or about a second of work, whichever comes first: their full
TSV maps (`saliency_maps`, float32 m*m blobs), top-n rows (`salient_tokens`) and the run's counts,
so a kill loses at most about a second of work; a rerun
skips images already indexed under the run and inserts with ON CONFLICT DO NOTHING, so no row is
ever written twice. An image's saliency noise is keyed by its identity (model, class, split, seed,
sampler), never by its row id, so the index does not depend on what the database held before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..models import registry as model_registry
from ..core.distributed import DistContext
from ..core.errors import CortexError
from ..core.results import Result
from ..core.progress import Progress, named, report
from ..extractors.registry import get_extractor, load_extractor
from ..images.generation import Request, generate_requests, image_keys, image_tokens
from .writer import CommitPolicy, IndexWriter
from ..models.registry import ClassInfo, ModelInfo
from ..attribution import SaliencySettings, prepare_extractor, token_saliency
from ..store import index as index_store
from ..store.database import Store
from ..extractors.subsets import require_classes
from ..models.subjects import Names, Subject, index_target, subjects
from ..models.targets import BINARY, DEFAULT_RULE, Target



@dataclass(frozen=True)
class IndexResult(Result):
    """What `index_class` did for one class."""

    model: str
    extractor: str
    run_id: int
    class_id: int
    class_name: str
    split: str
    images: int  # images of the class covered by the run after this call
    added: int  # images indexed by this call
    skipped: int  # images already indexed under the run
    seconds: float
    images_per_s: float
    settings: dict[str, Any] = field(default_factory=dict)
    target: str = "class"  # what the run explains (`targets.Target.key`)
    concept: str | None = None  # the concept these images were indexed for (the class is one of its members)


def pack_tsv(tsv: torch.Tensor) -> bytes:
    """An m x m TSV map -> little-endian float32 bytes (raster order)."""
    return np.ascontiguousarray(tsv.detach().float().cpu().numpy().reshape(-1), dtype="<f4").tobytes()


def unpack_tsv(blob: bytes, grid: int) -> torch.Tensor:
    """bytes -> float32 (m x m) TSV map."""
    arr = np.frombuffer(blob, dtype="<f4")
    if arr.size != grid * grid:
        raise ValueError(f"TSV blob holds {arr.size} values, expected {grid * grid}")
    return torch.from_numpy(arr.copy()).reshape(grid, grid)


def ensure_run(store: Store, model: ModelInfo, extractor_id: int, settings: SaliencySettings, target: Target = Target()) -> int:
    """The id of the saliency run with these parameters and this target (created on first use)."""
    return index_store.ensure_run(store, model.id, index_store.RunKey(extractor_id=extractor_id, **settings.run_key(), target=target.key))


def indexed_image_ids(store: Store, run_id: int, image_ids: Sequence[int]) -> set[int]:
    """Which of `image_ids` already have a TSV map under `run_id`."""
    return index_store.indexed_image_ids(store, run_id, image_ids)


def _load_tokens(store: Store, model: ModelInfo, image_ids: Sequence[int]) -> torch.Tensor:
    return image_tokens(store, model, list(image_ids))


def index_rows(class_pk: int, image_ids: Sequence[int], tokens: torch.Tensor, tsv: torch.Tensor, top_n: int) -> index_store.IndexRows:
    """A batch's finished saliency as the rows the index stores: full maps, top-n rows (ties: lower position first)."""
    grid = tsv.shape[-1]
    flat_tsv = tsv.detach().float().cpu().reshape(tsv.shape[0], -1)
    grids = tokens.detach().cpu().reshape(tokens.shape[0], -1).numpy()
    n = min(top_n, grid * grid)
    values, order = torch.sort(flat_tsv, dim=1, descending=True, stable=True)
    positions = order[:, :n].numpy()
    top = np.take_along_axis(grids, positions, axis=1)
    ids = np.asarray([int(i) for i in image_ids], dtype=np.int64)
    return index_store.IndexRows(
        class_pk=class_pk, image_ids=ids, maps=[pack_tsv(row) for row in flat_tsv], grids=grids, top=top,
        salient_image_ids=np.repeat(ids, n), ranks=np.tile(np.arange(n), len(ids)), positions=positions.reshape(-1),
        tokens=top.reshape(-1), tsv=values[:, :n].numpy().reshape(-1),
    )


def default_batch_size(device: torch.device | str) -> int:
    """Images per saliency batch when the caller names none: 256 on an accelerator (with N = 20 that is five
    chunks of `attribution.default_chunk`'s 1024 noisy copies, so the device never waits on a small batch),
    16 on a CPU (a bigger batch gains nothing there). It does not change any map."""
    return 16 if torch.device(device).type == "cpu" else 256


@dataclass(frozen=True)
class IndexJob:
    """One class's images to index under one target (`targets.Target`); `concept` names the concept it is a member of."""

    cls: ClassInfo
    target: Target = Target()
    concept: str | None = None


def _checked_batch_size(settings: SaliencySettings, n_images: int, device: torch.device | str, batch_size: int | None) -> int:
    """The saliency batch size, after the arguments are checked."""
    settings.validate()
    if n_images < 1:
        raise CortexError(f"--images must be >= 1, got {n_images}")
    batch_size = default_batch_size(device) if batch_size is None else batch_size
    if batch_size < 1:
        raise CortexError(f"--batch-size must be >= 1, got {batch_size}")
    return batch_size


def _dealt(todo_of: list[list[int]], batch_size: int, rank: int, world: int) -> dict[int, list[list[tuple[int, int]]]]:
    """Job -> this rank's batches of (job, image id). Batches are formed within a class (each class's writer commits
    when it closes, so a kill loses little) and dealt to the ranks over the whole job: batch b of every class's
    batches in job order goes to rank b mod W."""
    every = [[(j, image_id) for image_id in todo[i:i + batch_size]] for j, todo in enumerate(todo_of) for i in range(0, len(todo), batch_size)]
    dealt = every[rank::world]
    return {j: [batch for batch in dealt if batch[0][0] == j] for j in range(len(todo_of))}


def _index_dealt(store: Store, model: ModelInfo, extractor: nn.Module, jobs: Sequence[IndexJob], runs: list[int],
                 mine: dict[int, list[list[tuple[int, int]]]], settings: SaliencySettings, device: torch.device,
                 commit: CommitPolicy, progress: Progress | None, total: int) -> list[int]:
    """Explain this rank's batches, job by job, each job's rows written by its run's writer thread; images added per job."""
    added = [0] * len(jobs)
    vqgm = model_registry.load_model(model, device)
    codebook = vqgm.codebook  # integrated-gradients reads it for its codebook-mean baseline
    committed = [0]

    def on_commit(images: int) -> None:
        committed[0] += images
        report(progress, committed[0], total)

    def explain(explained: nn.Module, target: Target, batch: list[tuple[int, int]], writer: IndexWriter) -> None:
        ids = [image_id for _, image_id in batch]
        tokens = _load_tokens(store, model, ids)
        with torch.no_grad():
            emb = vqgm.embed(tokens)
        tsv = token_saliency(explained, emb, target.per_image([jobs[j].cls.class_id for j, _ in batch]),
                             image_keys(store, model, ids), settings, codebook=codebook)
        for j in dict.fromkeys(j for j, _ in batch):  # each job's rows to its run's writer
            rows = [k for k, (owner, _) in enumerate(batch) if owner == j]
            writer.put(index_rows(jobs[j].cls.pk, [ids[k] for k in rows], tokens[rows], tsv[rows], settings.top_n))
            added[j] += len(rows)

    explained_by: dict[str, nn.Module] = {}
    for j, batches in mine.items():
        if not batches:
            continue
        target = jobs[j].target
        if target.key not in explained_by:
            explained_by[target.key] = prepare_extractor(target.explained(extractor))
        with IndexWriter(store, runs[j], commit, on_commit=on_commit) as writer:
            for batch in batches:
                explain(explained_by[target.key], target, batch, writer)
    return added


def index_jobs(
    store: Store,
    model: ModelInfo,
    extractor_info: Any,
    jobs: Sequence[IndexJob],
    *,
    split: str = "train",
    n_images: int = 100,
    settings: SaliencySettings = SaliencySettings(),
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    progress: Progress | None = None,
    extractor: nn.Module | None = None,
    image_seed: int = 0,
    generation_progress: Progress | None = None,
    dist: DistContext | None = None,
    commit: CommitPolicy = CommitPolicy(),
) -> list[IndexResult]:
    """Index the first `n_images` generated images of every job's class, in batches dealt by image.

    Missing images of all classes are generated first, as one job dealt by image (`generation.generate_requests`).
    The images not yet indexed under their run then form saliency batches class by class (each class's writer
    commits when it closes; each image is keyed by its identity, so its map does not depend on its batch), and
    the job's batches, in job order, are dealt to torchrun ranks in turn (batch b to rank b mod W: the batches
    of one process), after every rank has read what is indexed; every result covers the whole job.

    Args:
        store: the open database.
        model: the registered model whose images are explained.
        extractor_info: the extractor's registry entry (`.id`, `.name`); loaded unless `extractor` is given.
        jobs: the classes and what is explained for each (their targets are part of the run keys).
        split: which generated split to index.
        n_images: how many images per class (seeds image_seed .. image_seed+n-1) to cover.
        settings: saliency parameters; they identify the run.
        device: where the extractor runs.
        batch_size: images per saliency batch (the transactions are sized by `commit`); None: `default_batch_size`.
        progress: called with (images done by this rank, its images, info) at the start and after every committed
            transaction (from the writer thread).
        extractor: an already loaded f_Y (tests, benchmarks); None loads `extractor_info`.
        image_seed: first generation seed.
        generation_progress: progress of generating missing images, if any.
        dist: the torchrun context (None or one rank: all the work here).
        commit: when the writer thread commits (images or seconds of work, whichever first).

    Returns:
        One IndexResult per job, with counts over the whole job and this call's speed.

    Raises:
        CortexError: bad settings or sizes, or a missing model/extractor file.
    """
    batch_size = _checked_batch_size(settings, n_images, device, batch_size)
    device = torch.device(device)
    rank, world = (dist.rank, dist.world_size) if dist is not None and dist.distributed else (0, 1)
    seeds = tuple(range(image_seed, image_seed + n_images))
    classes = list({job.cls.pk: job.cls for job in jobs}.values())
    generated = generate_requests(store, model, [Request(cls, split, seeds) for cls in classes], device=device,
                                  progress=generation_progress, dist=dist)
    ids_of = {cls.pk: result.image_ids for cls, result in zip(classes, generated)}
    runs = [ensure_run(store, model, extractor_info.id, settings, job.target) for job in jobs]
    todo_of = []
    for job, run_id in zip(jobs, runs):
        done = indexed_image_ids(store, run_id, ids_of[job.cls.pk])
        todo_of.append([i for i in ids_of[job.cls.pk] if i not in done])
    if dist is not None:
        dist.barrier()  # every rank deals the same list
    mine = _dealt(todo_of, batch_size, rank, world)
    total = sum(len(batch) for batches in mine.values() for batch in batches)
    report(progress, 0, total)
    added = [0] * len(jobs)
    start = time.perf_counter()
    if total:
        extractor = load_extractor(extractor_info, device) if extractor is None else extractor
        added = _index_dealt(store, model, extractor, jobs, runs, mine, settings, device, commit, progress, total)
    seconds = time.perf_counter() - start
    if dist is not None and dist.distributed:
        added = [int(a) for a in dist.all_reduce_counts(added)]
        seconds = float(dist.all_reduce_counts([seconds], op="max")[0])
    done_now = sum(added)
    return [IndexResult(
        model=model.name, extractor=extractor_info.name, run_id=run_id, class_id=job.cls.class_id, class_name=job.cls.name,
        split=split, images=len(ids_of[job.cls.pk]), added=added[j], skipped=len(ids_of[job.cls.pk]) - added[j], seconds=round(seconds, 3),
        images_per_s=round(done_now / seconds, 2) if done_now and seconds > 0 else 0.0,
        settings=settings.as_dict(), target=job.target.key, concept=job.concept,
    ) for j, (job, run_id) in enumerate(zip(jobs, runs))]


def index_class(store: Store, model: ModelInfo, extractor_info: Any, cls: ClassInfo, *, target: Target = Target(),
                concept: str | None = None, **kwargs: Any) -> IndexResult:
    """`index_jobs` of one class (see there for the arguments)."""
    return index_jobs(store, model, extractor_info, [IndexJob(cls, target, concept)], **kwargs)[0]




def index_subjects(
    store: Store,
    model: ModelInfo,
    extractor_info: Any,
    about: Sequence[Subject],
    settings: SaliencySettings,
    *,
    score: str = DEFAULT_RULE,
    split: str = "train",
    n_images: int = 100,
    image_seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    progress: Progress | None = None,
    generation_progress: Progress | None = None,
    dist: DistContext | None = None,
) -> list[IndexResult]:
    """Index image seeds `image_seed .. +n_images-1` of every class of `about` (a named concept: each member, explaining the
    concept's score `score` in a run of that target): checks, one run row per target, then `index_jobs`.

    Raises:
        CortexError: a bad count or seed, or a class the extractor was not trained on.
    """
    if n_images < 1:
        raise CortexError(f"--images must be >= 1, got {n_images}")
    if image_seed < 0:
        raise CortexError(f"--first-seed must be >= 0 (image seeds are 0, 1, 2, ...), got {image_seed}")
    jobs = [IndexJob(member, index_target(extractor_info, item, score), item.concept_name) for item in about for member in item.members]
    # a subset extractor's classes only; before generating (an extractor trained for the concept reads no class logit)
    require_classes(extractor_info, [job.cls.class_id for job in jobs if job.target.rule != BINARY])
    net = load_extractor(extractor_info, device)
    dist = dist or DistContext(device=torch.device(device))
    for target in {job.target.key: job.target for job in jobs}.values():  # one rank creates each run row
        dist.main_first(lambda target=target: ensure_run(store, model, extractor_info.id, settings, target))
    return index_jobs(store, model, extractor_info, jobs, split=split, n_images=n_images, image_seed=image_seed, settings=settings,
                      device=device, batch_size=batch_size, progress=progress, extractor=net, generation_progress=generation_progress,
                      dist=dist)


def index_named(store: Store, model: ModelInfo, extractor: str | None, classes: Names, settings: SaliencySettings, *,
                progress: Progress | None = None, **job: Any) -> list[IndexResult]:
    """`index_subjects` of what `classes` names (`subjects.subjects`: a named concept stays the concept, one run of its
    target) with the registered extractor `extractor` (None: 'ce'); `progress` notes lead with 'saliency', or with
    'generating missing images' while those are made. `job`: the rest of `index_subjects`'s keywords.

    Raises:
        CortexError: an unknown extractor, class or concept, and whatever `index_subjects` refuses.
    """
    extractor_info = get_extractor(store, model, extractor)
    about = subjects(store, model, classes)
    return index_subjects(store, model, extractor_info, about, settings, progress=named(progress, "saliency"),
                          generation_progress=named(progress, "generating missing images"), **job)


__all__ = [
    "CommitPolicy", "IndexJob", "IndexResult", "ensure_run", "index_class", "index_jobs", "index_named", "index_rows", "index_subjects",
    "indexed_image_ids", "pack_tsv", "unpack_tsv",
]
