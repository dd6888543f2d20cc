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
by DDP. Batch norm normalises each rank's part of the batch (within noise of one process). Every rank
generates its share of the missing images first (`generation.generate_requests`, dealt by image); rank 0
writes the checkpoints and registers the extractor; a resumed run starts every rank from rank 0's state. Validation is sharded too: each rank evaluates its every
world_size-th validation image (with rank 0's batch-norm statistics) and the sums are all-reduced.

Speed (issue 29): a step never waits for the host (loss and accuracy are summed on the device and read once
an epoch, the progress line at most once a second); on CUDA the model and its inputs are channels-last, Adam
is fused and the token grids stay on the device when they fit. `precision='bf16'` runs forward and loss
under bf16 autocast (weights and Adam stay fp32). fp32 on the CPU computes exactly what it did before.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.nn.parallel import DistributedDataParallel

from ..models import registry as model_registry
from ..core.distributed import DistContext
from ..core.errors import CortexError, first_line
from ..core.results import Result
from ..core.progress import Progress, report
from ..models.registry import ModelInfo
from ..core.seeding import derive_seed, generator_for, set_all_random_seeds
from ..core.environment import artifacts_dir
from ..store.database import Store
from .architectures import ExtractorConfig, build_extractor, count_parameters
from ..images.generation import Request, generate_requests
from .accuracy import SplitData, binary_accuracy, concept_counts, embed_batch, extractor_logits, load_concept_split, load_split, topk_accuracy
from .accuracy import TrainedExtractor
from .registry import ExtractorInfo, _check_name, export_bundled, read_state_dict, register_extractor

STATE_VERSION = 1
PRECISIONS = ("fp32", "bf16")  # what --precision means in every stage: fp32, or bf16 autocast around the forward pass
RESIDENT_SHARE = 0.25  # token grids stay on a CUDA device when they take at most this share of its free memory
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
    precision: str = "fp32"  # or 'bf16': autocast around forward and loss (recorded only when not fp32)

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
        if self.precision not in PRECISIONS:
            raise CortexError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        return self

    def record(self) -> dict[str, Any]:
        """The recipe as a run records it (fingerprint, run.json, hparams): fp32 is left out, so runs from before
        --precision existed keep their identity."""
        out = asdict(self)
        if out["precision"] == "fp32":
            del out["precision"]
        return out

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
    payload: dict[str, Any] = {"model": [model.name, model.ckpt_path], "config": cfg.to_dict(), "train": tc.record()}
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


def autocast(device_type: str, precision: str) -> ContextManager:
    """bf16 autocast on `device_type` for precision 'bf16'; nothing for 'fp32'."""
    return torch.autocast(device_type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def memory_format(device_type: str) -> torch.memory_format:
    """channels-last on CUDA (cuDNN's NHWC convolutions); NCHW elsewhere, as before."""
    return torch.channels_last if device_type == "cuda" else torch.contiguous_format


def make_optimizer(net: torch.nn.Module, tc: TrainConfig, device_type: str) -> torch.optim.Adam:
    """The recipe's Adam: fused (one kernel a step for all parameters) on CUDA, the plain implementation elsewhere."""
    fused = {"fused": True} if device_type == "cuda" else {}
    return torch.optim.Adam(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, **fused)


def keeps_resident(nbytes: int, device: torch.device | str, free_bytes: int | None = None) -> bool:
    """Whether `nbytes` of token grids stay on `device`: a CUDA device where they take at most RESIDENT_SHARE of the free memory."""
    device = torch.device(device)
    if device.type != "cuda":
        return False
    free = torch.cuda.mem_get_info(device)[0] if free_bytes is None else free_bytes
    return nbytes <= RESIDENT_SHARE * free


def _placed(data: SplitData, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, labels) of `data`, on `device` when they fit there (`keeps_resident`), else on the host."""
    if keeps_resident(data.tokens.numel() * data.tokens.element_size() + data.labels.numel() * data.labels.element_size(), device):
        return data.tokens.to(device), data.labels.to(device)
    return data.tokens, data.labels


def _split_requests(store: Store, model: ModelInfo, cfg: ExtractorConfig, tc: TrainConfig, subset: list | None) -> list[Request]:
    """The images the three splits read (`load_split` / `load_concept_split`), as one generation job."""
    sizes = (("train", tc.train_per_class), ("val", tc.val_per_class), ("test", tc.test_per_class))
    if cfg.concept is not None:
        wanted = set(cfg.concept_class_ids or ())
        classes = model_registry.classes(store, model)
        members, others = [c for c in classes if c.class_id in wanted], [c for c in classes if c.class_id not in wanted]
        if not members or not others:
            return []  # load_concept_split says what is wrong
        plan = [(split, cls, n) for split, per in sizes for cls, n in concept_counts(per, members, others)]
    else:
        plan = [(split, cls, per) for split, per in sizes for cls in (subset if subset is not None else model_registry.classes(store, model))]
    return [Request(cls, split, tuple(range(tc.data_seed, tc.data_seed + n))) for split, cls, n in plan if n > 0]


def train_epoch(
    step: torch.nn.Module, optimizer: torch.optim.Optimizer, vqgm: Any, tokens: torch.Tensor, labels: torch.Tensor,
    order: torch.Tensor, batches: list[tuple[int, int]], *, device: torch.device, precision: str = "fp32", rank: int = 0,
    world_size: int = 1, on_step: Callable[[int, torch.Tensor, torch.Tensor, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One epoch of training steps, none of which waits for the host.

    Step b trains on the samples order[lo:hi] of batches[b] (this rank's every world_size-th of them); `tokens`
    and `labels` lie on the host or on `device`, `order` beside them. Returns this rank's (loss sum, correct,
    samples), the first two as device tensors, unread (float64 and int64: the sums of the per-step
    float(loss) * n and int(correct) they replace, bit for bit). `on_step(b, loss_sum, correct, seen)` runs after each step.
    """
    fmt = memory_format(device.type)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    for b, (lo, hi) in enumerate(batches):
        idx = order[lo:hi][rank::world_size]
        x = embed_batch(vqgm, tokens[idx]).to(device).contiguous(memory_format=fmt)
        y = labels[idx].to(device)
        with autocast(device.type, precision):
            logits = step(x)
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach().double() * len(idx)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(idx)
        if on_step is not None:
            on_step(b, loss_sum, correct, seen)
    return loss_sum, correct, seen


@torch.no_grad()
def _logits(net: torch.nn.Module, vqgm: Any, tokens: torch.Tensor, batch_size: int, device: torch.device, precision: str) -> torch.Tensor:
    """fp32 logits on `device` of `net` in eval mode (on the CPU in fp32: exactly `extractor_logits`' values)."""
    was_training = net.training
    net.eval()
    fmt = memory_format(device.type)
    outs = []
    for chunk in tokens.split(batch_size):
        with autocast(device.type, precision):
            outs.append(net(embed_batch(vqgm, chunk).to(device).contiguous(memory_format=fmt)).float())
    net.train(was_training)
    return torch.cat(outs)


def validate(
    net: torch.nn.Module, vqgm: Any, tokens: torch.Tensor, labels: torch.Tensor, batch_size: int, *, device: torch.device,
    precision: str = "fp32", dist: DistContext | None = None,
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `net` in eval mode on a split's `tokens` and `labels`.

    Under torchrun each rank evaluates its every world_size-th image and the sums are all-reduced, so every rank
    returns one process's figures up to the order of float summation (every rank needs the same weights and
    batch-norm statistics: see `DistContext.broadcast_tensors`). One process computes what rank 0 alone did before.
    """
    if dist is None or not dist.distributed:
        logits = _logits(net, vqgm, tokens, batch_size, device, precision)
        labels = labels.to(logits.device)
        return float(F.cross_entropy(logits, labels)), float((logits.argmax(1) == labels).float().mean())
    tokens, labels = tokens[dist.rank::dist.world_size], labels[dist.rank::dist.world_size]
    loss_sum, correct = 0.0, 0.0
    if len(labels):
        logits = _logits(net, vqgm, tokens, batch_size, device, precision)
        labels = labels.to(logits.device)
        loss_sum = float(F.cross_entropy(logits, labels, reduction="sum"))
        correct = float((logits.argmax(1) == labels).sum())
    loss_sum, correct, n = dist.all_reduce_counts([loss_sum, correct, float(len(labels))])
    return loss_sum / n, correct / n


@dataclass(frozen=True)
class _Run:
    """What one training run keeps fixed: its recipe, device, ranks, progress, and where its state goes."""

    tc: TrainConfig
    device: torch.device
    dist: DistContext | None  # only under torchrun with more than one rank
    progress: Progress | None
    run_dir: Path
    settings: str  # `_fingerprint` of the model, sizes and recipe
    fingerprint: str  # ... and of the images

    @property
    def main(self) -> bool:
        """Whether this process writes the checkpoints (rank 0, or the only process)."""
        return self.dist is None or self.dist.is_main

    @property
    def rank(self) -> int:
        return self.dist.rank if self.dist is not None else 0

    @property
    def world_size(self) -> int:
        return self.dist.world_size if self.dist is not None else 1

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.safetensors"


@dataclass
class _State:
    """What a checkpoint holds besides the RNG states: network, optimiser, schedule, and the epochs finished so far."""

    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.StepLR
    epoch: int = 0  # the last finished epoch
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = -1.0


def _splits(store: Store, model: ModelInfo, cfg: ExtractorConfig, tc: TrainConfig, device: torch.device,
            progress: Progress | None, dist: DistContext | None) -> list[SplitData]:
    """The train, val and test splits; every rank first generates its share of the missing images (one job dealt by image)."""
    subset = [c for c in model_registry.classes(store, model) if c.class_id in cfg.class_ids] if cfg.class_ids is not None else None
    generate_requests(store, model, _split_requests(store, model, cfg, tc, subset), device=device, dist=dist,
                      progress=None if progress is None else (lambda done, total, info="": report(progress, done, total, "generating images")))
    sizes = (("train", tc.train_per_class), ("val", tc.val_per_class), ("test", tc.test_per_class))
    if cfg.concept is not None:  # balanced Y / not-Y, labels 1 / 0
        return [load_concept_split(store, model, split, per_class, cfg.concept_class_ids or (), seed=tc.data_seed, device=device,
                                   progress=progress)
                for split, per_class in sizes]
    return [_head_labels(load_split(store, model, split, per_class, seed=tc.data_seed, device=device, progress=progress,
                                    classes=subset), cfg)
            for split, per_class in sizes]


def _new_state(cfg: ExtractorConfig, tc: TrainConfig, device: torch.device) -> _State:
    """A freshly initialised network (seeded by the recipe), its Adam and its StepLR schedule."""
    set_all_random_seeds(tc.seed)
    net = build_extractor(cfg).to(device, memory_format=memory_format(device.type))
    optimizer = make_optimizer(net, tc, device.type)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=tc.step_size, gamma=tc.gamma)
    return _State(net, optimizer, scheduler)


def _resume(run: _Run, state: _State, name: str, restart: bool) -> int | None:
    """Load the run's last finished epoch into `state` (every rank from rank 0's file); that epoch, or None for a new run."""
    saved = None
    if run.main and run.last_path.is_file() and not restart:
        saved = _read_state(run.last_path)
        if saved.get("fingerprint") != run.fingerprint:  # same settings, but the stored images changed
            raise _other_settings(run.last_path, name)
        if not run.best_path.is_file():
            raise CortexError(f"the best checkpoint {str(run.best_path)!r} of this run is missing; add --restart to start over")
    if run.dist is not None:
        saved = run.dist.broadcast(saved)  # every rank resumes from rank 0's state
    if saved is None:
        return None
    state.net.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    state.epoch, state.history = int(saved["epoch"]), list(saved["history"])
    state.best_epoch, state.best_val_acc = int(saved["best_epoch"]), float(saved["best_val_acc"])
    _set_rng_state(saved["rng"])
    return state.epoch


def _start_run_dir(run: _Run, model: ModelInfo, name: str, cfg: ExtractorConfig) -> None:
    """A new run: drop what an earlier run left and write a small readable record of its settings, which a later rerun
    checks before it generates anything."""
    for stale in (run.last_path, run.best_path):
        stale.unlink(missing_ok=True)
    (run.run_dir / "run.json").write_text(json.dumps(
        {"settings": run.settings, "model": model.name, "name": name, "config": cfg.to_dict(), "train": run.tc.record()},
        indent=2, sort_keys=True) + "\n")


def _batches(n_train: int, batch_size: int, min_batch: int) -> list[tuple[int, int]]:
    """(start, end) of every step's samples in an epoch's order; a last batch below `min_batch` is dropped (batch norm
    cannot train on a single sample per rank)."""
    batches = [(i, min(i + batch_size, n_train)) for i in range(0, n_train, batch_size)]
    if len(batches) > 1 and batches[-1][1] - batches[-1][0] < min_batch:
        batches.pop()
    return batches


def _step_reporter(progress: Progress | None, epoch: int, epochs: int, steps: int,
                   total_steps: int) -> Callable[[int, torch.Tensor, torch.Tensor, int], None]:
    """`train_epoch`'s on_step for one epoch: the progress line, its running figures read from the device at most once a second."""
    running, next_read = "", 0.0

    def on_step(b: int, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int) -> None:
        nonlocal running, next_read
        if progress is None:
            return
        if time.monotonic() >= next_read:  # the running figures cost a host read: at most one a second
            running = f" loss {float(loss_sum) / seen:.3f} acc {float(correct) / seen:.3f}"
            next_read = time.monotonic() + 1.0
        report(progress, (epoch - 1) * steps + b + 1, total_steps, f"epoch {epoch}/{epochs}{running}")

    return on_step


def _train_epochs(run: _Run, state: _State, vqgm: Any, train: SplitData, val: SplitData) -> None:
    """The epochs after the last finished one; rank 0 writes the best weights and the whole state after each."""
    tc, device, dist = run.tc, run.device, run.dist
    n_train = len(train)
    batches = _batches(n_train, tc.batch_size, 2 * run.world_size)
    total_steps = tc.epochs * len(batches)
    step = state.net
    if dist is not None:
        step = DistributedDataParallel(state.net, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    (train_tokens, train_labels), (val_tokens, val_labels) = _placed(train, device), _placed(val, device)
    for epoch in range(state.epoch + 1, tc.epochs + 1):
        state.net.train()
        if dist is not None:  # each rank its own dropout stream, a function of (seed, epoch, rank) so that a resume repeats it
            torch.manual_seed(derive_seed(tc.seed, "extractor-dropout", epoch, dist.rank))
        order = torch.randperm(n_train, generator=generator_for(tc.seed, "extractor-shuffle", epoch))
        lr = state.optimizer.param_groups[0]["lr"]
        loss_sum, correct, seen = train_epoch(step, state.optimizer, vqgm, train_tokens, train_labels, order.to(train_tokens.device),
                                              batches, device=device, precision=tc.precision, rank=run.rank, world_size=run.world_size,
                                              on_step=_step_reporter(run.progress, epoch, tc.epochs, len(batches), total_steps))
        state.scheduler.step()
        loss_sum, correct = float(loss_sum), float(correct)  # the epoch's one read of its training figures
        if dist is not None:
            loss_sum, correct, seen = dist.all_reduce_counts([loss_sum, correct, float(seen)])
            dist.broadcast_tensors(state.net.buffers())  # every rank validates with rank 0's batch-norm statistics
        val_loss, val_acc = validate(state.net, vqgm, val_tokens, val_labels, tc.batch_size, device=device, precision=tc.precision,
                                     dist=dist)
        if not run.main:
            continue  # rank 0 writes the checkpoints
        state.history.append({"epoch": epoch, "lr": lr, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                              "val_loss": val_loss, "val_acc": val_acc})
        if val_acc > state.best_val_acc:
            state.best_epoch, state.best_val_acc = epoch, val_acc
            _atomic_safetensors(state.net.state_dict(), run.best_path)
        _atomic_save({
            "version": STATE_VERSION, "settings": run.settings, "fingerprint": run.fingerprint, "epoch": epoch,
            "model": state.net.state_dict(), "optimizer": state.optimizer.state_dict(), "scheduler": state.scheduler.state_dict(),
            "history": state.history, "best_epoch": state.best_epoch, "best_val_acc": state.best_val_acc, "rng": _rng_state(),
        }, run.last_path)
        report(run.progress, epoch * len(batches), total_steps,
               f"epoch {epoch}/{tc.epochs} loss {loss_sum / seen:.3f} acc {correct / seen:.3f} val {val_acc:.3f}")


def _register(store: Store, model: ModelInfo, cfg: ExtractorConfig, name: str, run: _Run, state: _State, vqgm: Any,
              data: list[SplitData], resumed: int | None) -> TrainResult:
    """Test the best-on-validation weights and register them (rank 0)."""
    train, val, test = data
    tc, net = run.tc, state.net
    net.load_state_dict(read_state_dict(run.best_path))
    _, _, test_logits = _evaluate(net, vqgm, test, tc.batch_size)
    metrics = {
        "best_epoch": state.best_epoch, "val_acc": state.best_val_acc, "n_params": count_parameters(net),
        "n_train": len(train), "n_val": len(val), "n_test": len(test),
        # a concept extractor's test accuracy is binary (Y vs not-Y, balanced); top-k over 2 outputs says nothing
        "test": binary_accuracy(test_logits, test.labels) if cfg.concept is not None else topk_accuracy(test_logits, test.labels),
    }
    hparams = {**tc.record(), "preset": "mini" if model.is_mini else "paper", "optimizer": "adam", "scheduler": "steplr",
               "loss": "cross_entropy"}
    if cfg.concept is not None:
        hparams["data"] = "concept-balanced"  # *_per_class images of each member (Y), as many of the other classes (not-Y)
    info = register_extractor(store, model, name, cfg, hparams, run.best_path, metrics)
    return TrainResult(info, state.best_epoch, state.best_val_acc, state.history, resumed, str(run.run_dir))


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
    device = torch.device(device)
    if ddp and tc.batch_size < 2 * dist.world_size:
        raise CortexError(f"batch-size {tc.batch_size} gives a rank fewer than 2 samples (batch norm) on {dist.world_size} ranks; "
                          f"use --batch-size >= {2 * dist.world_size}")
    run_dir = check_run(store, model, cfg, tc, name=name, out_dir=out_dir, restart=restart) if main else None
    name = name or cfg.arch
    if ddp:
        run_dir = Path(dist.broadcast(str(run_dir)))
    data = _splits(store, model, cfg, tc, device, progress, dist if ddp else None)
    run = _Run(tc, device, dist if ddp else None, progress, run_dir, _fingerprint(model, cfg, tc), _fingerprint(model, cfg, tc, data))
    vqgm = model_registry.load_model(model, device)
    state = _new_state(cfg, tc, device)
    resumed = _resume(run, state, name, restart)
    if resumed is None and main:
        _start_run_dir(run, model, name, cfg)
    _train_epochs(run, state, vqgm, data[0], data[1])
    if ddp:
        dist.barrier()
        if not main:
            return dist.broadcast(None)  # rank 0's result
    result = _register(store, model, cfg, name, run, state, vqgm, data, resumed)
    return dist.broadcast(result) if ddp else result


def train_from_options(store: Store, model: ModelInfo, arch: str, *, name: str | None = None, classes: Any = None,
                       concept: str | None = None, restart: bool = False, bundle: bool = False, precision: str | None = None,
                       device: torch.device | str = "cpu", progress: Progress | None = None, dist: DistContext | None = None,
                       **recipe: Any) -> TrainedExtractor:
    """`train_extractor` as `cortex train-extractor` asks for it: the configs of `default_configs` (with `precision` and the
    `recipe` fields) for a subset of `classes` (as `subjects.classes` reads them) or a binary extractor of a named `concept`
    (either needs its own `name`), checked on rank 0 (`check_run`) before anything is generated; `bundle` (mini only) also
    writes the fp16 weights into the package (`export_bundled`, rank 0).

    Raises:
        CortexError: `bundle` of another model, both `classes` and `concept`, a subset or concept extractor without a name,
            an unknown class or concept, and whatever `check_run` and `train_extractor` refuse.
    """
    from ..models import subjects  # the models package imports extractors.architectures: keep this edge one way at import time
    from ..models.concepts import get_concept

    if bundle and not model.is_mini:
        raise CortexError(f"--bundle ships extractors of the bundled mini model only, not of {model.name!r}; drop --bundle")
    class_ids, own = None, {}
    if classes is not None and concept is not None:
        raise CortexError("give --concept (a binary extractor for one concept) or --classes (a subset of classes), not both")
    if classes is not None:
        if not name:  # the default name ('ce') is the full extractor every command uses by default
            raise CortexError("a subset extractor needs its own name: add --name, e.g. --name birds-ce")
        class_ids = [c.class_id for c in subjects.classes(store, model, classes)]
    if concept is not None:
        found = get_concept(store, model, concept)
        if not name:
            raise CortexError(f"a concept extractor needs its own name: add --name, e.g. --name {found.name.replace(' ', '-')}-{arch}")
        own = {"concept": found.name, "concept_class_ids": found.class_ids}
    cfg, tc = default_configs(model, arch, class_ids=class_ids, precision=precision, **own, **recipe)
    main = dist is None or dist.is_main
    if main:
        check_run(store, model, cfg, tc, name=name, restart=restart)
    result = train_extractor(store, model, cfg, tc, name=name, device=device, progress=progress, restart=restart, dist=dist)
    bundled = export_bundled(result.info) if bundle and main else None
    return TrainedExtractor(model.name, result, [str(p) for p in bundled] if bundled else [])
