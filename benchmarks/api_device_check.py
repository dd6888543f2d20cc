"""The Python API on a device, beside the CPU: the README quickstart's calls, an in-memory explain and an edit.

    python benchmarks/api_device_check.py --device cuda --images 50 --json-out api_cuda.json

Two fresh homes, one per device, run the same calls on the bundled mini model: index --images images of
"red-capped bird", T*_concept (k=10) beside the frequency baseline, the notebook table (its thumbnails
decode on the device), explain of a PIL image, and an edit (--steps 300, region 4:8,4:8). Printed as
JSON: each device's seconds per call and results, and how far the device agrees with the CPU (the
top-10 overlap and the edit's changed tokens; float reductions differ between devices, so near-ties
may flip).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from PIL import Image

from cortex_cli import Workspace

CONCEPT, TARGET, REGION = "red-capped bird", "blue-capped bird", "4:8,4:8"
RED = ("red", "red-capped bird,red mushroom,red sailboat,house")  # a named concept: a union of classes


def run(device: str, home: Path, images: int, steps: int) -> dict:
    seconds: dict[str, float] = {}

    def timed(name, call):
        start = time.perf_counter()
        value = call()
        seconds[name] = round(time.perf_counter() - start, 3)
        return value

    with Workspace(home=home, device=device) as ws:
        timed("index", lambda: ws.index(CONCEPT, images=images))
        top = timed("top_tokens", lambda: ws.top_tokens(CONCEPT, k=10, baseline="frequency"))
        html = timed("notebook_table", top._repr_html_)
        generated = ws.generate(CONCEPT, 1, out=home / "pngs")[0]
        png = Path(generated.png_paths[0])
        explained = timed("explain_pil", lambda: ws.explain(Image.open(png), top_n=5))
        edit = timed("edit", lambda: ws.edit(png, TARGET, REGION, steps=steps, out=home / "edits"))
        ws.add_concept(RED[0], classes=RED[1])
        timed("index_concept", lambda: ws.index(RED[0], images=max(images // 4, 1)))
        red = timed("top_tokens_concept", lambda: ws.top_tokens(RED[0], k=10))
        red_edit = timed("edit_concept", lambda: ws.edit(png, RED[0], REGION, steps=steps, out=home / "edits-red"))
    return {
        "device": str(device), "seconds": seconds, "t_star": [r.token for r in top.rows],
        "baseline": [r.token for r in top.baseline], "thumbnails": html.count("<img"),
        "explain": [t.token for t in explained.top], "explain_tokens_from": explained.tokens_from,
        "edit_changed": [[c.row, c.col, c.new] for c in edit.changed],
        "edit_probabilities": {p.scorer: [p.target_before, p.target_after] for p in edit.probabilities},
        "concept_target": red.target, "concept_t_star": [r.token for r in red.rows],
        "concept_edit_probabilities": {p.scorer: [p.target_before, p.target_after] for p in red_edit.probabilities},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        device = run(args.device, Path(tmp) / "device", args.images, args.steps)
        cpu = run("cpu", Path(tmp) / "cpu", args.images, args.steps)
    report = {
        "images": args.images, "steps": args.steps, "device": device, "cpu": cpu,
        "t_star_overlap_with_cpu": len(set(device["t_star"]) & set(cpu["t_star"])),
        "explain_same_as_cpu": device["explain"] == cpu["explain"],
        "edit_same_as_cpu": device["edit_changed"] == cpu["edit_changed"],
        "concept_t_star_overlap_with_cpu": len(set(device["concept_t_star"]) & set(cpu["concept_t_star"])),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
