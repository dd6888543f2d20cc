"""The mini world: a procedural concept dataset with known object and part masks.

64x64 RGB images, one object per image at a random position, scale and rotation, over a
background "habitat". Each concept lives on its own habitat most of the time, and every
habitat is shared by several concepts, so background tokens are frequent within a class
without being discriminative (the trap of the frequency baseline). Four pairs of concepts
differ only in a local part (bird heads, candle flames, mushroom caps, boat sails).
Everything is deterministic by seed.

Attributes (`ATTRIBUTES`, e.g. "red") are ground truth for concepts beyond one class: a shape belongs
to an attribute when its fill colour, as drawn, passes the attribute's colour rule, and the attribute's
mask (`attribute_mask`) is the object's pixels drawn by such shapes and not covered by a later shape
(the red mushroom's cap without its white dots; never the orange goldfish or sun, nor a bird's beak).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
from PIL import Image, ImageDraw

from ..core.errors import CortexError
from ..core.seeding import derive_seed

SIZE = 64  # image side in pixels
SUPER = 4  # supersampling factor for drawing
HABITATS = ("sky", "grass", "water", "night")
HOME_PROBABILITY = 0.75  # chance an object appears on its own habitat

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Attribute:
    """A visual attribute of the mini world: which fill colours carry it (`rule` says it in words)."""

    name: str
    rule: str
    test: Callable[[RGB], bool]


def _red(rgb: RGB) -> bool:
    r, g, b = rgb
    return r >= 150 and max(g, b) <= 0.35 * r


ATTRIBUTES: dict[str, Attribute] = {
    "red": Attribute("red", "fill R >= 150 and G, B <= 0.35 R: the red bird's head, red mushroom's cap, red sails, "
                            "the house's roof; not the goldfish, sun, flame or beak (orange: G > 0.35 R)", _red),
}


class _Painter:
    """Draws onto the object layer and, for the concept's distinctive part and each attribute, a mask layer."""

    def __init__(self, side: int):
        self.obj = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        self.part = Image.new("L", (side, side), 0)
        self.attributes = {name: Image.new("L", (side, side), 0) for name in ATTRIBUTES}
        self._obj = ImageDraw.Draw(self.obj)
        self._part = ImageDraw.Draw(self.part)
        self._attributes = {name: ImageDraw.Draw(layer) for name, layer in self.attributes.items()}

    def shape(self, kind: str, xy, fill: RGB, part: bool = False, **kw) -> None:
        getattr(self._obj, kind)(xy, fill=(*fill, 255), **kw)
        # a later shape outside the part (or without the attribute's colour) covers what lies below it
        getattr(self._part, kind)(xy, fill=255 if part else 0, **kw)
        for name, draw in self._attributes.items():
            getattr(draw, kind)(xy, fill=255 if ATTRIBUTES[name].test(fill) else 0, **kw)


def _bird(head: RGB) -> Callable[[_Painter, float], None]:
    def draw(p: _Painter, u: float) -> None:
        p.shape("polygon", [(-0.55 * u, 0.0), (-0.95 * u, -0.25 * u), (-0.95 * u, 0.3 * u)], (110, 70, 40))  # tail
        p.shape("ellipse", [-0.65 * u, -0.35 * u, 0.45 * u, 0.45 * u], (150, 100, 55))  # body
        p.shape("ellipse", [0.1 * u, -0.95 * u, 0.75 * u, -0.3 * u], head, part=True)  # head
        p.shape("polygon", [(0.72 * u, -0.72 * u), (1.0 * u, -0.6 * u), (0.72 * u, -0.5 * u)], (250, 170, 30), part=True)  # beak
        p.shape("ellipse", [0.42 * u, -0.75 * u, 0.56 * u, -0.61 * u], (10, 10, 10), part=True)  # eye
        p.shape("rectangle", [-0.1 * u, 0.42 * u, 0.0 * u, 0.8 * u], (60, 40, 20))  # leg
    return draw


def _candle(lit: bool) -> Callable[[_Painter, float], None]:
    def draw(p: _Painter, u: float) -> None:
        p.shape("rectangle", [-0.3 * u, -0.25 * u, 0.3 * u, 0.95 * u], (240, 232, 205))
        p.shape("rectangle", [-0.04 * u, -0.5 * u, 0.04 * u, -0.25 * u], (20, 20, 20), part=True)  # wick
        if lit:
            p.shape("ellipse", [-0.25 * u, -1.0 * u, 0.25 * u, -0.35 * u], (255, 150, 20), part=True)
            p.shape("ellipse", [-0.12 * u, -0.8 * u, 0.12 * u, -0.42 * u], (255, 240, 120), part=True)
    return draw


def _mushroom(cap: RGB, dots: bool) -> Callable[[_Painter, float], None]:
    def draw(p: _Painter, u: float) -> None:
        p.shape("rectangle", [-0.2 * u, -0.1 * u, 0.2 * u, 0.9 * u], (235, 230, 215))  # stem
        p.shape("pieslice", [-0.9 * u, -0.85 * u, 0.9 * u, 0.35 * u], cap, part=True, start=180, end=360)
        if dots:
            for cx, cy in ((-0.45, -0.3), (0.0, -0.6), (0.45, -0.3)):
                p.shape("ellipse", [(cx - 0.12) * u, (cy - 0.12) * u, (cx + 0.12) * u, (cy + 0.12) * u], (255, 255, 255), part=True)
    return draw


def _boat(sail: RGB) -> Callable[[_Painter, float], None]:
    def draw(p: _Painter, u: float) -> None:
        p.shape("polygon", [(-0.05 * u, -0.95 * u), (-0.05 * u, 0.3 * u), (-0.75 * u, 0.3 * u)], sail, part=True)
        p.shape("polygon", [(0.05 * u, -0.7 * u), (0.05 * u, 0.3 * u), (0.6 * u, 0.3 * u)], sail, part=True)
        p.shape("rectangle", [-0.04 * u, -0.95 * u, 0.04 * u, 0.4 * u], (70, 45, 25))  # mast
        p.shape("polygon", [(-0.95 * u, 0.4 * u), (0.95 * u, 0.4 * u), (0.65 * u, 0.8 * u), (-0.65 * u, 0.8 * u)], (120, 60, 30))
    return draw


def _fish(p: _Painter, u: float) -> None:
    p.shape("polygon", [(-0.5 * u, 0.0), (-0.95 * u, -0.4 * u), (-0.95 * u, 0.4 * u)], (230, 100, 20))
    p.shape("ellipse", [-0.7 * u, -0.4 * u, 0.9 * u, 0.4 * u], (250, 140, 30))
    p.shape("ellipse", [0.45 * u, -0.15 * u, 0.6 * u, 0.0 * u], (10, 10, 10), part=True)


def _sun(p: _Painter, u: float) -> None:
    for k in range(8):
        a = k * math.pi / 4
        tip = (math.cos(a) * 0.98 * u, math.sin(a) * 0.98 * u)
        left = (math.cos(a + 0.25) * 0.55 * u, math.sin(a + 0.25) * 0.55 * u)
        right = (math.cos(a - 0.25) * 0.55 * u, math.sin(a - 0.25) * 0.55 * u)
        p.shape("polygon", [tip, left, right], (255, 170, 0), part=True)
    p.shape("ellipse", [-0.55 * u, -0.55 * u, 0.55 * u, 0.55 * u], (255, 220, 40))


def _house(p: _Painter, u: float) -> None:
    p.shape("rectangle", [-0.65 * u, -0.1 * u, 0.65 * u, 0.9 * u], (225, 200, 150))
    p.shape("polygon", [(-0.85 * u, -0.1 * u), (0.0, -0.9 * u), (0.85 * u, -0.1 * u)], (190, 40, 40), part=True)
    p.shape("rectangle", [-0.15 * u, 0.4 * u, 0.15 * u, 0.9 * u], (90, 55, 30))


def _pine(p: _Painter, u: float) -> None:
    p.shape("rectangle", [-0.12 * u, 0.55 * u, 0.12 * u, 0.95 * u], (100, 60, 25), part=True)
    for top, bottom, half in ((-0.95, -0.3, 0.45), (-0.6, 0.1, 0.6), (-0.25, 0.6, 0.78)):
        p.shape("polygon", [(0.0, top * u), (-half * u, bottom * u), (half * u, bottom * u)], (20, 90, 40))


def _star(p: _Painter, u: float) -> None:
    pts = []
    for k in range(10):
        a = -math.pi / 2 + k * math.pi / 5
        r = (0.98 if k % 2 == 0 else 0.42) * u
        pts.append((math.cos(a) * r, math.sin(a) * r))
    p.shape("polygon", pts, (255, 230, 60), part=True)


@dataclass(frozen=True)
class Concept:
    name: str
    habitat: str
    draw: Callable[[_Painter, float], None]
    synonyms: tuple[str, ...] = ()
    part: str = "object"  # the distinctive part drawn into the part mask
    pair: str | None = None  # the concept that differs from this one only in `part`


CONCEPTS: tuple[Concept, ...] = (
    Concept("red-capped bird", "sky", _bird((210, 30, 30)), ("red bird",), "head", "blue-capped bird"),
    Concept("blue-capped bird", "sky", _bird((40, 80, 220)), ("blue bird",), "head", "red-capped bird"),
    Concept("lit candle", "night", _candle(True), ("candle",), "flame", "unlit candle"),
    Concept("unlit candle", "night", _candle(False), (), "wick", "lit candle"),
    Concept("red mushroom", "grass", _mushroom((220, 30, 40), True), ("fly agaric",), "cap", "brown mushroom"),
    Concept("brown mushroom", "grass", _mushroom((130, 80, 40), False), ("porcini",), "cap", "red mushroom"),
    Concept("white sailboat", "water", _boat((250, 250, 250)), ("sailboat",), "sail", "red sailboat"),
    Concept("red sailboat", "water", _boat((220, 40, 40)), (), "sail", "white sailboat"),
    Concept("goldfish", "water", _fish, ("fish",), "eye"),
    Concept("sun", "sky", _sun, (), "rays"),
    Concept("house", "grass", _house, ("cottage",), "roof"),
    Concept("pine tree", "grass", _pine, ("fir",), "trunk"),
    Concept("star", "night", _star, (), "star"),
)

CONCEPT_INDEX = {c.name: i for i, c in enumerate(CONCEPTS)}


def concept_pairs() -> list[tuple[int, int]]:
    """(a, b) index pairs of concepts that differ only in a local part, a < b."""
    return sorted({tuple(sorted((i, CONCEPT_INDEX[c.pair]))) for i, c in enumerate(CONCEPTS) if c.pair})


def _background(habitat: str, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    phase = rng.uniform(0, 2 * math.pi)
    if habitat == "sky":
        top, bottom = np.array([110, 170, 235]), np.array([190, 220, 250])
        img = top + (bottom - top) * y[..., None]
        for _ in range(rng.integers(1, 3)):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0.05, 0.4), rng.uniform(0.08, 0.14)
            cloud = np.exp(-(((x - cx) / (2 * r)) ** 2 + ((y - cy) / r) ** 2) * 2)
            img = img + (255 - img) * cloud[..., None] * 0.8
    elif habitat == "grass":
        base = np.array([120, 185, 70])
        blades = 0.5 + 0.5 * np.sin(2 * math.pi * (x * 9 + 0.3 * np.sin(2 * math.pi * y * 2) + phase))
        img = base + np.array([-25, -30, -15]) * blades[..., None]
    elif habitat == "water":
        base = np.array([40, 95, 175])
        waves = 0.5 + 0.5 * np.sin(2 * math.pi * (y * 7 + 0.15 * np.sin(2 * math.pi * x * 3 + phase)))
        img = base + np.array([30, 40, 45]) * waves[..., None]
    elif habitat == "night":
        img = np.array([18, 22, 55]) + np.array([10, 10, 25]) * y[..., None]
        for _ in range(rng.integers(3, 7)):
            sx, sy = rng.integers(0, SIZE, size=2)
            img[sy, sx] = (230, 230, 250)
    else:
        raise ValueError(habitat)
    img = img + rng.normal(0, 2.0, size=(SIZE, SIZE, 1))
    return np.clip(img, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class WorldSample:
    """One mini-world image with its ground truth."""

    image: np.ndarray  # (64, 64, 3) uint8
    mask: np.ndarray  # (64, 64) bool: the object's pixels
    part_mask: np.ndarray  # (64, 64) bool: the distinctive part's pixels
    concept: int
    habitat: str
    attributes: Mapping[str, np.ndarray] = field(default_factory=dict)  # attribute name -> (64, 64) bool, inside `mask`


def attribute_named(name: str) -> str | None:
    """The mini-world attribute a name means (case and spacing ignored), or None."""
    wanted = " ".join(str(name).split()).lower()
    return wanted if wanted in ATTRIBUTES else None


def attribute_mask(sample: WorldSample, attribute: str) -> np.ndarray:
    """(64, 64) bool: the sample's object pixels that carry `attribute` (all False when its object has none).

    Raises:
        CortexError: not an attribute of the mini world.
    """
    name = attribute_named(attribute)
    if name is None:
        raise CortexError(f"{attribute!r} is not an attribute of the mini world (attributes: {', '.join(ATTRIBUTES)})")
    return sample.attributes[name]


def render(concept: int, rng: np.random.Generator) -> WorldSample:
    """Draw one image of `concept` with randomness from `rng`."""
    spec = CONCEPTS[concept]
    if rng.uniform() < HOME_PROBABILITY:
        habitat = spec.habitat
    else:
        habitat = str(rng.choice([h for h in HABITATS if h != spec.habitat]))
    background = _background(habitat, rng)
    side = SIZE * SUPER
    scale = rng.uniform(0.8, 1.1)
    half = 18 * scale  # object half-size in pixels
    angle = rng.uniform(-15, 15)
    max_shift = SIZE / 2 - half - 2
    dx, dy = rng.uniform(-max_shift, max_shift, size=2)
    painter = _Painter(side)
    # drawing happens around the canvas centre; translate coordinates through a wrapper
    centre = side / 2

    class _Shifted:
        def shape(self, kind, xy, fill, part=False, **kw):
            if kind in ("ellipse", "rectangle", "pieslice"):
                x0, y0, x1, y1 = xy
                xy = [x0 + centre, y0 + centre, x1 + centre, y1 + centre]
            else:
                xy = [(px + centre, py + centre) for px, py in xy]
            painter.shape(kind, xy, fill, part=part, **kw)

    spec.draw(_Shifted(), half * SUPER)
    def placed(layer: Image.Image) -> np.ndarray:
        moved = layer.rotate(angle, resample=Image.BICUBIC, translate=(dx * SUPER, dy * SUPER))
        return np.asarray(moved.resize((SIZE, SIZE), Image.BOX), dtype=np.float32)

    obj_small, part_small = placed(painter.obj), placed(painter.part)
    alpha = obj_small[..., 3]
    mask = alpha >= 128
    # BOX resampling of straight (non-premultiplied) RGBA: un-mix the transparent black
    colour = obj_small[..., :3] * 255.0 / np.maximum(alpha[..., None], 1.0)
    image = background.copy()
    image[mask] = np.clip(colour[mask], 0, 255).astype(np.uint8)
    part_mask = (part_small >= 128) & mask
    attributes = {name: (placed(layer) >= 128) & mask for name, layer in painter.attributes.items()}
    return WorldSample(image=image, mask=mask, part_mask=part_mask, concept=concept, habitat=habitat, attributes=attributes)


def sample(concept: int, seed: int, split: str = "train") -> WorldSample:
    """The image number `seed` of `concept` in `split`: the same arguments give the same pixels."""
    return render(concept, np.random.default_rng(derive_seed("miniworld", split, concept, seed)))


def batch(n_per_concept: int, split: str, start: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images (N,64,64,3) uint8, labels (N,), object masks and part masks (N,64,64) of every concept."""
    items = [sample(c, start + i, split) for i in range(n_per_concept) for c in range(len(CONCEPTS))]
    return (
        np.stack([s.image for s in items]),
        np.array([s.concept for s in items], dtype=np.int64),
        np.stack([s.mask for s in items]),
        np.stack([s.part_mask for s in items]),
    )
