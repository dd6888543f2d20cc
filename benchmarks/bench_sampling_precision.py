"""Does bf16 sampling stay within sampling's own variation? (issue 29, part 4, the generation stage)

On the bundled mini model, per class, three sets of images from the philox sampler at the model's default
settings: fp32 seeds 0..n-1 (A), fp32 seeds n..2n-1 (B: another draw of the same distribution, the
method's own variation) and bf16 seeds 0..n-1 (C: the same noise as A). It reports the judges' accuracy
on each set, each set's mean prior NLL under the fp32 prior, and how many tokens C shares with A. bf16
"stays within the variation" when |C - A| is no larger than |B - A| for the judges and the prior NLL.

    python benchmarks/bench_sampling_precision.py [--per-class 16] [--threads 0] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=16, help="images per class and set")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from dataclasses import replace

    from cortex_cli.backends.base import image_streams
    from cortex_cli.backends.taming import load_vqgm
    from cortex_cli.models.classnames import ClassName
    from cortex_cli.judges.pixel_judges import mini_judges
    from cortex_cli.miniworld import world
    from cortex_cli.models.registry import MINI_CONFIG, MINI_WEIGHTS

    start = time.time()
    vqgm = load_vqgm(MINI_CONFIG, MINI_WEIGHTS, args.device)
    base = vqgm.default_sampler()
    judges = mini_judges(args.device)
    n = args.per_class
    classes = [ClassName(c, world.CONCEPTS[c].name) for c in range(len(world.CONCEPTS)) for _ in range(n)]
    labels = torch.tensor([c.class_id for c in classes])
    sets = {"A fp32 seeds 0..n-1": (base, 0), "B fp32 seeds n..2n-1": (base, n), "C bf16 seeds 0..n-1": (replace(base, precision="bf16"), 0)}
    grids, report = {}, {"per_class": n, "classes": len(world.CONCEPTS), "sampler": base.label(), "sets": {}}
    for name, (settings, first) in sets.items():
        seeds = [first + i % n for i in range(len(classes))]
        streams = image_streams(settings, "mini", classes, ["train"] * len(classes), seeds)
        tokens = torch.cat([vqgm.sample(classes[i:i + 64], streams[i:i + 64], settings) for i in range(0, len(classes), 64)])
        grids[name] = tokens.cpu()
        images = vqgm.decode_tokens(tokens)
        row = {j.name: float((j.probabilities(images).argmax(-1).cpu() == labels).float().mean()) for j in judges}
        row["prior_nll"] = float(vqgm.prior_nll(tokens, classes).mean())
        report["sets"][name] = row
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    a, b, c = (report["sets"][k] for k in sets)
    report["bf16_token_agreement_with_fp32"] = float((grids["C bf16 seeds 0..n-1"] == grids["A fp32 seeds 0..n-1"]).float().mean())
    report["within_variation"] = {k: abs(c[k] - a[k]) <= abs(b[k] - a[k]) for k in a}
    report["seconds"] = round(time.time() - start, 1)
    print(f"bf16 tokens equal to fp32's (same noise): {report['bf16_token_agreement_with_fp32']:.1%}")
    print("|bf16 - fp32| <= |fp32 other seeds - fp32|: " + ", ".join(f"{k} {v}" for k, v in report["within_variation"].items()))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
