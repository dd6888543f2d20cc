"""The information extractors f_Y of the paper (appendix A.1): CE (a VGG-style CNN) and RE (an SE-ResNet).

Both read a token-based embedding E (B x d x m x m, the codebook vectors of a token grid) and return
class logits. One config covers the paper's setting (d=256, m=16, width 512, 1000 classes) and the
small mini-model variants; only the sizes change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ..core.errors import CortexError

ARCHS = ("ce", "re", "re-authors")
PAPER_FC_WIDTH = {"ce": 4096, "re": 2048, "re-authors": 2048}  # A.1.1: 4096 -> 4096; A.1.2: 512 -> 2048


def logits_of(output: torch.Tensor | tuple | list) -> torch.Tensor:
    """An extractor's class logits: its output, or the first element of a (logits, ...) tuple or list."""
    return output[0] if isinstance(output, (tuple, list)) else output


@dataclass
class ExtractorConfig:
    """Sizes of an extractor; the defaults are the paper's (ImageNet VQGAN, 1000 classes)."""

    arch: str  # 'ce' (CNN-based) or 're' (ResNet-based)
    in_channels: int = 256  # d, the codebook width
    grid: int = 16  # m, the token grid side
    width: int = 512  # conv channels (CE filters; RE channels after the stem)
    n_classes: int = 1000
    fc_width: int | None = None  # hidden FC width; None -> 4096 for CE, 2048 for RE (the paper's)
    se_reduction: int = 16  # RE's squeeze-and-excitation bottleneck ratio
    dropout: float = 0.5
    # a subset extractor's label map: output i is the model's class class_ids[i] (sorted); None: output i is class i
    class_ids: list[int] | None = None
    # a concept extractor (`train-extractor --concept`): 2 outputs, 0 = not the concept, 1 = the concept; the concept's
    # name and its member class ids when it was trained (the positives); None: a class extractor
    concept: str | None = None
    concept_class_ids: list[int] | None = None

    def __post_init__(self) -> None:
        self.arch = str(self.arch).lower()
        if self.arch not in ARCHS:
            raise CortexError(f"unknown extractor architecture {self.arch!r}; use one of {', '.join(ARCHS)}")
        if self.fc_width is None:
            self.fc_width = PAPER_FC_WIDTH[self.arch]
        for key in ("in_channels", "grid", "width", "n_classes", "fc_width", "se_reduction"):
            if int(getattr(self, key)) < 1:
                raise CortexError(f"extractor {key} must be positive, got {getattr(self, key)}")
        if self.arch == "ce" and self.grid % 4:
            raise CortexError(f"the CNN extractor pools twice by 2, so the grid side must be a multiple of 4, got {self.grid}")
        if not 0.0 <= self.dropout < 1.0:
            raise CortexError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.class_ids is not None:
            self.class_ids = sorted(int(c) for c in self.class_ids)
            if not self.class_ids or len(set(self.class_ids)) != len(self.class_ids):
                raise CortexError(f"an extractor's classes must be distinct and at least one, got {self.class_ids}")
            if self.class_ids[0] < 0 or self.class_ids[-1] >= self.n_classes:
                raise CortexError(f"extractor classes {self.class_ids} must lie in 0..{self.n_classes - 1}")
        if (self.concept is None) != (self.concept_class_ids is None):
            raise CortexError("a concept extractor needs both its concept's name and its member classes")
        if self.concept is not None:
            if self.class_ids is not None:
                raise CortexError(f"an extractor is trained for a concept ({self.concept!r}) or for a subset of classes, not both")
            self.concept = " ".join(str(self.concept).split())
            members = sorted(int(c) for c in self.concept_class_ids)
            if not self.concept or not members or len(set(members)) != len(members):
                raise CortexError(f"a concept extractor needs a name and distinct member classes, got {self.concept!r} {members}")
            if members[0] < 0 or members[-1] >= self.n_classes:
                raise CortexError(f"concept classes {members} must lie in 0..{self.n_classes - 1}")
            if len(members) == self.n_classes:
                raise CortexError(f"concept {self.concept!r} has every class as a member: no image is not-{self.concept}")
            self.concept_class_ids = members

    @property
    def n_outputs(self) -> int:
        """Width of the classifier head: 2 for a concept (not-Y, Y), the subset's size, else every class."""
        if self.concept is not None:
            return 2
        return len(self.class_ids) if self.class_ids is not None else self.n_classes

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("class_ids", "concept", "concept_class_ids"):
            if data[key] is None:
                del data[key]  # full extractors keep the JSON (and run fingerprints) they had before subsets and concepts
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExtractorConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=1, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class CNNExtractor(nn.Module):
    """CE (A.1.1): 2 blocks of 4 conv3x3+BN+ReLU, 2x2 max-pool after each; FC -> fc -> fc -> classes."""

    def __init__(self, cfg: ExtractorConfig):
        super().__init__()
        w, fc = cfg.width, int(cfg.fc_width)
        layers: list[nn.Module] = []
        c_in = cfg.in_channels
        for _block in range(2):
            for _ in range(4):
                layers += _conv_bn_relu(c_in, w)
                c_in = w
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        side = cfg.grid // 4
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(w * side * side, fc), nn.BatchNorm1d(fc), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout),
            nn.Linear(fc, fc), nn.BatchNorm1d(fc), nn.ReLU(inplace=True),
            nn.Linear(fc, cfg.n_outputs),
        )

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(embedding))


class SqueezeExcitation(nn.Module):
    """Channel attention: GAP -> FC (reduce) -> ReLU -> FC (expand) -> sigmoid -> rescale."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc(x.mean(dim=(2, 3)))
        return x * weights[:, :, None, None]


class SEResidualBlock(nn.Module):
    """conv3x3+BN+ReLU, conv3x3+BN, SE, identity shortcut, ReLU (channels kept)."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
        )
        self.se = SqueezeExcitation(channels, reduction)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.se(self.body(x)))


class ResNetExtractor(nn.Module):
    """RE (A.1.2): stem d -> width, 2 layers x 3 SE residual blocks, GAP, FC width -> fc -> classes.

    The paper keeps the channel count inside the residual layers and its head starts at 512 features,
    while E has d=256 channels; a 3x3 conv+BN+ReLU stem lifts d to `width` (512) so that every block
    can use an identity shortcut. No block downsamples (the paper names no stride).
    """

    def __init__(self, cfg: ExtractorConfig):
        super().__init__()
        w, fc = cfg.width, int(cfg.fc_width)
        self.stem = nn.Sequential(nn.Conv2d(cfg.in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        self.layer1 = nn.Sequential(*[SEResidualBlock(w, cfg.se_reduction) for _ in range(3)])
        self.layer2 = nn.Sequential(*[SEResidualBlock(w, cfg.se_reduction) for _ in range(3)])
        self.head = nn.Sequential(
            nn.Linear(w, fc), nn.BatchNorm1d(fc), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout),
            nn.Linear(fc, cfg.n_outputs),
        )

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(embedding)))
        return self.head(x.mean(dim=(2, 3)))


class AuthorsSEBlock(nn.Module):
    """The authors' released block: conv3x3(stride)+BN+ReLU, conv3x3+BN, + shortcut, then SE, then ReLU.

    The shortcut is a 1x1 conv+BN projection when the block changes stride or width.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, reduction: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
        )
        project = stride != 1 or c_in != c_out
        self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)) if project else nn.Identity()
        self.se = SqueezeExcitation(c_out, reduction)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.se(self.body(x) + self.shortcut(x)))


class AuthorsResNetExtractor(nn.Module):
    """RE as in the authors' released code (`re-authors`), where it differs from our reading of A.1.2.

    No stem: each of the 2 layers opens with a stride-2 block whose 1x1 projection shortcut lifts
    d -> width (so 16x16 -> 8x8 -> 4x4), and SE rescales the residual *sum* rather than the branch.
    Head as in `ResNetExtractor` (their dropout is 0.4; set `dropout` to match).
    """

    def __init__(self, cfg: ExtractorConfig):
        super().__init__()
        w, fc, r = cfg.width, int(cfg.fc_width), cfg.se_reduction
        self.layer1 = nn.Sequential(AuthorsSEBlock(cfg.in_channels, w, 2, r), *[AuthorsSEBlock(w, w, 1, r) for _ in range(2)])
        self.layer2 = nn.Sequential(AuthorsSEBlock(w, w, 2, r), *[AuthorsSEBlock(w, w, 1, r) for _ in range(2)])
        self.head = nn.Sequential(
            nn.Linear(w, fc), nn.BatchNorm1d(fc), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout),
            nn.Linear(fc, cfg.n_outputs),
        )

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer2(self.layer1(embedding)).mean(dim=(2, 3)))


def build_extractor(cfg: ExtractorConfig) -> nn.Module:
    """A freshly initialised extractor.

    Args:
        cfg: architecture and sizes.

    Returns:
        A module mapping E (B x d x m x m) to logits (B x n_outputs: the subset's classes, in class-id order, if any).
    """
    if cfg.arch == "ce":
        return CNNExtractor(cfg)
    return ResNetExtractor(cfg) if cfg.arch == "re" else AuthorsResNetExtractor(cfg)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable-or-not parameters (buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


def forward_flops(cfg: ExtractorConfig) -> int:
    """FLOPs (multiply-add = 2) of one image's forward pass, counted by torch on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode  # heavy: ~0.15 s on every cortex start

    with torch.device("meta"):
        net = build_extractor(cfg).eval()
        x = torch.empty(1, cfg.in_channels, cfg.grid, cfg.grid)
    counter = FlopCounterMode(display=False)
    with counter:
        net(x)
    return int(counter.get_total_flops())
