"""Registered models and their classes: add, list, look up, load (cached)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from . import classnames
from ..backends import DEFAULT as DEFAULT_BACKEND
from ..backends import Backend, ModelFiles, get_backend, hub
from ..backends.base import VQGM
from .classnames import ClassName
from ..core.errors import CortexError
from ..core.results import Result
from ..store import registered_models as model_store
from ..store.database import Store
from ..store.registered_models import MINI_NAME, ClassInfo, ModelInfo

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "bundled"  # cortex_cli/bundled
MINI_CONFIG = BUNDLED_DIR / "mini" / "config.yaml"
MINI_WEIGHTS = BUNDLED_DIR / "mini" / "model.safetensors"
MINI_BACKEND = "taming"
DEFAULT_MODEL = MINI_NAME


def _new_classes(labels: list[ClassName]) -> list[model_store.NewClass]:
    return [model_store.NewClass(c.class_id, c.name, tuple(c.synonyms)) for c in labels]


def add_model(
    store: Store,
    name: str,
    config: str | Path | None = None,
    ckpt: str | Path | None = None,
    labels: str | None = None,
    *,
    backend: str = DEFAULT_BACKEND,
    path: str | Path | None = None,
    options: Mapping[str, str] | None = None,
) -> ModelInfo:
    """Register a model after loading it strictly; replaces nothing (names are unique).

    Args:
        name: a short name for `--model`.
        config, ckpt: the model's config and checkpoint (taming: the yaml and last.ckpt).
        labels: 'imagenet', 'mini', a TSV file of 'id<TAB>name, synonym...', or None. A text-conditional
            model (janus) needs them: each class name becomes its prompt.
        backend: the `cortex.backends` entry point that loads it ('taming', 'janus', ...).
        path: one path instead of config and ckpt, for backends that read a directory (janus: a local
            snapshot of the weights).
        options: what the backend needs besides files (llamagen: gpt_model, image_size, downsample), kept
            with the model so that loading it later gets them back.
        Any of path, config, ckpt may name a Hugging Face Hub file, hf://OWNER/REPO[@REVISION]/path
        (`backends.hub`); the registered model keeps the local copy's path.

    Raises:
        CortexError: a bad name or a taken one, an unknown backend, files the backend cannot load.
    """
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise CortexError(f"model name {name!r} must be letters, digits, '-', '_' or '.'")
    gen = get_backend(backend)
    given = {k: str(v) for k, v in (options or {}).items() if v is not None}
    extra = _option_keywords(gen, given)
    files = gen.locate(*(hub.resolve_path(p) if p is not None else None for p in (path, config, ckpt)), **extra)
    if model_store.model_named(store, name) is not None:
        raise CortexError(f"a model named {name!r} is already registered; pick another name")
    shape = gen.describe(files, **extra)
    if not shape.n_classes and not labels:
        raise CortexError(f"a {backend} model is text-conditional: name its classes (the prompts) with --labels, "
                          "e.g. --labels imagenet or a TSV file 'id<TAB>name'")
    model = gen.load(files, "cpu", **extra)
    labels_list = classnames.load_labels(labels, shape.n_classes)
    row = model_store.NewModel(
        name=name, config_path=str(files.config), ckpt_path=str(files.ckpt), config_hash=shape.config_hash,
        n_embed=model.n_embed, embed_dim=model.embed_dim, grid=model.grid, image_size=model.image_size,
        labels=labels or "", backend=backend, options=json.dumps(given, sort_keys=True),
    )
    info = model_store.insert_model(store, row, _new_classes(labels_list))  # CortexError if registered meanwhile
    _MODEL_CACHE[_cache_key(info, "cpu")] = model
    return info


def model_files(config: str | Path | None = None, ckpt: str | Path | None = None, *, vq_ckpt: str | Path | None = None,
                gpt_ckpt: str | Path | None = None) -> tuple[str | Path | None, str | Path | None]:
    """`add_model`'s (config, ckpt) from taming's names or llamagen's: its VQ checkpoint takes the config's place, its GPT
    checkpoint the checkpoint's.

    Raises:
        CortexError: both names given for one of them.
    """
    if (gpt_ckpt is not None and ckpt is not None) or (vq_ckpt is not None and config is not None):
        raise CortexError("give --gpt-ckpt/--vq-ckpt (llamagen) or --ckpt/--config (taming), not both")
    return vq_ckpt if vq_ckpt is not None else config, gpt_ckpt if gpt_ckpt is not None else ckpt


def _option_keywords(backend: Backend, options: Mapping[str, str]) -> dict[str, Any]:
    """`options=` for a backend's locate/describe/load, or nothing; CortexError if it takes none but some are given."""
    if not options:
        return {}
    if "options" not in inspect.signature(backend.locate).parameters:
        flags = ", ".join("--" + k.replace("_", "-") for k in sorted(options))
        raise CortexError(f"the {backend.name} backend takes no {flags}; those are for --backend llamagen")
    return {"options": dict(options)}


def ensure_bundled(store: Store) -> None:
    """Register the bundled mini model in this database if its weights are installed."""
    if not MINI_WEIGHTS.is_file():
        return
    found = model_store.model_named(store, MINI_NAME)
    if found is not None:
        if found.ckpt_path != str(MINI_WEIGHTS) or found.config_path != str(MINI_CONFIG):
            model_store.set_model_paths(store, MINI_NAME, str(MINI_CONFIG), str(MINI_WEIGHTS))  # package moved
        return
    shape = get_backend(MINI_BACKEND).describe(ModelFiles(MINI_CONFIG, MINI_WEIGHTS))
    row = model_store.NewModel(
        name=MINI_NAME, config_path=str(MINI_CONFIG), ckpt_path=str(MINI_WEIGHTS), config_hash=shape.config_hash,
        n_embed=shape.n_embed, embed_dim=shape.embed_dim, grid=shape.grid, image_size=shape.image_size, labels="mini",
        backend=MINI_BACKEND,
    )
    # several processes (torchrun ranks) may open a fresh database at once: one registers it
    model_store.insert_model_if_absent(store, row, _new_classes(classnames.mini_classes()))


def list_models(store: Store) -> list[ModelInfo]:
    return model_store.list_models(store)


def get_model(store: Store, name: str | None = None) -> ModelInfo:
    """A registered model by name (default: the bundled mini model)."""
    name = name or DEFAULT_MODEL
    models = list_models(store)
    for m in models:
        if m.name == name:
            return m
    if name == MINI_NAME:
        raise CortexError("the bundled mini model's weights are not installed; run `cortex train-mini` or reinstall cortex")
    known = ", ".join(m.name for m in models) or "none"
    raise CortexError(f"no model named {name!r} (registered: {known}); add one with `cortex models add`")


def classes(store: Store, model: ModelInfo) -> list[ClassInfo]:
    return model_store.model_classes(store, model.id)


def resolve_class(store: Store, model: ModelInfo, spec: str | int) -> ClassInfo:
    """A class of `model` by id or name/synonym ("did you mean ...?" on a near miss)."""
    infos = classes(store, model)
    found = classnames.resolve(spec, [ClassName(c.class_id, c.name, c.synonyms) for c in infos])
    return next(c for c in infos if c.class_id == found.class_id)


def text_conditional(model: ModelInfo) -> bool:
    """Whether the model's prior takes any text (janus) rather than a fixed set of class ids (taming); reads its files' shape."""
    files = ModelFiles(Path(model.config_path), Path(model.ckpt_path))
    gen = get_backend(model.backend)
    return gen.describe(files, **_option_keywords(gen, model.backend_options)).n_classes == 0


_MODEL_CACHE: dict[tuple, VQGM] = {}


def _cache_key(model: ModelInfo, device: torch.device | str) -> tuple:
    return (model.backend, model.config_path, model.ckpt_path, model.options, str(device))


def load_model(model: ModelInfo, device: torch.device | str = "cpu") -> VQGM:
    """The loaded VQGM of a registered model, by its backend (cached per process and device)."""
    key = _cache_key(model, device)
    if key not in _MODEL_CACHE:
        files = ModelFiles(Path(model.config_path), Path(model.ckpt_path))
        gen = get_backend(model.backend)
        _MODEL_CACHE[key] = gen.load(files, device, **_option_keywords(gen, model.backend_options))
    return _MODEL_CACHE[key]


@dataclass(frozen=True)
class RegisteredModel(ModelInfo, Result):
    """A registered model and its classes (`cortex models list --json`)."""

    classes: list[ClassInfo] = field(default_factory=list)

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per class."""
        return [{"class_id": c.class_id, "name": c.name, "synonyms": ", ".join(c.synonyms)} for c in self.classes]


def registered_models(store: Store) -> list[RegisteredModel]:
    """Every registered model with its classes (the bundled `mini` first)."""
    return [RegisteredModel(**asdict(m), classes=classes(store, m)) for m in list_models(store)]
