"""Generation: sample class-conditional token grids into the store (idempotent), optionally as PNGs.

An image row is identified by (model, class, split, seed, sampler). Its tokens come from
`VQGM.sample` with its own generator keyed by (`derive_seed(seed, split)`, class id)
(`backends.base.image_generators`): so train/val/test images of the same seed differ, and every
image is the same whatever the batch size or how many were asked for.
Each batch is committed in one transaction together with the class's `token_counts`, so an
interrupted run loses at most the batch in flight and a rerun adds only what is missing.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from . import model_registry
from .backends.base import VQGM, SamplerSettings, image_generators, to_pil
from .distributed import DistContext, Shard
from .errors import CortexError
from .results import Result
from .progress import Progress, report
from .environment import writable_dir
from .pngmeta import read_png, save_png
from .model_registry import ClassInfo, ModelInfo
from .seeding import derive_seed, image_key
from .store import images as image_store
from .store.database import Store
from .tokens import pack_tokens, unpack_tokens

SPLITS = ("train", "val", "test")



@dataclass(frozen=True)
class GenerationResult(Result):
    """What `generate` did: rows added, rows already there, and where everything is."""

    model: str
    class_id: int
    class_name: str
    split: str
    sampler: str  # SamplerSettings.label(), part of each row's identity
    requested: int
    added: int
    skipped: int  # rows that already existed (not sampled again)
    image_ids: list[int]  # in seed order
    png_paths: list[str]  # in seed order; empty without out_dir


def validate_sampler(settings: SamplerSettings) -> SamplerSettings:
    """The settings, or a CortexError naming the bad value."""
    if settings.top_k is not None and settings.top_k < 1:
        raise CortexError(f"top-k must be >= 1 (or 0 for no top-k), got {settings.top_k}")
    if not 0.0 < settings.top_p <= 1.0:
        raise CortexError(f"top-p must be in (0, 1], got {settings.top_p}")
    if not settings.temperature > 0.0:
        raise CortexError(f"temperature must be > 0, got {settings.temperature}")
    if settings.guidance is not None and not settings.guidance >= 1.0:
        raise CortexError(f"guidance scale must be >= 1 (1: none), got {settings.guidance}")
    return settings


def default_sampler(vqgm: VQGM) -> SamplerSettings:
    """The model's default sampler, as its backend states it (validated).

    taming: the config's optional section `cortex: {sampler: {top_k, top_p, temperature}}` (the
    bundled mini model has one), else top-k 600, top-p 0.92, temperature 1.0 (taming's setting for
    its ImageNet model) with top-k capped at K; janus: classifier-free guidance 5, temperature 1.
    """
    return validate_sampler(vqgm.default_sampler())


def resolve_sampler(
    model: ModelInfo,
    top_k: int | None = None,
    top_p: float | None = None,
    temperature: float | None = None,
    device: torch.device | str = "cpu",
) -> SamplerSettings:
    """The model's default sampler with any given value overridden (top_k 0: no top-k)."""
    base = default_sampler(model_registry.load_model(model, device))
    settings = SamplerSettings(
        top_k=base.top_k if top_k is None else (top_k or None),
        top_p=base.top_p if top_p is None else top_p,
        temperature=base.temperature if temperature is None else temperature,
        greedy=base.greedy,
        guidance=base.guidance,
    )
    return validate_sampler(settings)


def class_slug(name: str) -> str:
    """'water ouzel' -> 'water-ouzel' (file-name safe)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "class"


def png_name(cls: ClassInfo, split: str, seed: int) -> str:
    return f"{class_slug(cls.name)}_{split}_{seed}.png"


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise CortexError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")


def _existing(store: Store, model: ModelInfo, cls: ClassInfo, split: str, label: str, seeds: list[int]) -> dict[int, tuple[int, bytes]]:
    """seed -> (image id, token blob) of rows already stored for these seeds."""
    return image_store.stored_seeds(store, image_store.ImageGroup(model.id, cls.pk, split, label), seeds)


def _token_statistics(tokens: torch.Tensor, n_embed: int) -> dict[int, tuple[int, int]]:
    """token -> (occurrences over all positions, number of images containing it) for a batch."""
    flat = tokens.reshape(tokens.shape[0], -1).cpu().long()
    per_image = torch.stack([torch.bincount(row, minlength=n_embed) for row in flat])
    counts, present = per_image.sum(0), (per_image > 0).sum(0)
    return {int(t): (int(counts[t]), int(present[t])) for t in torch.nonzero(counts).flatten()}


def _store_batch(
    store: Store, model: ModelInfo, cls: ClassInfo, split: str, label: str, seeds: list[int], tokens: torch.Tensor
) -> tuple[dict[int, int], dict[int, tuple[int, bytes]]]:
    """Insert one batch of rows and their token counts in one transaction.

    Rows another process stored meanwhile are kept as they are and left out of the counts.
    Returns (seed -> id of the rows inserted here, seed -> (id, tokens) of the rows found stored).
    """
    grids = dict(zip(seeds, tokens))

    def stats_of(inserted: list[int]) -> dict[int, tuple[int, int]]:
        return _token_statistics(torch.stack([grids[seed] for seed in inserted]), model.n_embed)

    blobs = {seed: pack_tokens(grid, model.n_embed) for seed, grid in grids.items()}
    return image_store.insert_images(store, image_store.ImageGroup(model.id, cls.pk, split, label), blobs, stats_of)


def _write_pngs(vqgm: VQGM, model: ModelInfo, cls: ClassInfo, split: str, label: str, out_dir: Path,
                items: list[tuple[int, int, torch.Tensor]]) -> dict[int, str]:
    """Decode and save (seed, image id, tokens) items; files already holding these tokens are kept."""
    paths: dict[int, str] = {}
    todo = []
    for seed, image_id, grid in items:
        path = out_dir / png_name(cls, split, seed)
        paths[seed] = str(path)
        if path.is_file():
            try:
                found = read_png(path)
                if found.model_name == model.name and found.tokens is not None and torch.equal(found.tokens, grid.cpu()):
                    continue
            except CortexError:
                pass  # a damaged file is rewritten
        todo.append((seed, image_id, grid, path))
    if todo:
        images = vqgm.decode_tokens(torch.stack([g for _, _, g, _ in todo]))
        for (seed, image_id, grid, path), pil in zip(todo, to_pil(images)):
            meta = {"image_id": image_id, "class_id": cls.class_id, "class_name": cls.name, "split": split, "seed": seed, "sampler": label}
            save_png(pil, path, grid, model.name, meta, n_embed=model.n_embed)
    return paths


def _prepare_out_dir(out_dir: Path) -> Path:
    return writable_dir(out_dir, "PNGs to")


def check_request(n: int, *, split: str = "train", batch_size: int = 16, out_dir: Path | None = None, seed: int = 0) -> Path | None:
    """Validate generation arguments before any work; returns out_dir (created, writable) or None.

    Raises:
        CortexError: n <= 0, a negative first seed, batch_size <= 0, an unknown split, or an unwritable out_dir.
    """
    if n <= 0:
        raise CortexError(f"-n must be a positive number of images, got {n}")
    if seed < 0:
        raise CortexError(f"--first-seed must be >= 0 (image seeds are 0, 1, 2, ...), got {seed}")
    if batch_size <= 0:
        raise CortexError(f"batch size must be positive, got {batch_size}")
    _check_split(split)
    return _prepare_out_dir(out_dir) if out_dir is not None else None


def generate(
    store: Store,
    model: ModelInfo,
    cls: ClassInfo,
    n: int,
    *,
    split: str = "train",
    seed: int = 0,
    batch_size: int = 16,
    sampler: SamplerSettings | None = None,
    out_dir: Path | None = None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    shard: Shard | None = None,
) -> GenerationResult:
    """Sample `n` token grids of class `cls` into the store (seeds seed .. seed+n-1), skipping stored ones.

    Args:
        store: the open database.
        model, cls: the registered model and one of its classes.
        n: number of images (> 0).
        split: 'train', 'val' or 'test' (part of each image's identity and of its random stream).
        seed: the first image seed; image i uses seed + i.
        batch_size: images per forward pass and per database transaction (does not change tokens).
        sampler: top-k / top-p / temperature; None uses `default_sampler` of the model.
        out_dir: if given, also write '<class-slug>_<split>_<seed>.png' with token metadata for all
            n images (stored ones are decoded from their stored tokens).
        device: where the model runs.
        progress: called as progress(images done, images of this call, info).
        shard: only the seeds of this shard (a torchrun rank's blocks of seeds, `distributed.Shard`); None: all n.
            The result then covers those seeds only (`requested` = how many).

    Returns:
        GenerationResult (image ids and PNG paths in seed order).

    Raises:
        CortexError: n <= 0, bad split/batch size/sampler, unwritable out_dir.
    """
    out_dir = check_request(n, split=split, batch_size=batch_size, out_dir=out_dir, seed=seed)
    vqgm = model_registry.load_model(model, device)
    sampler = validate_sampler(sampler if sampler is not None else default_sampler(vqgm))
    label = sampler.label()
    seeds = list(range(seed, seed + n))
    if shard is not None:
        seeds = shard.select(seeds, offset=cls.class_id)
    n = len(seeds)
    existing = _existing(store, model, cls, split, label, seeds)
    ids = {s: image_id for s, (image_id, _) in existing.items()}
    tokens_by_seed = {s: unpack_tokens(blob, model.n_embed, model.grid) for s, (_, blob) in existing.items()}
    skipped = len(existing)
    missing = [s for s in seeds if s not in existing]
    done = skipped
    report(progress, done, n)
    added = 0
    paths: dict[int, str] = {}
    for start in range(0, len(missing), batch_size):
        batch = missing[start:start + batch_size]
        classes = [cls] * len(batch)
        grids = vqgm.sample(classes, image_generators(classes, [derive_seed(s, split) for s in batch]), sampler).cpu()
        # another process may have stored some of these seeds meanwhile: theirs are kept
        new_ids, theirs = _store_batch(store, model, cls, split, label, batch, grids)
        added += len(new_ids)
        skipped += len(theirs)
        for s, (image_id, blob) in theirs.items():
            new_ids[s] = image_id
            grids[batch.index(s)] = unpack_tokens(blob, model.n_embed, model.grid)
        ids.update(new_ids)
        tokens_by_seed.update(zip(batch, grids))
        if out_dir is not None:
            paths.update(_write_pngs(vqgm, model, cls, split, label, out_dir, [(s, ids[s], tokens_by_seed[s]) for s in batch]))
        done += len(batch)
        report(progress, done, n)
    png_paths: list[str] = []
    if out_dir is not None:
        # rows that were already stored get their PNG from the stored tokens
        items = [(s, ids[s], tokens_by_seed[s]) for s in seeds if s not in paths]
        for start in range(0, len(items), batch_size):
            paths.update(_write_pngs(vqgm, model, cls, split, label, out_dir, items[start:start + batch_size]))
        png_paths = [paths[s] for s in seeds]
    return GenerationResult(
        model=model.name, class_id=cls.class_id, class_name=cls.name, split=split, sampler=label,
        requested=n, added=added, skipped=skipped, image_ids=[ids[s] for s in seeds], png_paths=png_paths,
    )


def ensure_images(
    store: Store,
    model: ModelInfo,
    cls: ClassInfo,
    split: str,
    n: int,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    shard: Shard | None = None,
) -> list[int]:
    """Ids of n images of `cls`/`split` (seeds seed .. seed+n-1, or the shard's of them; default sampler), generating missing ones."""
    return generate(store, model, cls, n, split=split, seed=seed, device=device, progress=progress, shard=shard).image_ids


def _check_found(model: ModelInfo, image_ids: list[int], found: dict[int, object]) -> None:
    """CortexError naming the ids that are not images of `model`."""
    absent = [i for i in dict.fromkeys(int(i) for i in image_ids) if i not in found]
    if absent:
        shown = ", ".join(map(str, absent[:5])) + (" ..." if len(absent) > 5 else "")
        raise CortexError(f"image id(s) {shown} are not images of model {model.name!r}; run `cortex generate` first")


def image_tokens(store: Store, model: ModelInfo, image_ids: list[int]) -> torch.Tensor:
    """Token grids (B x m x m, LongTensor) of stored images, in the given order.

    Raises:
        CortexError: an id is not an image of `model`.
    """
    blobs = image_store.token_blobs(store, model.id, image_ids)
    _check_found(model, image_ids, blobs)
    if not blobs:
        return torch.empty(0, model.grid, model.grid, dtype=torch.long)
    return torch.stack([unpack_tokens(blobs[int(i)], model.n_embed, model.grid) for i in image_ids])


def list_images(store: Store, model: ModelInfo, cls: ClassInfo | None, split: str | None) -> list[tuple[int, int, int]]:
    """(image id, class id, seed) of a model's stored images, optionally of one class/split, by id."""
    if split is not None:
        _check_split(split)
    return image_store.list_images(store, model.id, cls.pk if cls is not None else None, split)


def image_keys(store: Store, model: ModelInfo, image_ids: list[int]) -> list[int]:
    """The identity key (`seeding.image_key`) of each stored image, in the given order.

    Random streams of an image (saliency noise, masking orders) are keyed by this, never by the
    row id, so the same image draws the same noise in any database.

    Raises:
        CortexError: an id is not an image of `model`.
    """
    rows = image_store.identities(store, model.id, image_ids)
    _check_found(model, image_ids, rows)
    found = {i: image_key(model.name, r.class_id, r.split, r.seed, r.sampler) for i, r in rows.items()}
    return [found[int(i)] for i in image_ids]


def merge_ranks(dist: DistContext, result: GenerationResult, seeds: list[int], block: int) -> GenerationResult:
    """The torchrun job's result from every rank's: counts summed, ids and PNG paths back in seed order.

    Each rank generated `dist.shard(seeds, block, offset=class id)`, the dealing `generate` uses with `shard`.
    """
    if not dist.distributed:
        return result
    added, skipped = dist.all_reduce_counts([result.added, result.skipped])
    mine = dist.shard(seeds, block, offset=result.class_id)
    parts = dist.all_gather((dict(zip(mine, result.image_ids)), dict(zip(mine, result.png_paths))))
    ids = {s: i for part, _ in parts for s, i in part.items()}
    paths = {s: p for _, part in parts for s, p in part.items()}
    return dataclasses.replace(
        result, requested=len(seeds), added=int(added), skipped=int(skipped), image_ids=[ids[s] for s in seeds],
        png_paths=[paths[s] for s in seeds] if paths else [],
    )
