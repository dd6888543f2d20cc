"""One image's saliency, drawn: `cortex show` (from the index) and `cortex explain` (computed, not stored).

Reads the index when it can (a stored image already indexed), otherwise computes the TSV map on
the fly with the run's settings; never writes to the index.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import model_registry
from .backends.base import from_pil, to_pil
from .errors import CortexError
from .results import Result
from .extractors.registry import get_extractor, load_extractor
from .figures import draw_token_boxes, image_grid
from .generation import image_keys, image_tokens
from .indexing import unpack_tsv
from .pngmeta import read_png, save_png
from .rankings import extractor_id, pick_run
from .model_registry import ClassInfo, ModelInfo
from .attribution import SaliencySettings, token_saliency, top_positions
from .seeding import derive_seed, image_key
from .store import index as index_store
from .store import queries as query_store
from .store.database import Store
from .store.images import image_class_id

FIGURE_SIDE = 256  # figures are upscaled (nearest) to at least this many pixels


@dataclass
class SalientToken:
    """One of an image's top tokens."""

    rank: int  # 1 = most salient
    position: int  # row * m + col
    row: int
    col: int
    token: int
    tsv: float


@dataclass(frozen=True)
class ExplainResult(Result):
    """The top-n tokens of one image and where its figure went."""

    model: str
    extractor: str
    source: str  # image id or PNG path
    class_id: int
    class_name: str
    target: str  # 'stored class', 'PNG metadata' or 'predicted by the extractor' (the explained logit)
    tokens_from: str  # 'store', 'PNG metadata' or 'VQGAN encoding'
    tsv_from: str  # 'index run N' or 'computed'
    top: list[SalientToken]
    out: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)



    def table_rows(self) -> list[dict[str, Any]]:
        """One row per salient token: rank, position, token, TSV."""
        return [asdict(t) for t in self.top]

@dataclass(frozen=True)
class TokenFigureResult(Result):
    """`cortex show --class C --token T`: images of C where T is salient, boxed."""

    model: str
    class_id: int
    class_name: str
    token: int
    run_id: int
    images_with_token: int  # indexed images of the class whose top-n contains the token
    image_ids: list[int]  # those drawn
    out: str


def _scale(image_size: int) -> int:
    return max(1, -(-FIGURE_SIDE // image_size))


def _top(tsv: torch.Tensor, tokens: torch.Tensor, n: int) -> list[SalientToken]:
    m = tsv.shape[-1]
    flat = tokens.reshape(-1)
    return [SalientToken(i + 1, p, p // m, p % m, int(flat[p]), v) for i, (p, v) in enumerate(top_positions(tsv, n))]


def _settings_dict(settings: SaliencySettings) -> dict[str, Any]:
    return {k: v for k, v in settings.as_dict().items() if k != "top_n"}  # the figure's top-n is its own option


def _write(image, out: Path | None, top: list[SalientToken], model: ModelInfo, tokens: torch.Tensor, meta: dict) -> str | None:
    if out is None:
        return None
    figure = draw_token_boxes(image, [t.position for t in top], model.grid, scale=_scale(model.image_size))
    return str(save_png(figure, Path(out), None, model.name, {**meta, "figure": "token boxes"}))


def _picture_key(png, model: ModelInfo, tokens: torch.Tensor) -> int:
    """A PNG's noise key: its generated image's identity from the metadata, else its token content."""
    meta = png.meta
    if png.model_name == model.name and all(k in meta for k in ("class_id", "split", "seed", "sampler")):
        return image_key(model.name, meta["class_id"], meta["split"], meta["seed"], meta["sampler"])
    return derive_seed("picture", model.name, ",".join(map(str, tokens.reshape(-1).tolist())))


def _class_by_id(store: Store, model: ModelInfo, class_id: int) -> ClassInfo:
    for c in model_registry.classes(store, model):
        if c.class_id == class_id:
            return c
    raise CortexError(f"class id {class_id} is not a class of model {model.name!r}")


def _extractor(store: Store, model: ModelInfo, name: str | None, device, extractor=None):
    info = get_extractor(store, model, name)
    return info, extractor if extractor is not None else load_extractor(info, device)


def explain_png(
    store: Store,
    path: Path,
    *,
    model_name: str | None = None,
    extractor_name: str | None = None,
    top_n: int = 5,
    settings: SaliencySettings = SaliencySettings(),
    device: torch.device | str = "cpu",
    out: Path | None = None,
    extractor: torch.nn.Module | None = None,
) -> ExplainResult:
    """Saliency of one picture; nothing is written to the index.

    Tokens come from the PNG's cortex metadata, else the VQGAN encodes the (centre-cropped) picture.
    The explained logit is the class in the PNG's metadata, else the class the extractor predicts.

    Args:
        store: the open database (read only here).
        path: a PNG written by cortex, or any picture.
        model_name: the model [default: the PNG's model, else mini].
        extractor_name: which extractor [default: 'ce'].
        top_n: tokens to list and box.
        settings: saliency parameters: method and its parameters, reduce, precision.
        device: where to compute.
        out: write the Figure-2 style PNG here.
        extractor: an already loaded f_Y (tests).

    Returns:
        ExplainResult.
    """
    settings.validate()
    if top_n < 1:
        raise CortexError(f"--top-n must be >= 1, got {top_n}")
    png = read_png(Path(path))
    model = model_registry.get_model(store, model_name or png.model_name)
    vqgm = model_registry.load_model(model, device)
    picture = to_pil(from_pil([png.image], model.image_size))[0]
    if png.tokens is not None:
        if tuple(png.tokens.shape) != (model.grid, model.grid) or int(png.tokens.max()) >= model.n_embed:
            raise CortexError(f"the tokens in {str(path)!r} do not fit model {model.name!r} ({model.grid}x{model.grid}, K={model.n_embed}); pass --model")
        tokens, tokens_from = png.tokens, "PNG metadata"
    else:
        tokens, tokens_from = vqgm.encode_images(from_pil([png.image], model.image_size))[0].cpu(), "VQGAN encoding"
    info, ext = _extractor(store, model, extractor_name, device, extractor)
    with torch.no_grad():
        emb = vqgm.embed(tokens[None])
    meta_class = png.meta.get("class_id") if png.model_name == model.name else None
    if isinstance(meta_class, int):
        cls, target = _class_by_id(store, model, meta_class), "PNG metadata"
    else:
        with torch.no_grad():
            predicted = int(ext(emb.float()).argmax(dim=1)[0])
        cls, target = _class_by_id(store, model, predicted), "predicted by the extractor"
    tsv = token_saliency(ext, emb, [cls.class_id], [_picture_key(png, model, tokens)], settings, codebook=vqgm.codebook)[0].cpu()
    top = _top(tsv, tokens, top_n)
    written = _write(picture, out, top, model, tokens, {"source": str(path), "class_id": cls.class_id})
    return ExplainResult(model.name, info.name, str(path), cls.class_id, cls.name, target, tokens_from, "computed", top, written, _settings_dict(settings))


def show_image(
    store: Store,
    model: ModelInfo,
    image_id: int,
    *,
    extractor_name: str | None = None,
    top_n: int = 5,
    out: Path | None = None,
    device: torch.device | str = "cpu",
    settings: SaliencySettings = SaliencySettings(),
    extractor: torch.nn.Module | None = None,
) -> ExplainResult:
    """A stored image with boxes on its top-n tokens (paper Figure 2).

    Uses the newest indexed TSV map of the image (of `extractor_name` if given); an image not yet
    indexed is explained on the fly with `settings` (target: its class's logit).

    Args:
        store: the open database.
        model: the image's model.
        image_id: a stored image id (see `cortex generate --json`).
        extractor_name: restrict to runs of this extractor.
        top_n: boxes to draw.
        out: where to write the PNG.
        device: where to compute (only when not indexed).
        settings: saliency parameters for the on-the-fly case.
        extractor: an already loaded f_Y (tests).

    Returns:
        ExplainResult.
    """
    if top_n < 1:
        raise CortexError(f"--top-n must be >= 1, got {top_n}")
    class_id = image_class_id(store, model.id, image_id)
    if class_id is None:
        raise CortexError(f"image {image_id} is not a stored image of model {model.name!r}; see `cortex generate --json` for ids")
    cls = _class_by_id(store, model, int(class_id))
    tokens = image_tokens(store, model, [image_id])
    ext_id = None
    ext_name = extractor_name or "ce"
    if extractor_name is not None:
        ext_id = extractor_id(store, model, extractor_name)
    found = index_store.newest_map(store, image_id, ext_id)
    if found is not None:
        run_id, blob = found
        tsv, tsv_from = unpack_tsv(blob, model.grid), f"index run {run_id}"
        ext_name = index_store.run_extractor_name(store, run_id)
        used = {}
    else:
        settings.validate()
        info, ext = _extractor(store, model, extractor_name, device, extractor)
        ext_name = info.name
        vqgm = model_registry.load_model(model, device)
        with torch.no_grad():
            emb = vqgm.embed(tokens)
        key = image_keys(store, model, [image_id])[0]
        tsv, tsv_from = token_saliency(ext, emb, [cls.class_id], [key], settings, codebook=vqgm.codebook)[0].cpu(), "computed"
        used = _settings_dict(settings)
    top = _top(tsv, tokens[0], top_n)
    written = None
    if out is not None:
        picture = to_pil(model_registry.load_model(model, device).decode_tokens(tokens))[0]
        written = _write(picture, out, top, model, tokens[0], {"image_id": image_id, "class_id": cls.class_id})
    return ExplainResult(model.name, ext_name, str(image_id), cls.class_id, cls.name, "stored class", "store", tsv_from, top, written, used)


def show_token(
    store: Store,
    model: ModelInfo,
    cls: ClassInfo,
    token: int,
    out: Path,
    *,
    extractor_name: str | None = None,
    limit: int = 12,
    ncols: int = 6,
    device: torch.device | str = "cpu",
) -> TokenFigureResult:
    """A grid of indexed images of `cls` with `token` boxed wherever it is salient (paper Figure 5).

    Args:
        store: the open database.
        model, cls: the model and the class.
        token: a codebook index.
        out: where to write the PNG.
        extractor_name: read the newest run of this extractor [default: any].
        limit: at most this many images (lowest ids first).
        ncols: images per row.
        device: where to decode.

    Returns:
        TokenFigureResult.

    Raises:
        CortexError: class not indexed, token out of range, or never salient in this class.
    """
    if not 0 <= token < model.n_embed:
        raise CortexError(f"token {token} is outside model {model.name!r}'s codebook (0..{model.n_embed - 1})")
    if limit < 1:
        raise CortexError(f"--limit must be >= 1, got {limit}")
    run = pick_run(store, model, cls, extractor=extractor_name)
    rows = query_store.token_positions(store, run.id, cls.pk, token, limit)
    total = query_store.token_image_count(store, run.id, cls.pk, token)
    if not rows:
        raise CortexError(f"token {token} is not among the top-{run.top_n} tokens of any indexed {cls.name!r} image; see `cortex top-tokens '{cls.name}'`")
    positions: dict[int, list[int]] = {}
    for image_id, position in rows:
        positions.setdefault(int(image_id), []).append(int(position))
    ids = list(positions)
    vqgm = model_registry.load_model(model, device)
    pictures = to_pil(vqgm.decode_tokens(image_tokens(store, model, ids)))
    scale = _scale(model.image_size) if model.image_size < 128 else 1
    tiles = [draw_token_boxes(p, positions[i], model.grid, scale=scale) for p, i in zip(pictures, ids)]
    figure = image_grid(tiles, ncols, labels=[f"image {i}" for i in ids])
    written = save_png(figure, Path(out), None, model.name, {"class_id": cls.class_id, "token": token, "figure": "token grid"})
    return TokenFigureResult(model.name, cls.class_id, cls.name, token, run.id, total, ids, str(written))
