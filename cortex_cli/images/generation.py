"""Generation: sample class-conditional token grids into the store (idempotent), optionally as PNGs.

An image row is identified by (model, class, split, seed, sampler). Its tokens come from
`VQGM.sample` with its own random stream (`backends.base.image_streams`): the philox sampler's key
(model, class, split, seed), or the older host sampler's generator; so train/val/test images of the
same seed differ, and every image is the same whatever its batch, the batch size, the other classes in
the batch, the rank count or how many were asked for. Batches are dealt by image across classes and
splits (`generate_requests`).
Each batch is committed in one transaction together with the class's `token_counts`, so an
interrupted run loses at most the batch in flight and a rerun adds only what is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..models import registry as model_registry
from ..backends.base import VQGM, SamplerSettings, image_streams, to_pil
from ..core.distributed import DistContext
from ..core.errors import CortexError, NotFound
from ..core.results import Result
from ..core.progress import Progress, named, report
from ..core.environment import writable_dir
from .pngmeta import read_png, save_png
from ..models.registry import ClassInfo, ModelInfo
from ..core.seeding import image_key
from ..store import images as image_store
from ..store.database import Store
from .token_blobs import pack_tokens, unpack_tokens

SPLITS = ("train", "val", "test")
SAMPLERS = ("philox", "host")  # the GPU-native sampler with identity-keyed device noise; the older host-noise sampler
PRECISIONS = ("fp32", "bf16")



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
    if settings.noise not in SAMPLERS:
        raise CortexError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {settings.noise!r}")
    if settings.precision not in PRECISIONS:
        raise CortexError(f"--precision must be one of {', '.join(PRECISIONS)}, got {settings.precision!r}")
    if settings.noise == "host" and settings.precision != "fp32":
        raise CortexError("the host sampler (older stores' images) samples in fp32 only; use --sampler philox for bf16")
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
    *,
    noise: str | None = None,
    precision: str | None = None,
    guidance: float | None = None,
) -> SamplerSettings:
    """The model's default sampler with any given value overridden (top_k 0: no top-k; noise: `--sampler`;
    guidance: the classifier-free guidance scale, `--cfg-scale`, 1 meaning none)."""
    base = default_sampler(model_registry.load_model(model, device))
    if guidance is not None and guidance < 1.0:
        raise CortexError(f"--cfg-scale must be >= 1 (1: no classifier-free guidance), got {guidance:g}")
    settings = SamplerSettings(
        top_k=base.top_k if top_k is None else (top_k or None),
        top_p=base.top_p if top_p is None else top_p,
        temperature=base.temperature if temperature is None else temperature,
        greedy=base.greedy,
        guidance=base.guidance if guidance is None else (None if guidance == 1.0 else guidance),
        noise=base.noise if noise is None else noise,
        precision=base.precision if precision is None else precision,
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


@dataclass(frozen=True)
class Request:
    """Image seeds of one class and split to have stored (one `GenerationResult` each)."""

    cls: ClassInfo
    split: str
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class _Item:
    """One image of the job: its request, class, split and seed."""

    request: int
    cls: ClassInfo
    split: str
    seed: int


def default_batch_size(vqgm: VQGM, sampler: SamplerSettings, device: torch.device | str) -> int:
    """Images a sampling batch takes when the caller names none: what the device holds.

    CUDA: half the free memory after the weights, divided by one image's sampling footprint (its KV cache of
    every layer and position in the sampling dtype, plus about eight K-wide float32 rows of logits, filtering
    and noise), rounded down to a multiple of 8, between 8 and 1024. Elsewhere 32 (a CPU gains nothing from more).
    """
    device = torch.device(device)
    if device.type != "cuda":
        return 32
    layers, width = getattr(vqgm, "prior_shape", (48, 1536))  # a backend without it: taming's ImageNet GPT
    value_bytes = 2 if sampler.precision == "bf16" else 4
    steps = vqgm.grid * vqgm.grid
    kv = 2 * layers * (steps + 1) * width * value_bytes
    per_image = (kv + 8 * 4 * vqgm.n_embed) * (2 if sampler.guidance is not None else 1)
    free, _ = torch.cuda.mem_get_info(device)
    return int(max(8, min(1024, (free // 2) // per_image // 8 * 8)))


def generate_requests(store: Store, model: ModelInfo, requests: list[Request], *, batch_size: int | None = None,
                      sampler: SamplerSettings | None = None, out_dir: Path | None = None, device: torch.device | str = "cpu",
                      progress: Progress | None = None, dist: DistContext | None = None) -> list[GenerationResult]:
    """Store every requested image that is missing, in batches dealt by image across classes and splits.

    The missing images of the whole job, in request order, form full batches whatever their class or split
    (each image's noise is keyed by its identity, so its tokens do not depend on its batch); under torchrun
    the ranks take interleaved batches of them (`deal_batches`, after every rank has read what is stored), and every
    rank generates. Each batch is stored in one transaction per (class, split). The results are read back from
    the store after all ranks finished, so every rank returns the job's results, one per request.

    Args:
        batch_size: images per sampling batch; None: `default_batch_size` (what the device holds).
        out_dir: if given, '<class-slug>_<split>_<seed>.png' of every requested image (stored ones decoded
            from their stored tokens; the ranks share that work too).
        progress: called as progress(images done by this rank, images this rank has to make, info).
    """
    if batch_size is not None and batch_size <= 0:
        raise CortexError(f"batch size must be positive, got {batch_size}")
    vqgm = model_registry.load_model(model, device)
    sampler = validate_sampler(sampler if sampler is not None else default_sampler(vqgm))
    label = sampler.label()
    batch_size = batch_size or default_batch_size(vqgm, sampler, device)
    rank, world = (dist.rank, dist.world_size) if dist is not None and dist.distributed else (0, 1)
    for r in requests:
        _check_split(r.split)
    items = [_Item(i, r.cls, r.split, int(s)) for i, r in enumerate(requests) for s in dict.fromkeys(r.seeds)]
    stored = _stored(store, model, label, items)
    if dist is not None:
        dist.barrier()  # every rank deals the same missing list
    missing = [item for item in items if (item.cls.pk, item.split, item.seed) not in stored]
    mine = deal_batches(missing, batch_size, rank, world)
    total = sum(len(batch) for batch in mine)
    report(progress, 0, total)
    added = [0] * len(requests)
    done = 0
    for batch in mine:
        streams = image_streams(sampler, model.name, [i.cls for i in batch], [i.split for i in batch], [i.seed for i in batch])
        grids = vqgm.sample([i.cls for i in batch], streams, sampler).cpu()
        for (cls_pk, split), members in _groups(batch).items():
            cls = batch[members[0]].cls
            seeds = [batch[j].seed for j in members]
            new_ids, theirs = _store_batch(store, model, cls, split, label, seeds, grids[members])
            added[batch[members[0]].request] += len(new_ids)
            for j, s in zip(members, seeds):  # rows another process stored meanwhile are kept as they are
                stored[(cls_pk, split, s)] = theirs[s] if s in theirs else (new_ids[s], pack_tokens(grids[j], model.n_embed))
        if out_dir is not None:
            _write_item_pngs(vqgm, model, label, out_dir, batch, stored)
        done += len(batch)
        report(progress, done, total)
    if out_dir is not None:  # images that were stored before get their PNG from the stored tokens
        made = {(i.cls.pk, i.split, i.seed) for i in missing}
        before = [item for item in items if (item.cls.pk, item.split, item.seed) not in made]
        for batch in deal_batches(before, batch_size, rank, world):
            _write_item_pngs(vqgm, model, label, out_dir, batch, stored)
    if dist is not None and dist.distributed:
        added = [int(a) for a in dist.all_reduce_counts(added)]
        dist.barrier()
        stored = _stored(store, model, label, items)
    results = []
    for i, r in enumerate(requests):
        seeds = list(dict.fromkeys(int(s) for s in r.seeds))
        results.append(GenerationResult(
            model=model.name, class_id=r.cls.class_id, class_name=r.cls.name, split=r.split, sampler=label, requested=len(seeds),
            added=added[i], skipped=len(seeds) - added[i], image_ids=[stored[(r.cls.pk, r.split, s)][0] for s in seeds],
            png_paths=[str(out_dir / png_name(r.cls, r.split, s)) for s in seeds] if out_dir is not None else []))
    return results


def generate_classes(store: Store, model: ModelInfo, classes: list[ClassInfo], n: int, *, split: str = "train", seed: int = 0,
                     batch_size: int | None = None, out_dir: Path | None = None, top_k: int | None = None, top_p: float | None = None,
                     temperature: float | None = None, noise: str | None = None, precision: str | None = None,
                     guidance: float | None = None, device: torch.device | str = "cpu", progress: Progress | None = None,
                     dist: DistContext | None = None) -> list[GenerationResult]:
    """Seeds seed .. seed+n-1 of every class as one job of `generate_requests`, one result per class, in order.

    The request is checked first (`check_request`). The sampler is the model's default unless a sampling value is given
    (`resolve_sampler`: top_k, top_p, temperature, noise, precision, guidance); `progress` notes lead with the classes' names.
    """
    out_dir = check_request(n, split=split, batch_size=batch_size or 1, out_dir=out_dir, seed=seed)
    sampler = None
    if any(v is not None for v in (top_k, top_p, temperature, noise, precision, guidance)):
        sampler = resolve_sampler(model, top_k, top_p, temperature, device, noise=noise, precision=precision, guidance=guidance)
    seeds = tuple(range(seed, seed + n))
    requests = [Request(cls, split, seeds) for cls in classes]
    return generate_requests(store, model, requests, batch_size=batch_size, sampler=sampler, out_dir=out_dir, device=device,
                             progress=named(progress, ", ".join(c.name for c in classes)), dist=dist)


def deal_batches(work: list, batch_size: int, rank: int, world: int) -> list[list]:
    """Rank `rank` of `world`'s batches of a job: batch b of the whole job's consecutive batches goes to rank b % world.

    So every rank forms exactly the batches one process would, and float results (logits, maps) are those of
    one process bit for bit, not only up to rounding.
    """
    return [work[i:i + batch_size] for i in range(0, len(work), batch_size)][rank::world]


def _groups(batch: list[_Item]) -> dict[tuple[int, str], list[int]]:
    """Positions in the batch of each (class row, split), in batch order."""
    groups: dict[tuple[int, str], list[int]] = {}
    for j, item in enumerate(batch):
        groups.setdefault((item.cls.pk, item.split), []).append(j)
    return groups


def _stored(store: Store, model: ModelInfo, label: str, items: list[_Item]) -> dict[tuple[int, str, int], tuple[int, bytes]]:
    """(class row, split, seed) -> (image id, token blob) of the items already stored under `label`."""
    found: dict[tuple[int, str, int], tuple[int, bytes]] = {}
    wanted: dict[tuple[int, str], tuple[ClassInfo, list[int]]] = {}
    for item in items:
        wanted.setdefault((item.cls.pk, item.split), (item.cls, []))[1].append(item.seed)
    for (pk, split), (cls, seeds) in wanted.items():
        for s, hit in _existing(store, model, cls, split, label, seeds).items():
            found[(pk, split, s)] = hit
    return found


def _write_item_pngs(vqgm: VQGM, model: ModelInfo, label: str, out_dir: Path, batch: list[_Item],
                     stored: dict[tuple[int, str, int], tuple[int, bytes]]) -> None:
    """The PNGs of these stored items (grouped by class and split, each group decoded at once)."""
    for (pk, split), members in _groups(batch).items():
        cls = batch[members[0]].cls
        entries = [(batch[j].seed, *stored[(pk, split, batch[j].seed)]) for j in members]
        _write_pngs(vqgm, model, cls, split, label, out_dir,
                    [(seed, image_id, unpack_tokens(blob, model.n_embed, model.grid)) for seed, image_id, blob in entries])


def generate(store: Store, model: ModelInfo, cls: ClassInfo, n: int, *, split: str = "train", seed: int = 0,
             batch_size: int | None = None, out_dir: Path | None = None, **job: Any) -> GenerationResult:
    """Sample `n` token grids of class `cls` into the store (seeds seed .. seed+n-1), skipping stored ones.

    One request of `generate_requests`: `batch_size`, `out_dir` and `job` (sampler, device, progress, dist) are its
    arguments (see there for batching, torchrun and PNGs).

    Raises:
        CortexError: n <= 0, bad split/batch size/sampler, unwritable out_dir.
    """
    out_dir = check_request(n, split=split, batch_size=batch_size or 1, out_dir=out_dir, seed=seed)
    request = Request(cls, split, tuple(range(seed, seed + n)))
    return generate_requests(store, model, [request], batch_size=batch_size, out_dir=out_dir, **job)[0]


def ensure_images(store: Store, model: ModelInfo, cls: ClassInfo, split: str, n: int, *, seed: int = 0, **job: Any) -> list[int]:
    """Ids of n images of `cls`/`split` (seeds seed .. seed+n-1; default sampler), generating missing ones (`job`: device,
    progress, dist of `generate_requests`)."""
    return generate(store, model, cls, n, split=split, seed=seed, **job).image_ids


def _check_found(model: ModelInfo, image_ids: list[int], found: dict[int, object]) -> None:
    """CortexError naming the ids that are not images of `model`."""
    absent = [i for i in dict.fromkeys(int(i) for i in image_ids) if i not in found]
    if absent:
        shown = ", ".join(map(str, absent[:5])) + (" ..." if len(absent) > 5 else "")
        raise NotFound(f"image id(s) {shown} are not images of model {model.name!r}; run `cortex generate` first")


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
