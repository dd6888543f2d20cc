"""Registered extractors of a model: register (upsert), list, look up, load, bundle."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..core.environment import default_db_url
from ..core.errors import CortexError, first_line
from ..models.registry import BUNDLED_DIR, MINI_NAME, ModelInfo, ensure_bundled
from ..store import extractors as extractor_store
from ..store.database import Store, open_store
from ..store.registered_models import model_named
from .architectures import ExtractorConfig, build_extractor
from .subsets import ClassSpace, ConceptHead

MINI_BUNDLE_DIR = BUNDLED_DIR / MINI_NAME


@dataclass
class ExtractorInfo:
    """A registered extractor: its architecture, training hyper-parameters, checkpoint and metrics."""

    id: int
    model_id: int
    name: str
    arch: str
    config: ExtractorConfig
    hparams: dict[str, Any] = field(default_factory=dict)
    ckpt_path: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    ckpt_sha256: str = ""


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _info(row: extractor_store.ExtractorRecord) -> ExtractorInfo:
    stored = json.loads(row.hparams or "{}")
    return ExtractorInfo(
        id=row.id, model_id=row.model_id, name=row.name, arch=row.arch,
        config=ExtractorConfig.from_dict(stored.get("config", {"arch": row.arch})),
        hparams=stored.get("train", {}), ckpt_path=row.ckpt_path,
        metrics=json.loads(row.metrics or "{}"), ckpt_sha256=row.ckpt_sha256,
    )


def _check_name(name: str) -> None:
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise CortexError(f"extractor name {name!r} must be letters, digits, '-', '_' or '.'")


def register_extractor(
    store: Store, model: ModelInfo, name: str, cfg: ExtractorConfig, hparams: dict[str, Any],
    ckpt_path: str | Path, metrics: dict[str, Any],
) -> ExtractorInfo:
    """Record a trained extractor of `model` (replaces the row of the same name).

    Args:
        name: the extractor's name for `--extractor` (e.g. 'ce').
        cfg: its architecture.
        hparams: training hyper-parameters (JSON-serialisable).
        ckpt_path: the weights (safetensors or a torch state dict); its sha256 is stored.
        metrics: e.g. validation/test accuracy (JSON-serialisable).

    Returns:
        The stored row.
    """
    _check_name(name)
    path = Path(ckpt_path).expanduser().resolve()
    if not path.is_file():
        raise CortexError(f"extractor checkpoint {str(path)!r} does not exist")
    sha = file_sha256(path)
    blob = json.dumps({"config": cfg.to_dict(), "train": hparams}, sort_keys=True)
    return _info(extractor_store.upsert_extractor(store, model.id, name, arch=cfg.arch, hparams=blob, ckpt_path=str(path),
                                                  ckpt_sha256=sha, metrics=json.dumps(metrics, sort_keys=True)))


def list_extractors(store: Store, model: ModelInfo) -> list[ExtractorInfo]:
    """Every extractor registered for `model`, by name."""
    return [_info(r) for r in extractor_store.model_extractors(store, model.id)]


def get_extractor(store: Store, model: ModelInfo, name: str | None = None) -> ExtractorInfo:
    """A registered extractor of `model` by name (default 'ce', the paper's main extractor)."""
    name = name or "ce"
    found = list_extractors(store, model)
    for info in found:
        if info.name == name:
            return info
    known = f" (registered: {', '.join(i.name for i in found)})" if found else ""
    arch = name if name in ("ce", "re") else "ce"
    raise CortexError(
        f"model {model.name!r} has no extractor named {name!r}{known}; "
        f"run `cortex train-extractor --model {model.name} --arch {arch}` first"
    )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights from safetensors or a torch file (a state dict, or {'model': state dict})."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    return obj


def load_extractor(info: ExtractorInfo, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The extractor's network in eval mode with frozen fp32 parameters.

    Args:
        info: a registered extractor (its checkpoint must still hash to the stored sha256).
        device: where to put it.

    Returns:
        The module (E -> logits over the model's class ids; a subset extractor is wrapped in
        `subsets.ClassSpace`; a concept extractor's 2 outputs (not-Y, Y) in `subsets.ConceptHead`); gradients flow
        to its input only.
    """
    path = Path(info.ckpt_path)
    if not path.is_file():
        raise CortexError(f"the checkpoint of extractor {info.name!r} is missing ({str(path)!r}); retrain it with `cortex train-extractor --arch {info.arch} --name {info.name}`")
    if info.ckpt_sha256 and file_sha256(path) != info.ckpt_sha256:
        raise CortexError(f"the checkpoint of extractor {info.name!r} ({str(path)!r}) changed since it was registered (sha256 mismatch); retrain it with `cortex train-extractor --arch {info.arch} --name {info.name}`")
    net = build_extractor(info.config)
    ref = net.state_dict()
    state = read_state_dict(path)
    try:
        net.load_state_dict({k: v.to(ref[k].dtype) if k in ref else v for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise CortexError(f"checkpoint {str(path)!r} does not fit extractor {info.name!r} ({info.config.arch}): {first_line(exc)}") from exc
    net.eval().to(device)
    for p in net.parameters():
        p.requires_grad_(False)
    if info.config.class_ids is not None:  # a subset extractor answers in the model's class ids, like a full one
        return ClassSpace(net, info.config.class_ids, info.config.n_classes, info.name).eval().to(device)
    if info.config.concept is not None:  # answers for its concept only; `subsets.require_classes` refuses class targets
        return ConceptHead(net, info.config.concept, info.config.concept_class_ids or (), info.name).eval().to(device)
    return net


def export_bundled(info: ExtractorInfo, dest_dir: str | Path = MINI_BUNDLE_DIR) -> tuple[Path, Path]:
    """Write `extractor_<name>.safetensors` (fp16) and `extractor_<name>.json` for shipping with cortex.

    Args:
        info: a registered extractor.
        dest_dir: the bundle directory (default: the mini model's).

    Returns:
        (weights path, metadata path).
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    net = load_extractor(info, "cpu")
    net = getattr(net, "net", net)  # a subset or concept extractor's own network, not its wrapper
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in net.state_dict().items()}
    weights = dest / f"extractor_{info.name}.safetensors"
    save_file(state, str(weights))
    meta = dest / f"extractor_{info.name}.json"
    meta.write_text(json.dumps(
        {"name": info.name, "arch": info.arch, "config": info.config.to_dict(), "hparams": info.hparams,
         "metrics": info.metrics, "trained_sha256": info.ckpt_sha256, "dtype": "float16"},
        indent=2, sort_keys=True) + "\n")
    return weights, meta


def ensure_bundled_extractors(store: Store, bundle_dir: str | Path = MINI_BUNDLE_DIR) -> None:
    """Register the mini model's shipped extractors unless the user registered their own of that name."""
    bundle_dir = Path(bundle_dir)
    metas = sorted(bundle_dir.glob("extractor_*.json")) if bundle_dir.is_dir() else []
    if not metas:
        return
    model = model_named(store, MINI_NAME)
    if model is None:
        return
    existing = {r.name: r for r in extractor_store.model_extractors(store, model.id)}
    for meta_path in metas:
        weights = meta_path.with_suffix(".safetensors")
        if not weights.is_file():
            continue
        meta = json.loads(meta_path.read_text())
        name = meta["name"]
        row = existing.get(name)
        if row is not None:
            if Path(row.ckpt_path).resolve().parent != bundle_dir.resolve():
                continue  # the user's own extractor of that name wins
            if row.ckpt_path == str(weights.resolve()) and row.ckpt_sha256 == file_sha256(weights):
                continue
        register_extractor(store, model, name, ExtractorConfig.from_dict(meta["config"]), meta.get("hparams", {}),
                           weights, meta.get("metrics", {}))


def open_with_bundled(url: str | None = None) -> Store:
    """The database at `url` (default: `$CORTEX_DB`, else cortex.db in the cortex home), opened and migrated, with the bundled
    mini model and its shipped extractors registered; closed again if registering them fails."""
    store = open_store(url or default_db_url())
    try:
        ensure_bundled(store)
        ensure_bundled_extractors(store)
    except BaseException:
        store.close()
        raise
    return store
