"""Training an information extractor on the generator's own token embeddings (paper appendix A.1.3).

Adam + StepLR + cross-entropy on E = codebook[tokens] of generated images, seeded; the best epoch on
the validation split is kept. A concept extractor (`cfg.concept`, paper §3.2: f_Y for one concept Y) is the
same recipe on a balanced binary data set: `train_per_class` (val, test) images of each member class are
Y (output 1), and as many images of the model's other classes, spread evenly over them, are not-Y
(output 0); see `evaluation.concept_counts`.

After every finished epoch the whole run state (weights, optimizer, scheduler, RNG states, history) is
written to `last.pt`, so a run that is interrupted (Ctrl-C, kill) resumes from its last finished epoch
and ends with the same weights as an uninterrupted one.

Under torchrun (`dist`), the model is wrapped in DistributedDataParallel and every global batch of
the single-process order is split between the ranks (rank r takes its every world_size-th sample), so
the global batch size and the epoch's sample order are those of one process; gradients are averaged
by DDP. Batch norm normalises each rank's part of the batch (within noise of one process). Rank 0
generates missing images first, writes the checkpoints and registers the extractor; a resumed run
starts every rank from rank 0's state.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.nn.parallel import DistributedDataParallel

from .. import model_registry
from ..distributed import DistContext
from ..errors import CortexError, first_line
from ..results import Result
from ..progress import Progress, report
from ..model_registry import ModelInfo
from ..seeding import derive_seed, generator_for, set_all_random_seeds
from ..environment import artifacts_dir
from ..store.database import Store
from .architectures import ExtractorConfig, build_extractor, count_parameters
from .evaluation import SplitData, binary_accuracy, embed_batch, extractor_logits, load_concept_split, load_split, topk_accuracy
from .registry import ExtractorInfo, _check_name, read_state_dict, register_extractor

STATE_VERSION = 1
MINI_WIDTH = 64
MINI_FC_WIDTH = {"ce": 512, "re": 256, "re-authors": 256}


@dataclass
class TrainConfig:
    """Training recipe; the defaults are the paper's (A.1.3 and §4.1: 1000/300/50 images per class)."""

    epochs: int = 80
    batch_size: int = 256
    lr: float = 1e-3  # Adam
    weight_decay: float = 1e-4
    step_size: int = 20  # StepLR: lr *= gamma every step_size epochs
    gamma: float = 0.1
    seed: int = 0  # initialisation, shuffling, dropout
    train_per_class: int = 1000
    val_per_class: int = 300
    test_per_class: int = 50
    data_seed: int = 0  # first image seed of every split; CE and RE share the data by default

    def validate(self) -> "TrainConfig":
        for key in ("epochs", "batch_size", "step_size", "train_per_class", "val_per_class", "test_per_class"):
            if int(getattr(self, key)) < 1:
                raise CortexError(f"{key.replace('_', '-')} must be at least 1, got {getattr(self, key)}")
        if self.batch_size < 2:
            raise CortexError(f"batch-size must be at least 2 (batch norm), got {self.batch_size}")
        if not self.lr > 0:
            raise CortexError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise CortexError(f"weight-decay must be >= 0, got {self.weight_decay}")
        if not 0 < self.gamma <= 1:
            raise CortexError(f"gamma must be in (0, 1], got {self.gamma}")
        return self

    @classmethod
    def mini(cls, **overrides: Any) -> "TrainConfig":
        """The bundled mini model's recipe: the paper's optimiser, a smaller data set and schedule.

        300/50/50 images per class (13 classes), 30 epochs with the lr divided by 10 every 10, batch 64
        (batch 256 would leave 15 steps an epoch on 3,900 images).
        """
        base = dict(epochs=30, batch_size=64, step_size=10, train_per_class=300, val_per_class=50, test_per_class=50)
        base.update(overrides)
        return cls(**base)


def default_configs(model: ModelInfo, arch: str, **overrides: Any) -> tuple[ExtractorConfig, TrainConfig]:
    """The extractor sizes and recipe for `model`: the paper's, or the mini preset for the mini model.

    Mini preset: width 64, FC 512 (CE) / 256 (RE), about 1.1M + 0.5M parameters (3 MB in fp16).
    Keyword overrides set fields of either config (None values are ignored).
    """
    mini = model.is_mini
    arch = str(arch).lower()
    cfg_fields = {"in_channels": model.embed_dim, "grid": model.grid, "n_classes": model.n_classes,
                  "width": MINI_WIDTH if mini else 512, "fc_width": MINI_FC_WIDTH.get(arch) if mini else None}
    over = {k: v for k, v in overrides.items() if v is not None}
    for key in list(over):
        if key in ExtractorConfig.__dataclass_fields__ and key != "arch":
            cfg_fields[key] = over.pop(key)
    cfg = ExtractorConfig(arch, **cfg_fields)
    unknown = set(over) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown options {sorted(unknown)}")
    tc = TrainConfig.mini(**over) if mini else TrainConfig(**over)
    return cfg, tc.validate()


@dataclass(frozen=True)
class TrainResult(Result):
    """The registered extractor and how its training went."""

    info: ExtractorInfo
    best_epoch: int
    best_val_acc: float
    history: list[dict[str, float]] = field(default_factory=list)  # one row per finished epoch
    resumed_from_epoch: int | None = None  # the last finished epoch found on disk, if any
    run_dir: str = ""


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_safetensors(state: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, path)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fingerprint(model: ModelInfo, cfg: ExtractorConfig, tc: TrainConfig, data: list[SplitData] | None = None) -> str:
    """Identifies a run: same model, sizes, recipe (and images) -> same fingerprint (resumable)."""
    payload: dict[str, Any] = {"model": [model.name, model.ckpt_path], "config": cfg.to_dict(), "train": asdict(tc)}
    if data is not None:
        payload["images"] = {d.split: d.image_ids for d in data}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _read_state(last_path: Path) -> dict[str, Any]:
    try:
        return torch.load(last_path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a damaged state file cannot be resumed from
        raise CortexError(f"cannot read the run state {str(last_path)!r} ({first_line(exc)}); add --restart to start over") from exc


def _other_settings(last_path: Path, name: str) -> CortexError:
    return CortexError(
        f"{str(last_path)!r} belongs to a run of {name!r} with other settings; rerun with the same options "
        f"to resume it, add --restart to start over, or pick another --name"
    )


def check_run(
    store: Store, model: ModelInfo, cfg: ExtractorConfig, tc: TrainConfig, *, name: str | None = None,
    out_dir: Path | None = None, restart: bool = False,
) -> Path:
    """Everything `train_extractor` can refuse before it generates or trains anything; returns the run directory."""
    tc.validate()
    name = name or cfg.arch
    _check_name(name)
    if cfg.in_channels != model.embed_dim or cfg.grid != model.grid:
        raise CortexError(f"extractor input {cfg.in_channels}x{cfg.grid}x{cfg.grid} does not fit model {model.name!r} (E is {model.embed_dim}x{model.grid}x{model.grid})")
    classes = model_registry.classes(store, model)
    if classes and cfg.n_classes <= max(c.class_id for c in classes):
        raise CortexError(f"extractor has {cfg.n_classes} outputs but model {model.name!r} has class ids up to {max(c.class_id for c in classes)}")
    unknown = sorted(set(cfg.class_ids or ()).union(cfg.concept_class_ids or ()) - {c.class_id for c in classes})
    if unknown:
        raise CortexError(f"model {model.name!r} has no class {unknown[0]}; `cortex models list --all-classes` lists its classes")
    if cfg.concept is not None and not {c.class_id for c in classes} - set(cfg.concept_class_ids or ()):
        raise CortexError(f"every class of model {model.name!r} is a member of concept {cfg.concept!r}: no image is not-{cfg.concept}; "
                          "a concept extractor needs other classes to tell it from")
    run_dir = Path(out_dir) if out_dir is not None else artifacts_dir("extractors", model.name, name)
    run_dir.mkdir(parents=True, exist_ok=True)
    last_path = run_dir / "last.pt"
    if last_path.is_file() and not restart:
        run_json = run_dir / "run.json"
        record = json.loads(run_json.read_text()) if run_json.is_file() else {}
        stored = record.get("settings") if run_json.is_file() else _read_state(last_path).get("settings")
        if stored != _fingerprint(model, cfg, tc):
            before = record.get("config", {}).get("class_ids")
            was_for = record.get("config", {}).get("concept"), record.get("config", {}).get("concept_class_ids")
            if run_json.is_file() and was_for != (cfg.concept, cfg.concept_class_ids):
                def what(concept: str | None, ids: list[int] | None) -> str:
                    return f"concept {concept!r} (member ids {', '.join(map(str, ids or ()))})" if concept else "classes (no concept)"

                raise CortexError(
                    f"{str(last_path)!r} belongs to a run of {name!r} for {what(*was_for)}, not {what(cfg.concept, cfg.concept_class_ids)}; "
                    f"rerun with the same --concept (and members) to resume it, add --restart to start over, or pick another --name"
                )
            if run_json.is_file() and before != cfg.class_ids:
                was = f"{len(before)} classes (ids {', '.join(map(str, before))})" if before else "all classes"
                now = f"{len(cfg.class_ids)} classes" if cfg.class_ids else "all classes"
                raise CortexError(
                    f"{str(last_path)!r} belongs to a run of {name!r} over {was}, not these {now}; rerun with the same "
                    f"--classes to resume it, add --restart to start over, or pick another --name"
                )
            raise _other_settings(last_path, name)
    return run_dir


def _head_labels(data: SplitData, cfg: ExtractorConfig) -> SplitData:
    """A subset extractor learns outputs 0..n-1: class id cfg.class_ids[i] becomes label i."""
    if cfg.class_ids is None:
        return data
    to_output = torch.full((max(cfg.class_ids) + 1,), -1, dtype=torch.long)
    to_output[torch.tensor(cfg.class_ids)] = torch.arange(len(cfg.class_ids))
    return replace(data, labels=to_output[data.labels])


def _evaluate(net: torch.nn.Module, vqgm: Any, data: SplitData, batch_size: int) -> tuple[float, float, torch.Tensor]:
    logits = extractor_logits(net, vqgm, data.tokens, batch_size)
    loss = float(F.cross_entropy(logits, data.labels))
    acc = float((logits.argmax(1) == data.labels).float().mean())
    return loss, acc, logits


def train_extractor(
    store: Store, model: ModelInfo, cfg: ExtractorConfig, tc: TrainConfig, *, name: str | None = None,
    out_dir: Path | None = None, device: torch.device | str = "cpu", progress: Progress | None = None,
    restart: bool = False, dist: DistContext | None = None,
) -> TrainResult:
    """Train (or resume training) an extractor on generated images and register it.

    Args:
        store: the open database (missing train/val/test images are generated into it).
        model: the VQGM whose token embeddings the extractor reads.
        cfg: architecture and sizes (d and m must match the model); with `cfg.class_ids` only those classes'
            images are used and the head learns outputs 0..n-1 in their order (the label map); with `cfg.concept`
            the head learns not-Y (0) vs Y (1) on a balanced split (`evaluation.load_concept_split`).
        tc: recipe and data sizes.
        name: registered name (default: the architecture, 'ce' or 're').
        out_dir: run directory (default `$CORTEX_HOME/extractors/<model>/<name>`), holding `last.pt`
            (the resumable state) and `best.safetensors` (the best-on-validation weights).
        device: where to train.
        progress: called as progress(done, total, info) for image generation and batches.
        restart: discard a previous run in `out_dir` and start over (by default a run with the same
            settings is resumed and one with other settings is refused).
        dist: the torchrun context (see the module docstring); None or one rank: a single process.

    Returns:
        TrainResult with the registered extractor (metrics: validation accuracy, and test top-k accuracy, or a
        concept extractor's binary accuracy: 'binary', 'y', 'not_y').

    Raises:
        CortexError: sizes that do not fit the model, bad recipe values, or a previous run with other
            settings in `out_dir` (without `restart`).
    """
    ddp = dist is not None and dist.distributed
    main = not ddp or dist.is_main
    if ddp and tc.batch_size < 2 * dist.world_size:
        raise CortexError(f"batch-size {tc.batch_size} gives a rank fewer than 2 samples (batch norm) on {dist.world_size} ranks; "
                          f"use --batch-size >= {2 * dist.world_size}")
    run_dir = check_run(store, model, cfg, tc, name=name, out_dir=out_dir, restart=restart) if main else None
    name = name or cfg.arch
    if ddp:
        run_dir = Path(dist.broadcast(str(run_dir)))
    last_path, best_path = run_dir / "last.pt", run_dir / "best.safetensors"

    subset = [c for c in model_registry.classes(store, model) if c.class_id in cfg.class_ids] if cfg.class_ids is not None else None

    def splits() -> list[SplitData]:
        if cfg.concept is not None:  # balanced Y / not-Y, labels 1 / 0
            return [load_concept_split(store, model, split, per_class, cfg.concept_class_ids or (), seed=tc.data_seed, device=device,
                                       progress=progress)
                    for split, per_class in (("train", tc.train_per_class), ("val", tc.val_per_class), ("test", tc.test_per_class))]
        return [_head_labels(load_split(store, model, split, per_class, seed=tc.data_seed, device=device, progress=progress,
                                        classes=subset), cfg)
                for split, per_class in (("train", tc.train_per_class), ("val", tc.val_per_class), ("test", tc.test_per_class))]

    # rank 0 generates missing images; the others then only read them
    train, val, test = dist.main_first(splits) if ddp else splits()
    settings, fingerprint = _fingerprint(model, cfg, tc), _fingerprint(model, cfg, tc, [train, val, test])
    vqgm = model_registry.load_model(model, device)

    set_all_random_seeds(tc.seed)
    net = build_extractor(cfg).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=tc.step_size, gamma=tc.gamma)
    start_epoch, history, best_epoch, best_val_acc, resumed = 0, [], 0, -1.0, None

    saved = None
    if main and last_path.is_file() and not restart:
        saved = _read_state(last_path)
        if saved.get("fingerprint") != fingerprint:  # same settings, but the stored images changed
            raise _other_settings(last_path, name)
        if not best_path.is_file():
            raise CortexError(f"the best checkpoint {str(best_path)!r} of this run is missing; add --restart to start over")
    if ddp:
        saved = dist.broadcast(saved)  # every rank resumes from rank 0's state
    if saved is not None:
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        start_epoch, history = int(saved["epoch"]), list(saved["history"])
        best_epoch, best_val_acc = int(saved["best_epoch"]), float(saved["best_val_acc"])
        _set_rng_state(saved["rng"])
        resumed = start_epoch
    if resumed is None and main:
        for stale in (last_path, best_path):
            stale.unlink(missing_ok=True)
        # a small readable record of the run's settings, checked before a later rerun generates anything
        (run_dir / "run.json").write_text(json.dumps(
            {"settings": settings, "model": model.name, "name": name, "config": cfg.to_dict(), "train": asdict(tc)},
            indent=2, sort_keys=True) + "\n")

    n_train = len(train)
    batches = [(i, min(i + tc.batch_size, n_train)) for i in range(0, n_train, tc.batch_size)]
    min_batch = 2 * (dist.world_size if ddp else 1)
    if len(batches) > 1 and batches[-1][1] - batches[-1][0] < min_batch:
        batches.pop()  # batch norm cannot train on a single sample (per rank)
    total_steps = tc.epochs * len(batches)
    step = net
    if ddp:
        step = DistributedDataParallel(net, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    for epoch in range(start_epoch + 1, tc.epochs + 1):
        net.train()
        if ddp:  # each rank its own dropout stream, a function of (seed, epoch, rank) so that a resume repeats it
            torch.manual_seed(derive_seed(tc.seed, "extractor-dropout", epoch, dist.rank))
        order = torch.randperm(n_train, generator=generator_for(tc.seed, "extractor-shuffle", epoch))
        lr = optimizer.param_groups[0]["lr"]
        loss_sum, correct, seen = 0.0, 0, 0
        for b, (lo, hi) in enumerate(batches):
            idx = order[lo:hi]
            if ddp:
                idx = idx[dist.rank::dist.world_size]
            x = embed_batch(vqgm, train.tokens[idx]).to(device)
            y = train.labels[idx].to(device)
            logits = step(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            report(progress, (epoch - 1) * len(batches) + b + 1, total_steps,
                   f"epoch {epoch}/{tc.epochs} loss {loss_sum / seen:.3f} acc {correct / seen:.3f}")
        scheduler.step()
        if ddp:
            loss_sum, correct, seen = dist.all_reduce_counts([float(loss_sum), float(correct), float(seen)])
        if not main:
            continue  # rank 0 validates and writes the checkpoints
        val_loss, val_acc, _ = _evaluate(net, vqgm, val, tc.batch_size)
        history.append({"epoch": epoch, "lr": lr, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                        "val_loss": val_loss, "val_acc": val_acc})
        if val_acc > best_val_acc:
            best_epoch, best_val_acc = epoch, val_acc
            _atomic_safetensors(net.state_dict(), best_path)
        _atomic_save({
            "version": STATE_VERSION, "settings": settings, "fingerprint": fingerprint, "epoch": epoch, "model": net.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "history": history,
            "best_epoch": best_epoch, "best_val_acc": best_val_acc, "rng": _rng_state(),
        }, last_path)
        report(progress, epoch * len(batches), total_steps,
               f"epoch {epoch}/{tc.epochs} loss {loss_sum / seen:.3f} acc {correct / seen:.3f} val {val_acc:.3f}")

    if ddp:
        dist.barrier()
        if not main:
            return dist.broadcast(None)  # rank 0's result
    net.load_state_dict(read_state_dict(best_path))
    _, _, test_logits = _evaluate(net, vqgm, test, tc.batch_size)
    metrics = {
        "best_epoch": best_epoch, "val_acc": best_val_acc, "n_params": count_parameters(net),
        "n_train": n_train, "n_val": len(val), "n_test": len(test),
        # a concept extractor's test accuracy is binary (Y vs not-Y, balanced); top-k over 2 outputs says nothing
        "test": binary_accuracy(test_logits, test.labels) if cfg.concept is not None else topk_accuracy(test_logits, test.labels),
    }
    hparams = {**asdict(tc), "preset": "mini" if model.is_mini else "paper", "optimizer": "adam", "scheduler": "steplr",
               "loss": "cross_entropy"}
    if cfg.concept is not None:
        hparams["data"] = "concept-balanced"  # *_per_class images of each member (Y), as many of the other classes (not-Y)
    info = register_extractor(store, model, name, cfg, hparams, best_path, metrics)
    result = TrainResult(info, best_epoch, best_val_acc, history, resumed, str(run_dir))
    return dist.broadcast(result) if ddp else result
