"""Extractor training throughput of the mini preset (CE and RE), against a matmul ceiling measured here.

Prints ms per training image (forward + backward + Adam step on E), achieved GFLOP/s (training taken
as 3x the forward FLOPs) as a fraction of this process's fp32 matmul GFLOP/s, and the projected time
of the mini preset (TrainConfig.mini(): 13 classes x 300 images x 30 epochs), data generation excluded.

    OMP_NUM_THREADS=1 python benchmarks/bench_extractor_training.py
    python benchmarks/bench_extractor_training.py --steps 10 --batch 64
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from cortex_cli.extractors.architectures import ExtractorConfig, build_extractor, count_parameters, forward_flops
from cortex_cli.extractors.training import MINI_FC_WIDTH, MINI_WIDTH, TrainConfig


def matmul_gflops(n: int = 512, reps: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def train_ms_per_image(cfg: ExtractorConfig, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    net = build_extractor(cfg).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    x = torch.randn(batch, cfg.in_channels, cfg.grid, cfg.grid)
    y = torch.randint(0, cfg.n_classes, (batch,))

    def step() -> None:
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / (steps * batch) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=TrainConfig.mini().batch_size)
    args = parser.parse_args()
    tc = TrainConfig.mini()
    ceiling = matmul_gflops()
    print(f"threads {torch.get_num_threads()}, fp32 matmul ceiling {ceiling:.1f} GFLOP/s")
    for arch in ("ce", "re"):
        cfg = ExtractorConfig(arch, in_channels=32, grid=16, width=MINI_WIDTH, n_classes=13, fc_width=MINI_FC_WIDTH[arch])
        ms = train_ms_per_image(cfg, args.batch, args.steps)
        achieved = 3 * forward_flops(cfg) / (ms / 1e3) / 1e9
        total_min = ms / 1e3 * 13 * tc.train_per_class * tc.epochs / 60
        print(f"{arch}: {count_parameters(build_extractor(cfg)) / 1e6:.2f}M params, {ms:.2f} ms/train image, "
              f"{achieved:.1f} GFLOP/s = {achieved / ceiling:.2f} x matmul ceiling, mini preset ~{total_min:.0f} min")


if __name__ == "__main__":
    main()
