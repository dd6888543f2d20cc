"""torchrun support: which rank this process is, which image seeds it owns, and the few collectives.

`torchrun --nproc-per-node G -m cortex_cli generate|index|train-extractor ...` starts G copies of the
command; each reads RANK / WORLD_SIZE / LOCAL_RANK from the environment (`init_from_env`), takes its
batches of the whole job (`generation.deal_batches`: the job's images over all classes and splits, in
batches; batch b to rank b % world_size), and writes its own transactions to the shared database. Every
row is keyed by image identity and inserted with insert-or-ignore, so 1 rank and 8 ranks write the same
rows; and since the ranks form exactly the batches of one process, even float results (TSV maps) are
bit-identical. Rank 0 migrates the database before the others open it,
shows the progress and prints the summary, with counts summed over ranks (`all_reduce_counts`).
Without torchrun's variables everything here is a no-op on one rank.

    torchrun --nproc-per-node 8 -m cortex_cli --db postgresql+psycopg://db-host/cortex index --class all --images 1000
    torchrun --nnodes 2 --node-rank R --master-addr node0 --nproc-per-node 8 -m cortex_cli --db ... generate --classes @birds.txt -n 1000
(SQLite works for the ranks of one machine: WAL lets them write in turn.)
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist

from .errors import CortexError, first_line
from .environment import resolve_device

T = TypeVar("T")
_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass
class DistContext:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None  # 'gloo' or 'nccl' when a process group was started

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def main_first(self, fn: Callable[[], T]) -> T:
        """fn() on rank 0, then on the other ranks (e.g. open and migrate the database once)."""
        if self.is_main:
            value = fn()
            self.barrier()
        else:
            self.barrier()
            value = fn()
        return value

    def all_reduce_counts(self, counts: Sequence[int | float], op: str = "sum") -> list[int | float]:
        """Element-wise sum (or max) of `counts` over all ranks; the input unchanged on one rank."""
        if not self.distributed:
            return list(counts)
        dtype = torch.float64 if any(isinstance(c, float) for c in counts) else torch.int64
        tensor = torch.tensor(list(counts), dtype=dtype, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        return [v.item() for v in tensor.cpu()]

    def broadcast_tensors(self, tensors: Iterable[torch.Tensor]) -> None:
        """Overwrite each tensor (on this rank's device) in place with rank 0's; nothing on one rank."""
        if self.distributed:
            for tensor in tensors:
                dist.broadcast(tensor, src=0)

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj` (picklable), in rank order."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: T) -> T:
        """Rank 0's `obj` (picklable) on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def destroy(self) -> None:
        if self.distributed:
            if dist.is_initialized():
                dist.destroy_process_group()
            self.backend = None


def in_torchrun() -> bool:
    """Whether torchrun (or another launcher) set RANK and WORLD_SIZE."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise CortexError(f"environment variable {name}={value!r} is not an integer; launch with torchrun") from None


def init_from_env(device: str | torch.device = "auto", timeout_s: float = 1800.0) -> DistContext:
    """The torchrun context of this process, with its process group started; rank 0 of 1 without torchrun.

    Args:
        device: the `--device` option: 'auto' or 'cuda' use cuda:LOCAL_RANK when CUDA is available
            (NCCL), 'cpu' or no CUDA use the CPU (gloo).
        timeout_s: how long a collective waits for the other ranks.

    Returns:
        DistContext (call `destroy()` when done).

    Raises:
        CortexError: malformed torchrun variables, or a process group that cannot start.
    """
    if not in_torchrun():
        return DistContext(device=resolve_device(str(device)))
    rank, world_size, local_rank = (_env_int(name, 0) for name in _ENV)
    if world_size < 1 or not 0 <= rank < world_size:
        raise CortexError(f"RANK={rank} is not in 0..WORLD_SIZE-1 (WORLD_SIZE={world_size})")
    spec = str(device).strip().lower()
    if spec in ("auto", "cuda") and torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise CortexError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA device(s) are visible; "
                              "use --nproc-per-node <= the GPU count")
        torch.cuda.set_device(local_rank)
        chosen, backend = torch.device("cuda", local_rank), "nccl"
    else:
        chosen, backend = resolve_device(spec if spec != "auto" else "cpu"), "gloo"
        if chosen.type == "cuda":  # an explicit cuda:N: honour it, but collectives need NCCL
            torch.cuda.set_device(chosen)
            backend = "nccl"
    ctx = DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=chosen)
    if world_size > 1:
        try:
            dist.init_process_group(backend=backend, rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s))
        except (RuntimeError, ValueError) as exc:
            raise CortexError(f"cannot join the torchrun job (rank {rank} of {world_size}, {backend}): {first_line(exc)}") from exc
        ctx.backend = backend
    return ctx


@contextmanager
def torchrun_job(device: str | torch.device = "auto", timeout_s: float = 1800.0) -> Iterator[DistContext]:
    """This process's place in the torchrun job for the duration of a block (rank 0 of 1 without torchrun).

    The process group starts on entry (`init_from_env`). On a clean exit every rank waits for the
    others (no rank tears the group down while another still uses it), then the group is destroyed;
    on an error it is destroyed at once.
    """
    ctx = init_from_env(device, timeout_s)
    try:
        yield ctx
        ctx.barrier()
    finally:
        ctx.destroy()


__all__ = ["DistContext", "in_torchrun", "init_from_env", "torchrun_job"]
