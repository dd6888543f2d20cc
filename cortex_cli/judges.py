"""Independent judges: pixel classifiers that score decoded images (never trained on tokens).

For the bundled mini model: the bundled ResNet and ViT judges. ImageNet judges (torchvision
ResNet-18/50, ViT-B/16/32) are added by the evaluation issue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .errors import CortexError
from .registry import BUNDLED_DIR, MINI_NAME, ModelInfo


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


def mini_judges(device: torch.device | str = "cpu") -> list[Judge]:
    """The bundled mini-world judges (ResNet-10 and a small ViT), on `device`."""
    from safetensors.torch import load_file

    from .miniworld.judges import JUDGE_KINDS, build_judge, from_model_output
    from .miniworld.world import CONCEPTS

    judges = []
    for kind in JUDGE_KINDS:
        path = BUNDLED_DIR / MINI_NAME / f"judge_{kind}.safetensors"
        if not path.is_file():
            raise CortexError(f"bundled judge {path.name} is missing; run `cortex train-mini` or reinstall cortex")
        model = build_judge(kind, len(CONCEPTS))
        ref = model.state_dict()
        model.load_state_dict({k: v.to(ref[k].dtype) for k, v in load_file(str(path)).items()}, strict=True)
        judges.append(Judge(kind, model.to(device).eval(), from_model_output))
    return judges


def judges_for(model: ModelInfo, device: torch.device | str = "cpu") -> list[Judge]:
    """The judges that score images of `model`."""
    if model.labels == "mini":
        return mini_judges(device)
    raise CortexError(f"no judges known for model {model.name!r}; judges exist for the mini model and ImageNet-labelled models")
