"""Registered models and their classes: rows of `models` and `classes`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from ..core.errors import CortexError
from .database import Store
from .dialect import insert_ignore
from .schema import ClassRow, ModelRow

MINI_NAME = "mini"  # the bundled mini model's registered name


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
    backend: str = "taming"  # the `cortex.backends` entry point that loads it
    options: tuple[tuple[str, str], ...] = ()  # what the backend needs besides the two paths, as (name, value) pairs

    @property
    def backend_options(self) -> dict[str, str]:
        """`options` as the backend takes them."""
        return dict(self.options)

    @property
    def is_mini(self) -> bool:
        """The bundled mini model (by name), or a model of the mini world's classes (labels 'mini')."""
        return self.name == MINI_NAME or self.labels == "mini"


@dataclass(frozen=True)
class ClassInfo:
    """A class of a registered model: `pk` is the row id, `class_id` the label the prior takes."""

    pk: int
    class_id: int
    name: str
    synonyms: tuple[str, ...]
    prompt: str = ""  # a prompt concept's class: sampled from this verbatim prompt (text-conditional backends)


@dataclass(frozen=True)
class NewModel:
    """The stored fields of a model to register."""

    name: str
    config_path: str
    ckpt_path: str
    config_hash: str
    n_embed: int
    embed_dim: int
    grid: int
    image_size: int
    labels: str
    backend: str = "taming"
    options: str = "{}"  # a JSON object of the backend's options (migration 0014)


@dataclass(frozen=True)
class NewClass:
    """A class of a model to register."""

    class_id: int
    name: str
    synonyms: tuple[str, ...] = ()


def _info(row: ModelRow, n_classes: int) -> ModelInfo:
    options = tuple(sorted(json.loads(row.options or "{}").items()))
    return ModelInfo(row.id, row.name, row.config_path, row.ckpt_path, row.n_embed, row.embed_dim, row.grid, row.image_size, row.labels, n_classes,
                     row.backend, options)


def _class_rows(model_id: int, classes: Sequence[NewClass]) -> list[dict]:
    return [dict(model_id=model_id, class_id=c.class_id, name=c.name, synonyms="|".join(c.synonyms)) for c in classes]


def _duplicate(name: str) -> CortexError:
    return CortexError(f"a model named {name!r} is already registered; pick another name")


def model_named(store: Store, name: str) -> ModelInfo | None:
    """The model registered as `name`, or None."""
    with store.session() as s:
        row = s.scalar(select(ModelRow).where(ModelRow.name == name))
        if row is None:
            return None
        n_classes = s.scalar(select(func.count()).select_from(ClassRow).where(ClassRow.model_id == row.id)) or 0
        return _info(row, int(n_classes))


def insert_model(store: Store, model: NewModel, classes: Sequence[NewClass]) -> ModelInfo:
    """Register a model and its classes in one transaction; CortexError if the name is taken."""
    with store.session() as s, s.begin():
        row = ModelRow(**asdict(model))
        s.add(row)
        try:
            s.flush()
        except IntegrityError:  # registered by another process since the caller looked
            raise _duplicate(model.name) from None
        s.add_all(ClassRow(**values) for values in _class_rows(row.id, classes))
        return _info(row, len(classes))


def insert_model_if_absent(store: Store, model: NewModel, classes: Sequence[NewClass]) -> bool:
    """Register a model and its classes unless a model of that name exists (race-safe); True if inserted."""
    with store.session() as s, s.begin():
        # several processes (torchrun ranks) may open a fresh database at once: one registers it
        inserted = insert_ignore(s, ModelRow, [asdict(model)], returning=("id",))
        if not inserted:
            return False
        insert_ignore(s, ClassRow, _class_rows(inserted[0].id, classes))
        return True


def set_model_paths(store: Store, name: str, config_path: str, ckpt_path: str) -> None:
    """Point a registered model at moved files (a package that was reinstalled elsewhere)."""
    with store.session() as s, s.begin():
        s.execute(update(ModelRow).where(ModelRow.name == name).values(config_path=config_path, ckpt_path=ckpt_path))


def list_models(store: Store) -> list[ModelInfo]:
    """Every registered model with its number of classes, by id."""
    with store.session() as s:
        rows = s.scalars(select(ModelRow).order_by(ModelRow.id)).all()
        counts = dict(s.execute(select(ClassRow.model_id, func.count()).group_by(ClassRow.model_id)).all())
        return [_info(r, int(counts.get(r.id, 0))) for r in rows]


def model_classes(store: Store, model_id: int) -> list[ClassInfo]:
    """The classes of a model, by class id."""
    with store.session() as s:
        rows = s.scalars(select(ClassRow).where(ClassRow.model_id == model_id).order_by(ClassRow.class_id)).all()
        return [ClassInfo(r.id, r.class_id, r.name, tuple(x for x in r.synonyms.split("|") if x), r.prompt) for r in rows]


__all__ = [
    "ClassInfo", "ModelInfo", "NewClass", "NewModel", "insert_model", "insert_model_if_absent", "list_models",
    "model_classes", "model_named", "set_model_paths",
]
