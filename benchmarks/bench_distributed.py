"""torchrun scaling on CPU: images/s of `generate` and `index` with 1 vs 2 ranks (gloo) on the mini model.

Each rank count gets a fresh SQLite database; `generate` fills it, then `index` explains the same
images, both launched as `python -m torch.distributed.run --standalone --nproc-per-node W -m cortex_cli ...`.
Wall time includes process start and model loading (as a user sees it); the index's own img/s
(rank 0's JSON: images / the slowest rank's indexing time) is printed beside it. Prints the 2-vs-1
ratios. On a machine whose cores are shared, expect less than 2x.

    python benchmarks/bench_distributed.py                      # every mini class, 16 images each
    python benchmarks/bench_distributed.py --images 32 --classes 'red-capped bird,blue fish' --ranks 1,2,4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _torchrun(ranks: int, db: str, threads: int, *args: str) -> tuple[float, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), CORTEX_HOME=str(Path(db).parent / "home"))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
           "-m", "cortex_cli", "--db", f"sqlite:///{db}", "--device", "cpu", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    return seconds, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="images per class")
    parser.add_argument("--classes", default="all", help="--classes of the mini model ('all' or 'a,b,...')")
    parser.add_argument("--samples", type=int, default=20, help="N noisy copies per image")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--ranks", default="1,2", help="rank counts to time, comma-separated")
    parser.add_argument("--threads", type=int, default=1, help="OMP threads per rank")
    args = parser.parse_args()
    counts = [int(r) for r in args.ranks.split(",")]
    common = ["--model", "mini", "--classes", args.classes, "--batch-size", str(args.batch_size), "--json"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ranks in counts:
            db = str(Path(tmp) / f"ranks{ranks}.db")
            gen_s, out = _torchrun(ranks, db, args.threads, "generate", "-n", str(args.images), *common)
            generated = json.loads(out)
            n_images = sum(r["added"] for r in (generated if isinstance(generated, list) else [generated]))
            idx_s, out = _torchrun(ranks, db, args.threads, "index", "--images", str(args.images), "--samples", str(args.samples), *common)
            indexed = json.loads(out)
            indexed = indexed if isinstance(indexed, list) else [indexed]
            inner = sum(r["added"] for r in indexed) / max(sum(r["seconds"] for r in indexed), 1e-9)
            rows.append((ranks, n_images / gen_s, sum(r["added"] for r in indexed) / idx_s, inner))
            print(f"{ranks} rank(s): generate {rows[-1][1]:.2f} img/s wall, index {rows[-1][2]:.2f} img/s wall "
                  f"({inner:.2f} img/s inside the index loop), {n_images} images", flush=True)
    base = rows[0]
    for ranks, gen, idx, inner in rows[1:]:
        print(f"{ranks} vs {base[0]} rank(s): generate x{gen / base[1]:.2f}, index x{idx / base[2]:.2f} wall "
              f"(x{inner / base[3]:.2f} inside the loop) on {os.cpu_count()} CPU(s)")


if __name__ == "__main__":
    main()
