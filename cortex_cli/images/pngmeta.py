"""PNGs that carry their token grid: write and read cortex's PNG text metadata.

A generated or edited image is saved with three tEXt chunks, so that later commands
(`cortex edit img.png`) recover the exact tokens instead of re-encoding the pixels:

- `cortex:model`  the registered model name;
- `cortex:tokens` JSON `{"grid": m, "n_embed": K, "dtype": "<u2"|"<i4", "data": base64}` where
  `data` is the raster-order grid packed like the `images.tokens` column (`tokens.pack_tokens`);
- `cortex:meta`   JSON of anything else (class, split, seed, sampler, ...).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from ..core.errors import CortexError, first_line

KEY_MODEL = "cortex:model"
KEY_TOKENS = "cortex:tokens"
KEY_META = "cortex:meta"


@dataclass
class PngTokens:
    """What a cortex PNG carries; `tokens` is None for a plain picture."""

    tokens: torch.Tensor | None  # LongTensor (m x m)
    model_name: str | None
    meta: dict
    image: Image.Image
    n_embed: int | None = field(default=None)  # K recorded with the tokens, if any


def _encode_tokens(tokens: torch.Tensor, n_embed: int | None) -> str:
    grid = tokens.detach().cpu().long()
    if grid.dim() == 3 and grid.shape[0] == 1:
        grid = grid[0]
    if grid.dim() != 2 or grid.shape[0] != grid.shape[1]:
        raise CortexError(f"a PNG carries one square token grid, got shape {tuple(tokens.shape)}")
    largest = int(grid.max()) if grid.numel() else 0
    if int(grid.min()) < 0:
        raise CortexError("token ids must be non-negative")
    # same rule as tokens.pack_tokens: uint16 when every id fits, else int32
    bound = n_embed if n_embed is not None else largest + 1
    dtype = "<u2" if bound <= 65536 else "<i4"
    data = np.ascontiguousarray(grid.numpy().reshape(-1), dtype=dtype).tobytes()
    payload = {"grid": int(grid.shape[0]), "n_embed": n_embed, "dtype": dtype, "data": base64.b64encode(data).decode("ascii")}
    return json.dumps(payload, separators=(",", ":"))


def _decode_tokens(text: str, path: Path) -> tuple[torch.Tensor, int | None]:
    try:
        payload = json.loads(text)
        grid, dtype = int(payload["grid"]), payload["dtype"]
        if dtype not in ("<u2", "<i4"):
            raise ValueError(f"unknown dtype {dtype!r}")
        arr = np.frombuffer(base64.b64decode(payload["data"], validate=True), dtype=dtype)
        if arr.size != grid * grid:
            raise ValueError(f"{arr.size} tokens for a {grid}x{grid} grid")
        n_embed = payload.get("n_embed")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise CortexError(f"PNG {str(path)!r} has a corrupt {KEY_TOKENS} chunk ({first_line(exc)}); re-export it with cortex") from exc
    return torch.from_numpy(arr.astype(np.int64)).reshape(grid, grid), (int(n_embed) if n_embed is not None else None)


def save_png(
    image: Image.Image,
    path: Path,
    tokens: torch.Tensor | None,
    model_name: str | None,
    extra: dict | None = None,
    *,
    n_embed: int | None = None,
) -> Path:
    """Write `image` as a PNG with its token grid and model name in text chunks.

    Args:
        image: the picture (any PIL mode PNG accepts).
        path: where to write; the parent directory is created.
        tokens: the m x m (or 1 x m x m) token grid, or None for a plain picture.
        model_name: the registered model that decodes `tokens`.
        extra: JSON-serialisable metadata (class, seed, ...), stored as `cortex:meta`.
        n_embed: the model's codebook size K (recorded so the grid round-trips in the store's format).

    Returns:
        The path written.

    Raises:
        CortexError: the path is not writable or `extra` is not JSON-serialisable.
    """
    path = Path(path)
    info = PngImagePlugin.PngInfo()
    if model_name is not None:
        info.add_text(KEY_MODEL, model_name)
    if tokens is not None:
        info.add_text(KEY_TOKENS, _encode_tokens(tokens, n_embed))
    try:
        info.add_text(KEY_META, json.dumps(extra or {}, sort_keys=True))
    except (TypeError, ValueError) as exc:
        raise CortexError(f"PNG metadata is not JSON-serialisable: {first_line(exc)}") from exc
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="PNG", pnginfo=info)
    except OSError as exc:
        raise CortexError(f"cannot write PNG {str(path)!r} ({exc.strerror or exc}); choose a writable --out directory") from exc
    return path


def read_png(path: Path) -> PngTokens:
    """Read a PNG (or any picture) and the cortex metadata it carries.

    Args:
        path: an image file; PNGs written by `save_png` also yield their tokens and model.

    Returns:
        PngTokens with the fully loaded RGB-or-original-mode image; `tokens` and `model_name`
        are None when the file carries no cortex metadata.

    Raises:
        CortexError: the file is missing, not an image, truncated, or its metadata is corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise CortexError(f"image {str(path)!r} does not exist")
    try:
        with Image.open(path) as img:
            img.load()  # decode now, so truncated files fail here and not later
            text = dict(getattr(img, "text", {}) or {})
            image = img.copy()
    except UnidentifiedImageError as exc:
        raise CortexError(f"{str(path)!r} is not an image PIL can read") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise CortexError(f"image {str(path)!r} is damaged or truncated ({first_line(exc)})") from exc
    tokens, n_embed = (None, None)
    if KEY_TOKENS in text:
        tokens, n_embed = _decode_tokens(text[KEY_TOKENS], path)
    try:
        meta = json.loads(text.get(KEY_META, "{}"))
    except ValueError as exc:
        raise CortexError(f"PNG {str(path)!r} has a corrupt {KEY_META} chunk ({first_line(exc)})") from exc
    if not isinstance(meta, dict):
        meta = {"value": meta}
    return PngTokens(tokens=tokens, model_name=text.get(KEY_MODEL), meta=meta, image=image, n_embed=n_embed)
