"""Extractor training throughput (CE and RE), the benchmark's own loop against the product's, and a matmul ceiling.

Prints ms per training image (forward + backward + Adam step) and achieved GFLOP/s (training taken as 3x the
forward FLOPs; on the CPU also as a fraction of this process's fp32 matmul GFLOP/s) of up to two loops at the
same precision, device and batch:
- bench: the ideal loop, one fixed input batch E on the device, nothing else;
- product: `extractors.training.train_epoch`, the loop `cortex train-extractor` runs: each step gathers its
  shuffled token grids, embeds them through the codebook, and sums loss and accuracy on the device.
Both use the product's device choices (channels-last and fused Adam on CUDA, `--precision` autocast); the
product/bench ratio is what issue 29 bars (>= 0.70). `--size mini` times the mini preset on the bundled mini
model's codebook and projects the mini recipe (13 classes x 300 images x 30 epochs, data generation excluded);
`--size paper` the paper's sizes (d=256, width 512, 1000 classes) on a random codebook of the same shape.

    OMP_NUM_THREADS=1 python benchmarks/bench_extractor_training.py
    python benchmarks/bench_extractor_training.py --steps 10 --batch 64 --precision bf16 --loop both --repeats 5
    python benchmarks/bench_extractor_training.py --device cuda --size paper --batch 256 --steps 50 --precision bf16
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
import torch.nn.functional as F

from cortex_cli.extractors.architectures import ExtractorConfig, build_extractor, count_parameters, forward_flops
from cortex_cli.extractors.training import MINI_FC_WIDTH, MINI_WIDTH, PRECISIONS, TrainConfig, autocast, make_optimizer, memory_format, train_epoch


class Codebook:
    """A VQGM's `embed` (as the backends compute it) on a given codebook (K x d)."""

    def __init__(self, codebook: torch.Tensor, grid: int):
        self.codebook, self.grid = codebook, grid

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.to(self.codebook.device).long().reshape(-1, self.grid, self.grid)
        return F.embedding(tokens, self.codebook).permute(0, 3, 1, 2).contiguous()


def mini_codebook() -> Codebook:
    """The bundled mini model's codebook (through its registered `embed`)."""
    import tempfile

    from cortex_cli.models import registry as model_registry
    from cortex_cli.store.database import open_store

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/bench.db")
        try:
            model_registry.ensure_bundled(store)
            vqgm = model_registry.load_model(model_registry.get_model(store, "mini"))
        finally:
            store.close()
    return Codebook(vqgm.codebook.detach().float().cpu(), vqgm.grid)


def matmul_gflops(n: int = 512, reps: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def _net(cfg: ExtractorConfig, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_extractor(cfg).to(device, memory_format=memory_format(device.type)).train()


def bench_loop(cfg: ExtractorConfig, batch: int, device: torch.device, precision: str = "fp32") -> Callable[[int], None]:
    """The ideal loop, run(k) = k steps on one fixed batch E on the device."""
    net = _net(cfg, device)
    opt = make_optimizer(net, TrainConfig(), device.type)
    x = torch.randn(batch, cfg.in_channels, cfg.grid, cfg.grid, device=device).contiguous(memory_format=memory_format(device.type))
    y = torch.randint(0, cfg.n_classes, (batch,), device=device)

    def run(k: int) -> None:
        for _ in range(k):
            with autocast(device.type, precision):
                loss = F.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return run


def product_loop(cfg: ExtractorConfig, codebook: Codebook, batch: int, steps: int, device: torch.device,
                 precision: str = "fp32") -> Callable[[int], None]:
    """The product's loop, run(k) = `train_epoch` over k of `steps` shuffled batches of token grids kept on the device."""
    net = _net(cfg, device)
    opt = make_optimizer(net, TrainConfig(), device.type)
    vqgm = Codebook(codebook.codebook.to(device), cfg.grid)
    n = batch * steps
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, codebook.codebook.shape[0], (n, cfg.grid, cfg.grid), generator=gen, dtype=torch.int32).to(device)
    labels = torch.randint(0, cfg.n_classes, (n,), generator=gen).to(device)
    order = torch.randperm(n, generator=gen).to(device)
    batches = [(i, i + batch) for i in range(0, n, batch)]

    def run(k: int) -> None:
        sums = train_epoch(net, opt, vqgm, tokens, labels, order, batches[:k], device=device, precision=precision)
        float(sums[0])  # the epoch's one read, as in train_extractor

    return run


def best_seconds(runs: dict[str, Callable[[int], None]], steps: int, device: torch.device, repeats: int = 1) -> dict[str, float]:
    """Each loop's best seconds for `steps` steps over `repeats` rounds, after a one-step warm-up; the loops take turns
    within each round (first and second alternating), so a shared machine's load falls on both alike."""
    for run in runs.values():
        run(1)
    best = dict.fromkeys(runs, float("inf"))
    for r in range(repeats):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            runs[name](steps)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def configs(size: str, codebook: Codebook | None) -> list[ExtractorConfig]:
    if size == "mini":
        d = codebook.codebook.shape[1]
        return [ExtractorConfig(a, in_channels=d, grid=codebook.grid, width=MINI_WIDTH, n_classes=13, fc_width=MINI_FC_WIDTH[a])
                for a in ("ce", "re")]
    return [ExtractorConfig(a, in_channels=256, grid=16, n_classes=1000) for a in ("ce", "re")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=TrainConfig.mini().batch_size)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--loop", choices=("bench", "product", "both"), default="bench")
    parser.add_argument("--size", choices=("mini", "paper"), default="mini")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each loop's best is kept (a shared machine's noise)")
    args = parser.parse_args()
    device = torch.device(args.device)
    tc = TrainConfig.mini()
    codebook = mini_codebook() if args.size == "mini" else Codebook(torch.randn(16384, 256), 16)
    ceiling = matmul_gflops() if device.type == "cpu" else None
    print(f"{args.size} sizes on {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"{args.precision}, batch {args.batch}, best of {args.repeats} x {args.steps} steps" + (f"; fp32 matmul ceiling {ceiling:.1f} GFLOP/s" if ceiling else ""))
    loops = ("bench", "product") if args.loop == "both" else (args.loop,)
    for cfg in configs(args.size, codebook):
        runs = {loop: bench_loop(cfg, args.batch, device, args.precision) if loop == "bench" else
                product_loop(cfg, codebook, args.batch, args.steps, device, args.precision) for loop in loops}
        seconds = best_seconds(runs, args.steps, device, args.repeats)
        ms = {loop: t / (args.steps * args.batch) * 1e3 for loop, t in seconds.items()}
        for loop in loops:
            achieved = 3 * forward_flops(cfg) / (ms[loop] / 1e3) / 1e9
            share = f" = {achieved / ceiling:.2f} x matmul ceiling" if ceiling else ""
            total = f", mini preset ~{ms[loop] / 1e3 * 13 * tc.train_per_class * tc.epochs / 60:.0f} min" if args.size == "mini" else ""
            print(f"{cfg.arch} {loop}: {count_parameters(build_extractor(cfg)) / 1e6:.2f}M params, {ms[loop]:.3f} ms/train image "
                  f"({1e3 / ms[loop]:.0f} images/s), {achieved:.1f} GFLOP/s{share}{total}")
        if len(ms) == 2:
            print(f"{cfg.arch}: product / bench rate = {ms['bench'] / ms['product']:.2f}")

if __name__ == "__main__":
    main()
