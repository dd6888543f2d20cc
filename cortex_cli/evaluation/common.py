"""Shared machinery of the evaluations: test sets, judges, saliency of many images, stored results."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Sequence, TypeVar

import torch

from ..models import registry as model_registry
from ..core.errors import CortexError
from ..extractors import registry as extractor_registry
from ..extractors.registry import ExtractorInfo
from ..images.generation import ensure_images, image_tokens
from ..core.jsonable import to_jsonable
from ..core.results import Result
from ..judges.pixel_judges import Judge, judges_for
from ..core.progress import Progress, report
from ..models.registry import ClassInfo, ModelInfo
from ..attribution import SaliencySettings, prepare_extractor, token_saliency
from ..core.environment import artifacts_dir, writable_dir
from ..store import evaluations as evaluation_store
from ..store.database import Store
from .tables import first_table_rows

MASKING_KINDS = ("image-level", "concept-level")  # their runs differ by fill; the report keeps the newest of each
PAPER_FILL = "black"
QUICK_CLASSES = ("red-capped bird", "blue-capped bird")  # two mini classes: the evaluations' `presets(quick=True)`


def result_stem(kind: str, fill: str = PAPER_FILL) -> str:
    """The file stem of a result: `image_level`; another fill than the paper's adds `_<fill>`, so both fills sit side by side."""
    stem = kind.replace("-", "_")
    return stem if fill == PAPER_FILL else f"{stem}_{fill}"


@dataclass
class StoredEvaluation:
    """One row of the `evaluations` table, decoded."""

    id: int
    model: str
    kind: str
    params: dict[str, Any]
    result: dict[str, Any]
    plot_path: str
    created_at: str


def default_out_dir(model: ModelInfo) -> Path:
    """`$CORTEX_HOME/reports/<model>/` (created)."""
    return artifacts_dir("reports", model.name)


def prepare_out_dir(out: str | Path | None, model: ModelInfo) -> Path:
    """The output directory (created), or a CortexError saying it cannot be written."""
    if out is None:
        return default_out_dir(model)
    return writable_dir(out, "to")


def resolve_classes(store: Store, model: ModelInfo, specs: Sequence[str] | None) -> list[ClassInfo]:
    """The classes named in `specs` (ids or names), or every class of the model."""
    if not specs:
        return model_registry.classes(store, model)
    return [model_registry.resolve_class(store, model, s.strip()) for s in specs if s.strip()]


def resolve_extractors(store: Store, model: ModelInfo, spec: str = "all") -> list[ExtractorInfo]:
    """Registered extractors by name, or 'all' (every class extractor of the model; CE and RE for the mini model).

    The evaluations explain classes, so 'all' leaves out concept extractors (`train-extractor --concept`: two
    outputs, one concept), and naming one is refused.
    """
    if model.is_mini:
        extractor_registry.ensure_bundled_extractors(store)
    if spec != "all":
        named = [extractor_registry.get_extractor(store, model, name.strip()) for name in spec.split(",") if name.strip()]
        for info in named:
            if info.config.concept is not None:
                raise CortexError(f"extractor {info.name!r} was trained for concept {info.config.concept!r} and explains no class; "
                                  "the evaluations explain classes: name class extractors (or 'all')")
        return named
    registered = extractor_registry.list_extractors(store, model)
    found = [info for info in registered if info.config.concept is None]
    if not found:
        only = f" besides concept extractors ({', '.join(i.name for i in registered)})" if registered else ""
        raise CortexError(f"model {model.name!r} has no extractors{only}; run `cortex train-extractor --model {model.name} --arch ce` first")
    return found


def load_judges(model: ModelInfo, device: torch.device | str, weights_dir: str | Path | None = None) -> list[Judge]:
    """The model's judges (mini: the bundled ones; ImageNet: torchvision's four)."""
    return judges_for(model, device, weights_dir)


def test_images(
    store: Store,
    model: ModelInfo,
    classes: Sequence[ClassInfo],
    per_class: int,
    *,
    split: str = "test",
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """(image ids, labels (B,), tokens (B, m, m)) of `per_class` generated images of each class.

    Missing images are sampled from the model's prior (seeds seed .. seed+per_class-1).
    """
    if per_class < 1:
        raise CortexError(f"--images-per-class must be >= 1, got {per_class}")
    ids: list[int] = []
    labels: list[int] = []
    for i, cls in enumerate(classes):
        got = ensure_images(store, model, cls, split, per_class, seed=seed, device=device)
        ids += got
        labels += [cls.class_id] * len(got)
        report(progress, i + 1, len(classes), cls.name)
    return ids, torch.tensor(labels, dtype=torch.long), image_tokens(store, model, ids)


@torch.no_grad()
def decode(vqgm, tokens: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Token grids -> images in [-1, 1] on the model's device."""
    return vqgm.decode_tokens(tokens.to(vqgm.device), batch_size=batch_size)


def saliency_of(
    extractor: torch.nn.Module,
    vqgm,
    tokens: torch.Tensor,
    targets: Sequence[int],
    keys: Sequence[int],
    settings: SaliencySettings,
    *,
    batch_size: int = 16,
    progress: Progress | None = None,
) -> torch.Tensor:
    """TSV maps (B, m, m) on CPU of many token grids, `batch_size` images at a time."""
    out = []
    total = tokens.shape[0]
    extractor = prepare_extractor(extractor)
    for start in range(0, total, batch_size):
        chunk = tokens[start:start + batch_size]
        with torch.no_grad():
            emb = vqgm.embed(chunk)
        out.append(token_saliency(extractor, emb, list(targets[start:start + batch_size]), list(keys[start:start + batch_size]), settings,
                                  codebook=vqgm.codebook).cpu())
        report(progress, min(start + batch_size, total), total)
    return torch.cat(out) if out else torch.empty(0, vqgm.grid, vqgm.grid)


@dataclass
class Evaluation:
    """What every evaluation starts from (`begin`) and hands to `finish`: the shared prologue's products."""

    store: Store
    model: ModelInfo
    out: Path  # where the JSON and PNG go
    extractors: list[ExtractorInfo]
    classes: list[ClassInfo]
    judges: list[Judge]
    device: torch.device | str
    progress: Progress | None
    vqgm: Any = None  # the model's generator, loaded by `begin`
    started: float = field(default_factory=time.perf_counter)

    def report(self, done: int, total: int, info: str = "") -> None:
        """Forward to the caller's progress callback, if any."""
        report(self.progress, done, total, info)

    def reporter(self, prefix: str) -> Progress:
        """A progress callback that reports under `prefix` (its own info, when given, after it)."""
        return lambda done, total, info="": self.report(done, total, f"{prefix} {info}")

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token grids -> images in [-1, 1] on the model's device (`decode`)."""
        return decode(self.vqgm, tokens)


@dataclass
class Jobs:
    """A count of finished jobs out of `total`, for progress."""

    total: int
    done: int = 0

    def next(self, count: int = 1) -> int:
        """Count `count` more finished jobs; the number finished."""
        self.done += count
        return self.done


def begin(
    store: Store,
    model: ModelInfo,
    *,
    extractors: str,
    classes: Sequence[str] | None,
    device: torch.device | str,
    out_dir: str | Path | None,
    progress: Progress | None,
    judges: Sequence[Judge] | None = None,
    judge_weights: str | Path | None = None,
    with_judges: bool = True,
) -> Evaluation:
    """The prologue of every evaluation: out dir, extractors, judges (when it uses them), classes, then the model."""
    out = prepare_out_dir(out_dir, model)
    infos = resolve_extractors(store, model, extractors)
    judge_list = list(judges) if judges is not None else load_judges(model, device, judge_weights) if with_judges else []
    run = Evaluation(store, model, out, infos, resolve_classes(store, model, classes), judge_list, device, progress)
    run.vqgm = model_registry.load_model(model, device)
    return run


ResultT = TypeVar("ResultT")


def finish(evaluation: Evaluation, kind: str, result: ResultT, plot: str | Path, params: dict[str, Any], *,
           name: str | None = None) -> ResultT:
    """The epilogue of every evaluation: plot path, JSON (`<name>.json`, default `<kind>.json`), wall time, and the stored row."""
    stem = name if name is not None else kind.replace("-", "_")
    result = replace(result, plot_path=str(plot), json_path=str(evaluation.out / f"{stem}.json"),
                     seconds=round(time.perf_counter() - evaluation.started, 2))
    write_json(Path(result.json_path), result)
    result = replace(result, evaluation_id=record_evaluation(evaluation.store, evaluation.model, kind, params, asdict(result), plot))
    return result


def settings_params(settings: Any, extractors: str, **extra: Any) -> dict[str, Any]:
    """The stored parameters of a run (what `report.command_line` rebuilds its command from): the settings, the
    extractors as asked, and `extra`."""
    return asdict(settings) | {"extractors": extractors} | extra


def record_evaluation(store: Store, model: ModelInfo, kind: str, params: dict[str, Any], result: dict[str, Any], plot_path: str | Path | None) -> int:
    """Store one evaluation (kind, params, result JSON, plot) and return its row id."""
    return evaluation_store.insert_evaluation(
        store, model.id, kind, params=json.dumps(params, sort_keys=True, default=str),
        result=json.dumps(result, default=str), plot_path=str(plot_path or ""),
    )


def stored_evaluation(row, model: ModelInfo) -> StoredEvaluation:
    """One `evaluations` row of `model`, its JSON decoded."""
    return StoredEvaluation(row.id, model.name, row.kind, json.loads(row.params or "{}"), json.loads(row.result or "{}"), row.plot_path,
                            row.created_at.isoformat(timespec="seconds"))


def latest_variants(store: Store, model: ModelInfo) -> dict[str, list[StoredEvaluation]]:
    """kind -> the newest stored evaluation of each variant: one per fill for the masking kinds (the paper's first), else one."""
    newest: dict[tuple[str, str], StoredEvaluation] = {}
    for r in evaluation_store.model_evaluations(store, model.id):
        ev = stored_evaluation(r, model)
        newest[(r.kind, str(ev.params.get("fill") or PAPER_FILL) if r.kind in MASKING_KINDS else "")] = ev
    out: dict[str, list[StoredEvaluation]] = {}
    for (kind, fill) in sorted(newest, key=lambda key: (key[0], key[1] != PAPER_FILL, key[1])):
        out.setdefault(kind, []).append(newest[(kind, fill)])
    return out


# where and how long a run went: recorded in the database and printed, but kept out of the result
# files so that the same command gives byte-identical JSON in any home
RUN_FIELDS = ("seconds", "json_path", "plot_path", "evaluation_id")


class EvaluationResult(Result):
    """Mixin of the evaluations' results: `to_dict()` is the reproducible part (what `--json` prints), rows are the report's."""

    KIND: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """Everything but the run's own facts (`RUN_FIELDS`): the same command gives the same dict in any home."""
        return result_payload(self)

    def table_rows(self) -> list[dict[str, Any]]:
        """The rows of the evaluation's first table in `cortex report`, keyed by its column names.

        The tables are built by the module that defines the result (its `tables(result)`, as the registry's modules
        declare it): that module is loaded, since this object is one of its classes, and nothing is imported.
        """
        return first_table_rows(sys.modules[type(self).__module__].tables(asdict(self)))


def result_payload(result: Any) -> Any:
    """The reproducible part of a result: everything but `RUN_FIELDS`."""
    data = to_jsonable(result)
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if k not in RUN_FIELDS}
    return data


def write_json(path: Path, payload: Any) -> Path:
    """Write a result's reproducible part (`result_payload`) as indented JSON."""
    path.write_text(json.dumps(result_payload(payload), indent=2) + "\n")
    return path
