"""Optimisation steps/s of token selection vs the embedding baseline, on CPU.

Two sizes, both with a CE extractor built by `cortex_cli.extractors.architectures.build_extractor`
(random weights: the cost of a step does not depend on them) and a 4x4 region of a 16x16 grid:
  mini  - the bundled mini model: d=32, K=128, CE width 64 / FC 512, 13 classes;
  paper - the paper's setting: d=256, K=16384, CE width 512 / FC 4096, 1000 classes.
Prints steps/s of each method and the ratio token/embedding measured in the same process.

    python benchmarks/bench_optimize.py [--mini-steps 60] [--paper-steps 3] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from cortex_cli.extractors.architectures import ExtractorConfig, build_extractor
from cortex_cli.search.token_selection import OptimizeSettings, optimize_tokens

SIZES = {
    "mini": dict(d=32, K=128, cfg=ExtractorConfig(arch="ce", in_channels=32, grid=16, width=64, n_classes=13, fc_width=512)),
    "paper": dict(d=256, K=16384, cfg=ExtractorConfig(arch="ce", in_channels=256, grid=16, width=512, n_classes=1000)),
}


def steps_per_second(size: str, method: str, steps: int) -> float:
    spec = SIZES[size]
    torch.manual_seed(0)
    extractor = build_extractor(spec["cfg"]).eval()
    for p in extractor.parameters():
        p.requires_grad_(False)
    codebook = torch.randn(spec["K"], spec["d"]) * 0.3
    source = torch.randint(0, spec["K"], (16, 16))
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:8, 4:8] = True
    optimize_tokens(extractor, codebook, source, mask, 1, OptimizeSettings(steps=1, method=method))  # warm-up
    start = time.perf_counter()
    optimize_tokens(extractor, codebook, source, mask, 1, OptimizeSettings(steps=steps, method=method))
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mini-steps", type=int, default=60)
    parser.add_argument("--paper-steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's]")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU, {torch.get_num_threads()} threads, 4x4 region of 16x16, CE extractor")
    for size, steps in (("mini", args.mini_steps), ("paper", args.paper_steps)):
        token = steps_per_second(size, "token", steps)
        embedding = steps_per_second(size, "embedding", steps)
        print(f"{size:5s}  token selection {token:8.2f} steps/s   embedding baseline {embedding:8.2f} steps/s   "
              f"token/embedding {token / embedding:.2f}x   (3000 steps: {3000 / token / 60:.1f} min token)")


if __name__ == "__main__":
    main()
