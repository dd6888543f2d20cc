"""The parameters of one attribution pass, listed once: their dataclass fields drive the run key, the JSON and the CLI help."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch

from ..core.errors import CortexError
from .common import PRECISIONS, REDUCTIONS
from .integrated_gradients import BASELINES
from .registry import METHODS, method_named
from .noise_tunnel import NOISES


def _opt(default: Any, help: str, *, key: bool = True, neutral: Any = None) -> Any:
    """A settings field: `help` is its CLI help; `key`: part of the run key; `neutral`: stored when the method ignores it."""
    meta: dict[str, Any] = {"help": help, "key": key}
    if neutral is not None:
        meta["neutral"] = neutral
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class SaliencySettings:
    """Parameters of one saliency pass (defaults: the authors' released SmoothGrad)."""

    samples: int = _opt(20, "N, noisy copies per image (smoothgrad).", neutral=1)
    alpha: float = _opt(0.2, "Noise scale (smoothgrad): sigma = alpha * (max(E) - min(E)) per image.", neutral=0.0)
    top_n: int = _opt(20, "Tokens stored per image (its T*_image).")
    reduce: str = _opt("max-abs", "Channel reduction: max-abs (paper eq. 5), signed-max (authors' code), mean (mean |attribution|), "
                       "sum (signed sum; completeness for integrated-gradients).")
    precision: str = _opt("fp32", "fp32, or bf16 autocast (faster on bf16 hardware; its maps keep 98% of fp32's top 20, a second "
                          "noise seed keeps 80%); default: bf16 on CUDA, fp32 elsewhere (`default_precision`).")
    seed: int = _opt(0, "Noise seed (smoothgrad).", neutral=0)
    chunk: int | None = _opt(None, "Inputs per forward/backward pass; None: by device (`default_chunk`).", key=False)
    method: str = _opt("smoothgrad", "Attribution method: " + ", ".join(METHODS) + ".")
    steps: int = _opt(50, "Integrated Gradients' integration points (Captum's Gauss-Legendre rule); other methods ignore it.", neutral=0)
    baseline: str = _opt("zeros", "Integrated Gradients' baseline embedding: " + " or ".join(BASELINES) + "; other methods ignore it.", neutral="none")
    noise: str = _opt("philox", "SmoothGrad's noise generator: philox (counter-based, drawn on the device, keyed by image and --seed: "
                      "a map does not depend on its batch, the rank count or the device) or host (per-image CPU generators: "
                      "the runs of older stores).", neutral="none")

    def validate(self) -> "SaliencySettings":
        """Raise CortexError on an out-of-range value; return self."""
        used = method_named(self.method).PARAMETERS
        if self.samples < 1:
            raise CortexError(f"--samples must be >= 1, got {self.samples}")
        if not self.alpha >= 0:
            raise CortexError(f"--alpha must be >= 0, got {self.alpha}")
        if self.top_n < 1:
            raise CortexError(f"--top-n must be >= 1, got {self.top_n}")
        if self.reduce not in REDUCTIONS:
            raise CortexError(f"--reduce must be one of {', '.join(REDUCTIONS)}, got {self.reduce!r}")
        if self.precision not in PRECISIONS:
            raise CortexError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.chunk is not None and self.chunk < 1:
            raise CortexError(f"chunk must be >= 1, got {self.chunk}")
        if "steps" in used and self.steps < 1:
            raise CortexError(f"--ig-steps must be >= 1, got {self.steps}")
        if "noise" in used and self.noise not in NOISES:
            raise CortexError(f"--noise must be one of {', '.join(NOISES)}, got {self.noise!r}")
        if "baseline" in used and self.baseline not in BASELINES:
            raise CortexError(f"--ig-baseline must be one of {', '.join(BASELINES)}, got {self.baseline!r}")
        return self

    def canonical(self) -> "SaliencySettings":
        """These settings with every parameter the method ignores set to its neutral value (one run per distinct result)."""
        used = method_named(self.method).PARAMETERS
        return replace(self, **{f.name: f.metadata["neutral"] for f in fields(self) if "neutral" in f.metadata and f.name not in used})

    def run_key(self) -> dict[str, Any]:
        """The values that identify a saliency run: every key field of the canonical settings."""
        c = self.canonical()
        return {f.name: getattr(c, f.name) for f in fields(c) if f.metadata.get("key", True)}

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON reports them: the run key (what the method used)."""
        return self.run_key()


def default_precision(device: torch.device | str) -> str:
    """The saliency precision a command takes when none is named: bf16 on CUDA, fp32 elsewhere.

    bf16 changes the maps less than the method's own variation does (trained mini CE / RE, 39 images, N = 20:
    bf16 keeps 98.2% / 98.3% of fp32's top-20 tokens, a second noise seed 81.3% / 79.9%; `cortex eval
    stability`), so on hardware where it pays it is the default; a CPU gains nothing from it. It is part of
    the run key, so a CUDA run and a CPU run of one command are two runs, never mixed.
    """
    return "bf16" if torch.device(device).type == "cuda" else "fp32"


OPTION_ALIASES = {"ig_steps": "steps", "ig_baseline": "baseline"}  # the API's and the CLI's names of two fields


def saliency_settings(device: torch.device | str, base: SaliencySettings | None = None, **options: Any) -> SaliencySettings:
    """`base` (default: the defaults, at `default_precision(device)`) with the named fields replaced, validated.

    Options are field names or their aliases (`ig_steps`, `ig_baseline`); None leaves a field as it is.

    Raises:
        CortexError: an unknown option, or a value out of range.
    """
    names = {f.name for f in fields(SaliencySettings)}
    given = {OPTION_ALIASES.get(k, k): v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - names)
    if unknown:
        known = ", ".join(sorted((names - set(OPTION_ALIASES.values())) | set(OPTION_ALIASES)))
        raise CortexError(f"unknown saliency option(s) {', '.join(unknown)}; known: {known}")
    return replace(base or SaliencySettings(precision=default_precision(device)), **given).validate()


def field_help(name: str) -> str:
    """The CLI help of a SaliencySettings field."""
    return next(f.metadata["help"] for f in fields(SaliencySettings) if f.name == name)


def key_fields() -> tuple[str, ...]:
    """The names of the fields that identify a run, in declaration order."""
    return tuple(f.name for f in fields(SaliencySettings) if f.metadata.get("key", True))
