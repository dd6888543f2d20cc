"""Registered models and their classes: add, list, look up, load (cached)."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import torch
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from . import classnames
from .adapter import VQGM, config_hash, load_vqgm, sanitize_config, _load_yaml
from .classnames import ClassName
from .errors import CortexError
from .store.database import Store
from .store.dialect import insert_ignore
from .store.schema import ClassRow, ModelRow

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
MINI_NAME = "mini"
MINI_CONFIG = BUNDLED_DIR / "mini" / "config.yaml"
MINI_WEIGHTS = BUNDLED_DIR / "mini" / "model.safetensors"
DEFAULT_MODEL = MINI_NAME


@dataclass(frozen=True)
class ModelInfo:
    """A registered model as stored."""

    id: int
    name: str
    config_path: str
    ckpt_path: str
    n_embed: int
    embed_dim: int
    grid: int
    image_size: int
    labels: str
    n_classes: int


@dataclass(frozen=True)
class ClassInfo:
    """A class of a registered model: `pk` is the row id, `class_id` the label the prior takes."""

    pk: int
    class_id: int
    name: str
    synonyms: tuple[str, ...]


def _info(row: ModelRow, n_classes: int) -> ModelInfo:
    return ModelInfo(row.id, row.name, row.config_path, row.ckpt_path, row.n_embed, row.embed_dim, row.grid, row.image_size, row.labels, n_classes)


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
    with store.session() as s:
        if s.scalar(select(ModelRow).where(ModelRow.name == name)) is not None:
            raise CortexError(f"a model named {name!r} is already registered; pick another name")
    model = _quiet_load(config_path, ckpt_path, "cpu")
    labels_list = classnames.load_labels(labels, model.n_classes)
    with store.session() as s, s.begin():
        row = ModelRow(
            name=name, config_path=str(config_path), ckpt_path=str(ckpt_path),
            config_hash=config_hash(model.config), n_embed=model.n_embed, embed_dim=model.embed_dim,
            grid=model.grid, image_size=model.image_size, labels=labels or "",
        )
        s.add(row)
        try:
            s.flush()
        except IntegrityError:  # registered by another process since the check above
            raise CortexError(f"a model named {name!r} is already registered; pick another name") from None
        s.add_all(ClassRow(model_id=row.id, class_id=c.class_id, name=c.name, synonyms="|".join(c.synonyms)) for c in labels_list)
        info = _info(row, len(labels_list))
    _MODEL_CACHE[(str(config_path), str(ckpt_path), "cpu")] = model
    return info


def ensure_bundled(store: Store) -> None:
    """Register the bundled mini model in this database if its weights are installed."""
    if not MINI_WEIGHTS.is_file():
        return
    with store.session() as s, s.begin():
        row = s.scalar(select(ModelRow).where(ModelRow.name == MINI_NAME))
        if row is not None:
            if row.ckpt_path != str(MINI_WEIGHTS) or row.config_path != str(MINI_CONFIG):
                row.ckpt_path, row.config_path = str(MINI_WEIGHTS), str(MINI_CONFIG)  # package moved
            return
        config = sanitize_config(_load_yaml(MINI_CONFIG))
        fs = config.model.params.first_stage_config.params
        labels = classnames.mini_classes()
        res = int(fs.ddconfig.resolution)
        row = dict(
            name=MINI_NAME, config_path=str(MINI_CONFIG), ckpt_path=str(MINI_WEIGHTS), config_hash=config_hash(config),
            n_embed=int(fs.n_embed), embed_dim=int(fs.embed_dim), grid=res // 2 ** (len(fs.ddconfig.ch_mult) - 1),
            image_size=res, labels="mini",
        )
        # several processes (torchrun ranks) may open a fresh database at once: one registers it
        inserted = insert_ignore(s, ModelRow, [row], returning=("id",))
        if not inserted:
            return
        insert_ignore(s, ClassRow, [
            dict(model_id=inserted[0].id, class_id=c.class_id, name=c.name, synonyms="|".join(c.synonyms)) for c in labels
        ])


def list_models(store: Store) -> list[ModelInfo]:
    with store.session() as s:
        rows = s.scalars(select(ModelRow).order_by(ModelRow.id)).all()
        return [_info(r, len(s.scalars(select(ClassRow.id).where(ClassRow.model_id == r.id)).all())) for r in rows]


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
    with store.session() as s:
        rows = s.scalars(select(ClassRow).where(ClassRow.model_id == model.id).order_by(ClassRow.class_id)).all()
        return [ClassInfo(r.id, r.class_id, r.name, tuple(x for x in r.synonyms.split("|") if x)) for r in rows]


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
