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

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from . import model_registry
from .distributed import DistContext, Shard
from .errors import CortexError
from .results import Result
from .progress import Progress, report
from .extractors.registry import load_extractor
from .generation import ensure_images, image_keys, image_tokens
from .index_writer import CommitPolicy, IndexWriter
from .model_registry import ClassInfo, ModelInfo
from .attribution import SaliencySettings, prepare_extractor, token_saliency
from .store import index as index_store
from .store.database import Store
from .targets import Target



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


def write_batch(
    store: Store, run_id: int, class_pk: int, image_ids: Sequence[int], tokens: torch.Tensor, tsv: torch.Tensor, top_n: int
) -> None:
    """Write one batch (maps, top-n rows and the run's token counts) in one transaction, now."""
    index_store.write_index(store, run_id, [index_rows(class_pk, image_ids, tokens, tsv, top_n)])


def index_class(
    store: Store,
    model: ModelInfo,
    extractor_info: Any,
    cls: ClassInfo,
    *,
    split: str = "train",
    n_images: int = 100,
    settings: SaliencySettings = SaliencySettings(),
    device: torch.device | str = "cpu",
    batch_size: int = 16,
    progress: Progress | None = None,
    extractor: nn.Module | None = None,
    image_seed: int = 0,
    generation_progress: Progress | None = None,
    shard: Shard | None = None,
    commit: CommitPolicy = CommitPolicy(),
    target: Target = Target(),
    concept: str | None = None,
) -> IndexResult:
    """Index the first `n_images` generated images of a class (generating missing ones first).

    Args:
        store: the open database.
        model: the registered model whose images are explained.
        extractor_info: the extractor's registry entry (`.id`, `.name`); loaded unless `extractor` is given.
        cls: the class whose images are indexed; its logit (`cls.class_id`) is the saliency target unless `target` says otherwise.
        split: which generated split to index.
        n_images: how many images (seeds image_seed .. image_seed+n-1) to cover.
        settings: saliency parameters; they identify the run.
        device: where the extractor runs.
        batch_size: images per saliency batch (the transactions are sized by `commit`).
        progress: called with (images done, total, info) at the start and after every committed transaction
            (from the writer thread).
        extractor: an already loaded f_Y (tests, benchmarks); None loads `extractor_info`.
        image_seed: first generation seed.
        generation_progress: progress of generating missing images, if any.
        shard: only the images whose seed is in this shard (a torchrun rank's blocks, `distributed.Shard`);
            None: all. Counts in the result are then this shard's.
        commit: when the writer thread commits (images or seconds of work, whichever first).
        target: what is explained (`targets.Target`): each image's class logit, or a concept's score; part of the run key.
        concept: the concept name reported with the result (the class is one of its members).

    Returns:
        IndexResult with counts and speed.

    Raises:
        CortexError: bad settings or sizes, or a missing model/extractor file.
    """
    settings.validate()
    if n_images < 1:
        raise CortexError(f"--images must be >= 1, got {n_images}")
    if batch_size < 1:
        raise CortexError(f"--batch-size must be >= 1, got {batch_size}")
    device = torch.device(device)
    image_ids = ensure_images(store, model, cls, split, n_images, seed=image_seed, device=device, progress=generation_progress,
                              shard=shard)
    run_id = ensure_run(store, model, extractor_info.id, settings, target)
    done = indexed_image_ids(store, run_id, image_ids)
    todo = [i for i in image_ids if i not in done]
    total, finished = len(image_ids), len(image_ids) - len(todo)
    report(progress, finished, total)
    start = time.perf_counter()
    if todo:
        if extractor is None:
            from .extractors.registry import load_extractor

            extractor = load_extractor(extractor_info, device)
        extractor = prepare_extractor(target.explained(extractor))
        vqgm = model_registry.load_model(model, device)
        codebook = vqgm.codebook  # integrated-gradients reads it for its codebook-mean baseline
        committed = [finished]

        def on_commit(images: int) -> None:
            committed[0] += images
            report(progress, committed[0], total)

        with IndexWriter(store, run_id, commit, on_commit=on_commit) as writer:
            for b in range(0, len(todo), batch_size):
                ids = todo[b:b + batch_size]
                tokens = _load_tokens(store, model, ids)
                with torch.no_grad():
                    emb = vqgm.embed(tokens)
                tsv = token_saliency(extractor, emb, target.per_image([cls.class_id] * len(ids)), image_keys(store, model, ids), settings, codebook=codebook)
                writer.put(index_rows(cls.pk, ids, tokens, tsv, settings.top_n))
    seconds = time.perf_counter() - start
    return IndexResult(
        model=model.name, extractor=extractor_info.name, run_id=run_id, class_id=cls.class_id, class_name=cls.name,
        split=split, images=total, added=len(todo), skipped=total - len(todo), seconds=round(seconds, 3),
        images_per_s=round(len(todo) / seconds, 2) if todo and seconds > 0 else 0.0,
        settings=settings.as_dict(), target=target.key, concept=concept,
    )


def index_classes(
    store: Store,
    model: ModelInfo,
    extractor_info: Any,
    classes: Sequence[ClassInfo],
    *,
    progress_for: Callable[[ClassInfo], Progress | None] | None = None,
    **kwargs: Any,
) -> list[IndexResult]:
    """`index_class` over several classes (`--class all`), loading the extractor once."""
    if "extractor" not in kwargs or kwargs["extractor"] is None:
        kwargs["extractor"] = load_extractor(extractor_info, torch.device(kwargs.get("device", "cpu")))
    return [
        index_class(store, model, extractor_info, cls, progress=progress_for(cls) if progress_for else None, **kwargs)
        for cls in classes
    ]


def merge_ranks(dist: DistContext, results: Sequence[IndexResult]) -> list[IndexResult]:
    """The torchrun job's per-class results from every rank's: images, added and skipped summed, time the slowest rank's."""
    if not dist.distributed:
        return list(results)
    counts = dist.all_reduce_counts([v for r in results for v in (r.images, r.added, r.skipped)])
    seconds = dist.all_reduce_counts([float(r.seconds) for r in results], op="max")
    merged = []
    for i, r in enumerate(results):
        images, added, skipped = (int(v) for v in counts[3 * i:3 * i + 3])
        secs = float(seconds[i])
        merged.append(dataclasses.replace(r, images=images, added=added, skipped=skipped, seconds=round(secs, 3),
                                          images_per_s=round(added / secs, 2) if added and secs > 0 else 0.0))
    return merged


__all__ = [
    "CommitPolicy", "IndexResult", "ensure_run", "index_class", "index_classes", "index_rows", "indexed_image_ids", "merge_ranks",
    "pack_tsv", "unpack_tsv",
    "write_batch",
]
