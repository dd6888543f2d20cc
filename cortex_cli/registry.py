"""Registered models and their classes: add, list, look up, load (cached)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch

from . import classnames
from .backends.base import VQGM
from .backends.taming import config_hash, load_vqgm, sanitize_config, _load_yaml
from .classnames import ClassName
from .errors import CortexError
from .store import models as model_store
from .store.database import Store
from .store.models import ClassInfo, ModelInfo

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
MINI_NAME = "mini"
MINI_CONFIG = BUNDLED_DIR / "mini" / "config.yaml"
MINI_WEIGHTS = BUNDLED_DIR / "mini" / "model.safetensors"
DEFAULT_MODEL = MINI_NAME


def _new_classes(labels: list[ClassName]) -> list[model_store.NewClass]:
    return [model_store.NewClass(c.class_id, c.name, tuple(c.synonyms)) for c in labels]


def _quiet_load(config: str | Path, ckpt: str | Path, device: torch.device | str) -> VQGM:
    with contextlib.redirect_stdout(io.StringIO()):  # taming prints shapes while building
        return load_vqgm(config, ckpt, device)


def add_model(store: Store, name: str, config: str | Path, ckpt: str | Path, labels: str | None = None) -> ModelInfo:
    """Register a taming model after loading it strictly; replaces nothing (names are unique).

    Args:
        name: a short name for `--model`.
        config, ckpt: taming config yaml and checkpoint.
        labels: 'imagenet', 'mini', a TSV file of 'id<TAB>name, synonym...', or None.
    """
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise CortexError(f"model name {name!r} must be letters, digits, '-', '_' or '.'")
    config_path, ckpt_path = Path(config).expanduser().resolve(), Path(ckpt).expanduser().resolve()
    if model_store.model_named(store, name) is not None:
        raise CortexError(f"a model named {name!r} is already registered; pick another name")
    model = _quiet_load(config_path, ckpt_path, "cpu")
    labels_list = classnames.load_labels(labels, model.n_classes)
    row = model_store.NewModel(
        name=name, config_path=str(config_path), ckpt_path=str(ckpt_path),
        config_hash=config_hash(model.config), n_embed=model.n_embed, embed_dim=model.embed_dim,
        grid=model.grid, image_size=model.image_size, labels=labels or "",
    )
    info = model_store.insert_model(store, row, _new_classes(labels_list))  # CortexError if registered meanwhile
    _MODEL_CACHE[(str(config_path), str(ckpt_path), "cpu")] = model
    return info


def ensure_bundled(store: Store) -> None:
    """Register the bundled mini model in this database if its weights are installed."""
    if not MINI_WEIGHTS.is_file():
        return
    found = model_store.model_named(store, MINI_NAME)
    if found is not None:
        if found.ckpt_path != str(MINI_WEIGHTS) or found.config_path != str(MINI_CONFIG):
            model_store.set_model_paths(store, MINI_NAME, str(MINI_CONFIG), str(MINI_WEIGHTS))  # package moved
        return
    config = sanitize_config(_load_yaml(MINI_CONFIG))
    fs = config.model.params.first_stage_config.params
    labels = classnames.mini_classes()
    res = int(fs.ddconfig.resolution)
    row = model_store.NewModel(
        name=MINI_NAME, config_path=str(MINI_CONFIG), ckpt_path=str(MINI_WEIGHTS), config_hash=config_hash(config),
        n_embed=int(fs.n_embed), embed_dim=int(fs.embed_dim), grid=res // 2 ** (len(fs.ddconfig.ch_mult) - 1),
        image_size=res, labels="mini",
    )
    # several processes (torchrun ranks) may open a fresh database at once: one registers it
    model_store.insert_model_if_absent(store, row, _new_classes(labels))


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


_MODEL_CACHE: dict[tuple[str, str, str], VQGM] = {}


def load_model(model: ModelInfo, device: torch.device | str = "cpu") -> VQGM:
    """The loaded VQGM of a registered model (cached per process and device)."""
    key = (model.config_path, model.ckpt_path, str(device))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = _quiet_load(model.config_path, model.ckpt_path, device)
    return _MODEL_CACHE[key]
