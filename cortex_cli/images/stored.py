"""One stored image as a result (`cortex image ID --json`) and as the cortex PNG `cortex generate --out` would write."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..backends.base import to_pil
from ..core.errors import CortexError, NotFound
from ..core.results import Result
from ..models import registry as model_registry
from ..models.registry import ModelInfo
from ..store import images as image_store
from ..store import index as index_store
from ..store.database import Store
from .generation import image_tokens
from .pngmeta import save_png


@dataclass(frozen=True)
class StoredImage(Result):
    """A generated image in the store: its identity, its token grid and the index runs that hold its saliency map."""

    id: int
    model: str
    class_id: int
    class_name: str
    split: str
    seed: int
    sampler: str  # the sampler identity that drew it ('philox', 'host', ...)
    grid: int  # m: the token grid is m x m
    image_size: int
    tokens: list[list[int]]  # m rows of m token ids
    indexed_by: list[int] = field(default_factory=list)  # ids of the index runs holding its TSV map, newest first
    out: str | None = None  # where its PNG was written

    def table_rows(self) -> list[dict[str, Any]]:
        """One row: the identity (the token grid is left to --json)."""
        return [{"id": self.id, "class": self.class_name, "split": self.split, "seed": self.seed, "sampler": self.sampler,
                 "grid": f"{self.grid}x{self.grid}", "indexed by runs": ", ".join(map(str, self.indexed_by)) or "none"}]

    def png_meta(self) -> dict[str, Any]:
        """The metadata `cortex generate --out` writes beside the tokens."""
        return {"image_id": self.id, "class_id": self.class_id, "class_name": self.class_name, "split": self.split,
                "seed": self.seed, "sampler": self.sampler}


def stored_image(store: Store, model: ModelInfo, image_id: int) -> StoredImage:
    """The stored image `image_id` of `model` (CortexError when the id is not one of its images)."""
    if isinstance(image_id, bool) or not isinstance(image_id, int) or image_id < 1:
        raise CortexError(f"an image id is a positive integer, got {image_id!r}")
    if image_id > 2**63 - 1:  # past any 64-bit id: SQLite's driver would refuse the number itself
        raise NotFound(f"image id(s) {image_id} are not images of model {model.name!r}; run `cortex generate` first")
    tokens = image_tokens(store, model, [image_id])[0]
    who = image_store.identities(store, model.id, [image_id])[image_id]
    names = {c.class_id: c.name for c in model_registry.classes(store, model)}
    runs = [run.id for run in index_store.runs(store, model.id, None) if index_store.saliency_maps(store, run.id, [image_id])]
    return StoredImage(image_id, model.name, who.class_id, names.get(who.class_id, str(who.class_id)), who.split, who.seed, who.sampler,
                       model.grid, model.image_size, tokens.tolist(), runs)


def write_stored_png(store: Store, model: ModelInfo, image: StoredImage, out: Path, device: Any = "cpu") -> StoredImage:
    """Decode the image and write it to `out` as a cortex PNG (its tokens and identity in the metadata)."""
    grid = torch.tensor(image.tokens)
    picture = to_pil(model_registry.load_model(model, device).decode_tokens(grid[None].to(device)))[0]
    written = save_png(picture, Path(out), grid, model.name, image.png_meta(), n_embed=model.n_embed)
    return replace(image, out=str(written))


def stored_image_out(store: Store, model: ModelInfo, image_id: int, out: Path | None = None, device: Any = "cpu") -> StoredImage:
    """`stored_image`, also written to `out` as a cortex PNG when `out` is given (`write_stored_png`)."""
    found = stored_image(store, model, image_id)
    return found if out is None else write_stored_png(store, model, found, Path(out), device)
