"""Sampling throughput: cortex's samplers vs taming's uncached `Net2NetTransformer.sample` and its `sample_with_past`.

All run on the same random-init model, sized like the bundled mini model
(`MiniRecipe().config()`: 16x16 tokens, K=128, a 4-layer 128-wide GPT), in the same process:
- the GPU-native sampler (`--sampler philox`, the default: `TamingDecoder` over a static KV cache, noise
  keyed by image and step drawn where the model runs; compiled only where `CORTEX_COMPILE` says so),
  greedy (must return taming's greedy tokens) and top-k 16;
- the older host sampler (`--sampler host`: taming's GPT eagerly over a preallocated cache, host noise);
- taming's `sample_with_past` (its own KV cache, top-k 16) and its uncached `sample` (greedy).
The bar of issue 29: philox top-k 16 >= 1.5x `sample_with_past`.

    python benchmarks/bench_sampling.py [--batch 8] [--repeats 3] [--device cpu] [--threads 0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def build_model(device: str):
    """The mini recipe's architecture, random init, saved and loaded through cortex's strict loader."""
    from safetensors.torch import save_file

    from cortex_cli.backends.taming import build_net, load_vqgm
    from cortex_cli.miniworld.training import MiniRecipe
    from cortex_cli.models.configs import write_config

    cfg = MiniRecipe().config()
    tmp = Path(tempfile.mkdtemp(prefix="cortex-bench-"))
    config_path = write_config(cfg, tmp / "config.yaml")
    torch.manual_seed(0)
    net = build_net(cfg)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp / "model.safetensors"))
    return load_vqgm(config_path, tmp / "model.safetensors", device)


def timed(fn, repeats: int, device: str) -> tuple[float, torch.Tensor]:
    """Median wall time of fn() over `repeats` runs (after one warm-up), and its last output."""
    out = fn()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="images per call")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (median reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from cortex_cli.backends.base import SamplerSettings, image_streams
    from cortex_cli.models.classnames import ClassName

    vqgm = build_model(args.device)
    greedy = SamplerSettings(greedy=True)
    classes = [i % vqgm.n_classes for i in range(args.batch)]
    concepts = [ClassName(c, f"class {c}") for c in classes]
    seeds = list(range(args.batch))
    tokens = args.batch * vqgm.grid * vqgm.grid
    print(f"model: mini recipe, random init; K={vqgm.n_embed}, grid {vqgm.grid}x{vqgm.grid}, "
          f"{sum(p.numel() for p in vqgm.net.transformer.parameters()) / 1e6:.2f}M GPT parameters; "
          f"device {args.device}, torch threads {torch.get_num_threads()}, batch {args.batch}, median of {args.repeats}")

    t_uncached, ref = timed(lambda: vqgm.sample_uncached(classes, greedy), args.repeats, args.device)
    splits = ["train"] * args.batch
    topk = SamplerSettings(top_k=16)
    host = SamplerSettings(top_k=16, noise="host")
    t_cached, got = timed(lambda: vqgm.sample(concepts, image_streams(greedy, "bench", concepts, splits, seeds), greedy),
                          args.repeats, args.device)
    t_sampled, _ = timed(lambda: vqgm.sample(concepts, image_streams(topk, "bench", concepts, splits, seeds), topk),
                         args.repeats, args.device)
    t_host, _ = timed(lambda: vqgm.sample(concepts, image_streams(host, "bench", concepts, splits, seeds), host),
                      args.repeats, args.device)
    from cortex_cli.backends import taming_shim

    taming_shim.install()  # taming's mingpt imports a helper current transformers lacks
    from taming.modules.transformer.mingpt import sample_with_past

    _, cond = vqgm.net.encode_to_c(torch.tensor(classes, device=vqgm.device)[:, None])
    t_past, _ = timed(lambda: sample_with_past(cond, vqgm.net.transformer, steps=vqgm.grid ** 2, top_k=16), args.repeats, args.device)
    same = torch.equal(ref, got)
    print(f"taming Net2NetTransformer.sample (no cache, greedy): {tokens / t_uncached:10.0f} tokens/s ({t_uncached:.3f} s)")
    print(f"cortex philox sampler (static cache, greedy):        {tokens / t_cached:10.0f} tokens/s ({t_cached:.3f} s)")
    print(f"cortex philox sampler (static cache, top-k 16):      {tokens / t_sampled:10.0f} tokens/s ({t_sampled:.3f} s)")
    print(f"cortex host sampler (the older one, top-k 16):       {tokens / t_host:10.0f} tokens/s ({t_host:.3f} s)")
    print(f"taming sample_with_past (its KV cache, top-k 16):     {tokens / t_past:10.0f} tokens/s ({t_past:.3f} s)")
    print(f"speed-up over taming's uncached sample (greedy vs greedy): {t_uncached / t_cached:.2f}x; identical tokens: {same}")
    print(f"philox sampler / taming's sample_with_past (both top-k 16): {t_past / t_sampled:.2f}x (bar: >= 1.5x)")
    print(f"philox sampler / the older host sampler (both top-k 16): {t_host / t_sampled:.2f}x")
    if not same:
        sys.exit("KV-cache greedy tokens differ from taming's uncached sample")


if __name__ == "__main__":
    main()
