"""Pictures as the Python API takes and shows them: any image given as a path, and a token's own thumbnail."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ..backends.base import to_pil
from ..core.errors import CortexError
from ..models import registry as model_registry
from ..models.registry import ModelInfo

PictureLike = str | Path | Image.Image | torch.Tensor


@contextlib.contextmanager
def picture_path(image: PictureLike) -> Iterator[Path]:
    """A path for an image given as a path, a PIL image (its PNG text, tokens included, is kept) or a 3 x H x W tensor
    in [-1, 1]; a temporary PNG that lives as long as the context."""
    if isinstance(image, (str, Path)):
        yield Path(image)
        return
    if isinstance(image, torch.Tensor):
        batch = image.detach().float().cpu()
        if batch.dim() == 3:
            batch = batch.unsqueeze(0)
        if batch.dim() != 4 or batch.shape[0] != 1 or batch.shape[1] != 3:
            raise CortexError(f"an image tensor must be 3 x H x W (values in [-1, 1]); got shape {tuple(image.shape)}")
        image = to_pil(batch)[0]
    if not isinstance(image, Image.Image):
        raise CortexError(f"an image must be a path, a PIL image or a 3 x H x W tensor; got {type(image).__name__}")
    meta = PngInfo()
    for key, value in (getattr(image, "text", None) or {}).items():
        meta.add_text(key, value)
    with tempfile.TemporaryDirectory(prefix="cortex-image-") as tmp:
        path = Path(tmp) / "image.png"
        image.convert("RGB").save(path, pnginfo=meta)
        yield path


def picture_source(image: int | PictureLike) -> contextlib.AbstractContextManager[int | Path]:
    """A stored image's id as it is (not a bool), else `picture_path` of the picture: what commands that take either read."""
    if isinstance(image, int) and not isinstance(image, bool):
        return contextlib.nullcontext(image)
    return picture_path(image)


def token_thumbnails(model: ModelInfo, device: torch.device | str) -> Callable[[int], Image.Image]:
    """token -> its codebook entry decoded alone (a grid of that one token), for a result's notebook table."""

    def draw(token: int) -> Image.Image:
        vqgm = model_registry.load_model(model, device)
        grid = torch.full((1, model.grid, model.grid), int(token), dtype=torch.long, device=device)
        with torch.no_grad():
            return to_pil(vqgm.decode_tokens(grid))[0]

    return draw
