"""What the judges say about one picture with some of its tokens masked, beside as many random tokens masked.

The live form of the paper's Figure 3 for a single image: `cortex mask` and the explorer's masking panel.
The random positions are a seeded draw keyed by the picture's identity (a stored image's identity key, a
PNG's metadata or token content), the count and the seed, as the image-level evaluation draws its floor,
so the same request gives the same positions in any database.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ..attribution import SaliencySettings
from ..core.errors import CortexError
from ..core.results import Result
from ..core.seeding import generator_for
from ..evaluation.masking import FILLS, TOKEN_FILL, mask_images, masking_of
from ..images.figures import edit_strip
from ..images.generation import image_keys, image_tokens
from ..images.pngmeta import read_png, save_png
from ..backends.base import from_pil, to_pil
from ..models import registry as model_registry, subjects
from ..models.registry import ModelInfo
from ..store.database import Store
from ..store.images import image_class_id
from .pixel_judges import judge_probabilities, judges_for, target_probability

MAX_MASKED = 4096  # positions in one request (a 64 x 64 grid)


@dataclass(frozen=True)
class MaskedPicture:
    """The picture a mask is applied to: its tokens, its random-stream key and the class the judges score."""

    source: str  # a stored image id, or a PNG path
    tokens: torch.Tensor  # (m, m)
    key: int
    class_id: int | None  # the picture's own class, when known


@dataclass(frozen=True)
class JudgeScores:
    """One judge's P(class) on the picture as it is, with the chosen tokens masked, and with random tokens masked."""

    judge: str
    original: float
    masked: float
    random: float


@dataclass(frozen=True)
class MaskResult(Result):
    """`cortex mask`: the judges' P(class) with the chosen positions masked, beside the same number of random ones."""

    model: str
    source: str
    class_id: int
    class_name: str
    fill: str  # 'black', 'mean', 'blur' or 'tokens'
    chosen_by: str  # 'given positions' or the explanation that ranked them ('top 5 TSV, index run 3')
    positions: list[int]  # the masked positions, row * m + col
    tokens: list[int]  # the tokens at those positions
    random_positions: list[int]
    seed: int
    judges: list[JudgeScores] = field(default_factory=list)
    out: str | None = None

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per judge: P(class) original, masked, random-masked."""
        return [asdict(j) for j in self.judges]


def stored_picture(store: Store, model: ModelInfo, image_id: int) -> MaskedPicture:
    """A stored image of `model` by id (CortexError when it is not one)."""
    tokens = image_tokens(store, model, [image_id])[0]
    return MaskedPicture(str(image_id), tokens, image_keys(store, model, [image_id])[0], image_class_id(store, model.id, image_id))


def png_picture(model: ModelInfo, path: Path, device: torch.device | str = "cpu") -> MaskedPicture:
    """A PNG: its cortex tokens (else the VQGAN's encoding), keyed as `cortex explain` keys it."""
    from ..index.explain import picture_key  # the index imports the judges' package: keep this edge one way

    png = read_png(path)
    if png.tokens is not None:
        if tuple(png.tokens.shape) != (model.grid, model.grid) or int(png.tokens.max()) >= model.n_embed:
            raise CortexError(f"the tokens in {str(path)!r} do not fit model {model.name!r} ({model.grid}x{model.grid}, K={model.n_embed}); pass --model")
        tokens = png.tokens
    else:
        tokens = model_registry.load_model(model, device).encode_images(from_pil([png.image], model.image_size))[0].cpu()
    own = png.meta.get("class_id") if png.model_name == model.name else None
    return MaskedPicture(str(path), tokens, picture_key(png, model, tokens), own if isinstance(own, int) else None)


def random_positions(key: int, count: int, grid: int, seed: int) -> list[int]:
    """`count` distinct positions of an m x m grid, a seeded draw keyed by the picture, the count and the seed."""
    order = torch.randperm(grid * grid, generator=generator_for("mask-random", seed, int(key), count))
    return sorted(int(p) for p in order[:count])


def check_positions(positions: Sequence[int], grid: int) -> list[int]:
    """Distinct in-grid positions, sorted; CortexError naming the first bad one."""
    if not positions:
        raise CortexError("no positions to mask; give positions (row * m + col) or a top-n count")
    if len(positions) > MAX_MASKED:
        raise CortexError(f"{len(positions)} positions to mask; at most {MAX_MASKED}")
    for p in positions:
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < grid * grid:
            raise CortexError(f"position {p!r} is outside the {grid}x{grid} token grid (0..{grid * grid - 1})")
    return sorted(set(positions))


def mask_picture(store: Store, model: ModelInfo, picture: MaskedPicture, positions: Sequence[int], *, class_id: int | None = None,
                 class_name: str | None = None, fill: str = "black", seed: int = 0, chosen_by: str = "given positions",
                 device: torch.device | str = "cpu", out: Path | None = None) -> MaskResult:
    """Each judge's P(class) on the picture, with `positions` masked by `fill`, and with as many random positions masked.

    `class_id` is the class scored (default: the picture's own); `out` gets a strip: original | masked | random.
    """
    if fill not in FILLS:
        raise CortexError(f"unknown fill {fill!r}; choose one of {', '.join(FILLS)}")
    chosen = check_positions(list(positions), model.grid)
    scored = class_id if class_id is not None else picture.class_id
    if scored is None:
        raise CortexError(f"{picture.source} names no class; give the class the judges should score (--class)")
    names = {c.class_id: c.name for c in model_registry.classes(store, model)}
    if scored not in names:
        raise CortexError(f"class {scored} is not a class of model {model.name!r}")
    vqgm = model_registry.load_model(model, device)
    tokens = picture.tokens[None].to(device)
    with torch.no_grad():
        image = vqgm.decode_tokens(tokens)
        masking = masking_of(image.expand(2, -1, -1, -1), tokens.cpu().expand(2, -1, -1), model.grid, fill,
                             vqgm.decode_tokens if fill == TOKEN_FILL else None)
        drawn = random_positions(picture.key, len(chosen), model.grid, seed)
        masked = mask_images(masking, [torch.tensor(chosen), torch.tensor(drawn)])
        probs = judge_probabilities(judges_for(model, device), torch.cat([image, masked]))
    judged = []
    for name, p in probs.items():
        values = target_probability(p, [scored])
        if values is not None:
            judged.append(JudgeScores(name, *(round(float(v), 6) for v in values)))
    flat = picture.tokens.reshape(-1)
    written = None
    if out is not None:
        strip = edit_strip(to_pil(torch.cat([image, masked]).cpu()), ["original", f"{len(chosen)} masked ({fill})", f"{len(chosen)} random"])
        written = str(save_png(strip, Path(out), None, model.name, {"figure": "mask", "source": picture.source, "positions": chosen}))
    return MaskResult(model.name, picture.source, scored, class_name or names[scored], fill, chosen_by, chosen,
                      [int(flat[p]) for p in chosen], drawn, seed, judged, written)


def mask_source(store: Store, source: int | Path, *, positions: Sequence[int] | None = None, top_n: int = 5, fill: str = "black",
                seed: int = 0, target: str | int | None = None, extractor_name: str | None = None, model_name: str | None = None,
                device: torch.device | str = "cpu", out: Path | None = None) -> MaskResult:
    """`mask_picture` of a stored image (by id; model default: mini) or a picture (by path; model default: the PNG's).

    The masked positions are `positions`, else the picture's `top_n` TSV positions as `index.explain.show_picture` finds
    them (with `extractor_name` and `seed`); `target`, a class name or id, is the class the judges score.

    Raises:
        CortexError: a `target` that is a named concept, and whatever `mask_picture` refuses.
    """
    from ..index.explain import show_picture  # the index imports the judges' package: keep this edge one way

    stored = isinstance(source, int)
    model = model_registry.get_model(store, model_name if model_name is not None or stored else read_png(source).model_name)
    picture = stored_picture(store, model, source) if stored else png_picture(model, source, device)
    if fill not in FILLS:  # checked before the saliency below is computed (mask_picture checks it too)
        raise CortexError(f"unknown fill {fill!r}; choose one of {', '.join(FILLS)}")
    scored = subjects.subject(store, model, target) if target is not None else None
    if scored is not None and not scored.is_class:
        raise CortexError(f"mask scores one class; {scored.name!r} is a concept (name one of its classes)")
    chosen_by = "given positions"
    if positions is None:
        ranked = show_picture(store, source, model_name=model.name, extractor_name=extractor_name, top_n=top_n, device=device,
                              settings=SaliencySettings(seed=seed))
        positions, chosen_by = [t.position for t in ranked.top], f"top {top_n} TSV ({ranked.tsv_from}, {ranked.extractor})"
    return mask_picture(store, model, picture, list(positions), class_id=scored.class_id if scored else None, fill=fill, seed=seed,
                        chosen_by=chosen_by, device=device, out=out)
