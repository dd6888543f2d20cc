"""Independent judges: pixel classifiers that score decoded images (never trained on tokens).

For the bundled mini model: the bundled ResNet and ViT judges. For ImageNet-labelled models:
torchvision's ResNet-18/50 and ViT-B/16/32 with their official weights, found offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..core.errors import CortexError, first_line
from ..miniworld.world import CONCEPTS
from ..models.registry import BUNDLED_DIR, MINI_NAME, ModelInfo
from ..core.weights import load_weights


@dataclass
class Judge:
    """A classifier of decoded images; `preprocess` maps decoder output in [-1, 1] to its input."""

    name: str
    model: torch.nn.Module
    preprocess: Callable[[torch.Tensor], torch.Tensor]

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Softmax probabilities (B x classes) of images in [-1, 1] (B x 3 x H x W)."""
        out = [self.model(self.preprocess(chunk)).float().softmax(-1) for chunk in images.split(batch_size)]
        return torch.cat(out)


def judge_probabilities(judges: Sequence[Judge], images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Judge name -> softmax probabilities (B x classes, on the CPU) of images in [-1, 1]."""
    return {j.name: j.probabilities(images).cpu() for j in judges}


def target_probability(probs: torch.Tensor, class_ids: Sequence[int]) -> torch.Tensor | None:
    """A judge's P(target) per image (B,) from its softmax (B x classes): a class's probability, a concept's the sum of its
    member classes' (the classes are disjoint outcomes); None when a member is beyond the judge's classes."""
    ids = sorted({int(c) for c in class_ids})
    if not ids or ids[0] < 0 or ids[-1] >= probs.shape[1]:
        return None
    if len(ids) == 1:
        return probs[:, ids[0]]
    return probs[:, ids].sum(dim=1)


def mini_judges(device: torch.device | str = "cpu") -> list[Judge]:
    """The bundled mini-world judges (ResNet-10 and a small ViT), on `device`."""
    from ..miniworld.judge_training import JUDGE_KINDS, build_judge, from_model_output  # heavy: torchvision, ~2 s on every cortex start

    judges = []
    for kind in JUDGE_KINDS:
        path = BUNDLED_DIR / MINI_NAME / f"judge_{kind}.safetensors"
        if not path.is_file():
            raise CortexError(f"bundled judge {path.name} is missing; run `cortex train-mini` or reinstall cortex")
        model = build_judge(kind, len(CONCEPTS))
        ref = model.state_dict()
        model.load_state_dict({k: v.to(ref[k].dtype) for k, v in load_weights(path).items()}, strict=True)
        judges.append(Judge(kind, model.to(device).eval(), from_model_output))
    return judges


# name -> (torchvision builder, weights enum member): the paper's four pretrained judges
IMAGENET_JUDGES: dict[str, tuple[str, str]] = {
    "resnet18": ("resnet18", "ResNet18_Weights.IMAGENET1K_V1"),
    "resnet50": ("resnet50", "ResNet50_Weights.IMAGENET1K_V1"),
    "vit_b_16": ("vit_b_16", "ViT_B_16_Weights.IMAGENET1K_V1"),
    "vit_b_32": ("vit_b_32", "ViT_B_32_Weights.IMAGENET1K_V1"),
}


def _weights_enum(spec: str):
    import torchvision.models as tvm  # heavy: ~2 s on every cortex start

    enum_name, member = spec.split(".")
    return getattr(getattr(tvm, enum_name), member)


def imagenet_weight_files(names: tuple[str, ...] | None = None) -> dict[str, str]:
    """The checkpoint file name torchvision uses for each ImageNet judge (from its weights URL)."""
    names = names or tuple(IMAGENET_JUDGES)
    return {n: _weights_enum(IMAGENET_JUDGES[n][1]).url.rsplit("/", 1)[-1] for n in names}


def imagenet_judges(
    device: torch.device | str = "cpu",
    weights_dir: str | Path | None = None,
    names: tuple[str, ...] | None = None,
) -> list[Judge]:
    """torchvision's ResNet-18, ResNet-50, ViT-B/16 and ViT-B/32 with their official ImageNet weights.

    Never downloads: each checkpoint is looked up in `weights_dir` (when given) and in the torch hub
    cache (`torch.hub.get_dir()/checkpoints`), under torchvision's own file name. Each judge resizes,
    centre-crops and normalises images as its weights' `transforms()` prescribe.

    Args:
        device: where to run the judges.
        weights_dir: an extra directory holding the `.pth` files.
        names: a subset of `IMAGENET_JUDGES` (default: all four).

    Raises:
        CortexError: naming every missing file and where to put it.
    """
    import torchvision.models as tvm  # heavy: ~2 s on every cortex start

    names = names or tuple(IMAGENET_JUDGES)
    unknown = [n for n in names if n not in IMAGENET_JUDGES]
    if unknown:
        raise CortexError(f"unknown ImageNet judge {unknown[0]!r}; choose from {', '.join(IMAGENET_JUDGES)}")
    dirs = ([Path(weights_dir).expanduser()] if weights_dir else []) + [Path(torch.hub.get_dir()) / "checkpoints"]
    files = imagenet_weight_files(names)
    found, missing = {}, []
    for name, fname in files.items():
        hit = next((d / fname for d in dirs if (d / fname).is_file()), None)
        if hit is None:
            missing.append(fname)
        else:
            found[name] = hit
    if missing:
        where = " or ".join(repr(str(d)) for d in dirs)
        raise CortexError(
            f"ImageNet judge weights not found: {', '.join(missing)}; put these torchvision files (from "
            f"download.pytorch.org/models/) in {where}, or pass --judge-weights DIR"
        )
    judges = []
    for name in names:
        builder, spec = IMAGENET_JUDGES[name]
        weights = _weights_enum(spec)
        model = getattr(tvm, builder)(weights=None)
        try:
            state = torch.load(found[name], map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
        except Exception as exc:  # corrupt or wrong file under the right name
            raise CortexError(f"judge weights {str(found[name])!r} do not load into {name}: {first_line(exc)}") from exc
        transform = weights.transforms()
        judges.append(Judge(name, model.to(device).eval(), lambda x, t=transform: t((x.clamp(-1, 1) + 1) / 2)))
    return judges


def judges_for(model: ModelInfo, device: torch.device | str = "cpu", weights_dir: str | Path | None = None) -> list[Judge]:
    """The judges that score images of `model`: the bundled mini judges or the four ImageNet ones."""
    if model.is_mini:
        return mini_judges(device)
    if model.labels == "imagenet":
        return imagenet_judges(device, weights_dir)
    raise CortexError(f"no judges known for model {model.name!r}; judges exist for the mini model and ImageNet-labelled models")


def judges_or_notice(model: ModelInfo, device: torch.device | str, notices: list[str]) -> list[Judge]:
    """The model's judges, or none and a notice saying why (for results that report judges where there are any)."""
    try:
        return judges_for(model, device)
    except CortexError as exc:
        notices.append(f"no judge scores: {exc}")
        return []
