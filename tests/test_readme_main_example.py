"""The README's main example, run line by line through the real CLI, against the figures its prose states.

The commands are read from the bash block under "## Main example (bundled mini model)" and the
figures from the paragraph below it, so neither can change without the other: a number edited
without rerunning, or a command renamed without updating the README, fails here.
Slow (several minutes on 2 CPU cores): `pytest -m slow tests/test_readme_main_example.py`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Main example (bundled mini model)"
WITH_JSON = {"models", "index", "top-tokens", "edit", "optimize"}  # the lines whose output the prose makes claims about


def _section() -> tuple[list[list[str]], str]:
    """(the block's `cortex` commands as argv lists, the prose after the block with whitespace collapsed)."""
    text = README.read_text()
    assert SECTION in text, f"README has no {SECTION!r} section"
    body = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", body, re.S)
    assert block, f"no ```bash block under {SECTION!r}"
    commands = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    commands = [c for c in commands if c]
    assert commands and all(c[0] == "cortex" for c in commands), commands
    return commands, " ".join(body[block.end():].split())


def _figure(pattern: str, prose: str) -> tuple[str, ...]:
    found = re.search(pattern, prose)
    assert found, f"the README's main-example prose no longer matches {pattern!r}; update the test with the new wording"
    return found.groups()


def _subcommand(argv: list[str]) -> str:
    """The command's name, wherever global options put it ('cortex --seed 1 edit ...')."""
    import typer

    from cortex_cli.cli import app

    names = set(typer.main.get_command(app).commands)
    return next(a for a in argv[1:] if a in names)


def _outs(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--out", "-o")]


@pytest.mark.slow
def test_readme_main_example(tmp_path):
    commands, prose = _section()
    env = {k: v for k, v in os.environ.items() if k != "CORTEX_DB"} | {"CORTEX_HOME": str(tmp_path / "home"), "COLUMNS": "100"}
    outputs: dict[str, dict | list] = {}
    for argv in commands:
        name = _subcommand(argv)
        args = argv[1:] + (["--json"] if name in WITH_JSON and "--json" not in argv else [])
        res = subprocess.run([sys.executable, "-m", "cortex_cli", *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=1200)
        assert res.returncode == 0, f"{shlex.join(argv)} failed:\n{res.stderr[-3000:]}"
        for out in _outs(argv):
            assert (tmp_path / out).exists(), f"{shlex.join(argv)} wrote no {out}"
        if "--json" in args:
            outputs[name] = json.loads(res.stdout)

    # the block's comment: the bundled model and its concepts
    (n_concepts,) = _figure(r"the bundled 'mini' model and its (\d+) concepts", README.read_text())
    mini = next(m for m in outputs["models"] if m["name"] == "mini")
    assert len(mini["classes"]) == int(n_concepts)

    # top salient token, in how many images' top-n, overlap with the frequency baseline
    concept, token = _figure(r'the top salient token of "([^"]+)" is token (\d+)', prose)
    top_n, n_images, indexed = _figure(r"it is in the top-(\d+) of (\d+) of the (\d+) indexed images", prose)
    overlap, k = _figure(r"\(overlap (\d+) of (\d+);", prose)
    index, top = outputs["index"], outputs["top-tokens"]
    assert index["settings"]["top_n"] == int(top_n) and index["images"] == int(indexed)
    assert top["class_name"] == concept and top["images_indexed"] == int(indexed) and top["baseline_kind"] == "frequency"
    assert (top["rows"][0]["token"], top["rows"][0]["n_images"]) == (int(token), int(n_images))
    assert (top["overlap"], len(top["rows"])) == (int(overlap), int(k))

    # the edit: both judges' P(target) and P(source) before -> after, and how many tokens changed
    edit = outputs["edit"]
    p = {row["scorer"]: row for row in edit["probabilities"]}
    resnet = _figure(r"the ResNet judge gave this source image P\(([^)]+)\) = ([\d.]+) \(P\([^)]+\) ([\d.]+)\); "
                     r"after changing (\d+) tokens it gives ([\d.]+) \([^)]*? ([\d.]+)\)", prose)
    target, t_before, s_before, changed, t_after, s_after = resnet
    assert edit["target_name"] == target and len(edit["changed"]) == int(changed)
    r = p["judge:resnet"]
    assert [f"{r[f]:.2f}" for f in ("target_before", "source_before", "target_after", "source_after")] == [t_before, s_before, t_after, s_after]
    vit = _figure(r"The ViT judge .*?P\([^)]+\) ([\d.]+) → ([\d.]+) while P\([^)]+\) goes ([\d.]+) → ([\d.]+)", prose)
    v = p["judge:vit"]
    assert [f"{v[f]:.2f}" for f in ("target_before", "target_after", "source_before", "source_after")] == list(vit)
    assert v["source_after"] > v["target_after"]  # "so it still calls the result red-capped"
    # the prior NLL both commands print: the edit's source -> result, the search grid's
    before, after, search = _figure(r"the edit takes the source from ([\d.]+) to ([\d.]+) nats per token .*?the `optimize` grid "
                                    r"scores ([\d.]+) under", prose)
    assert [f"{edit['prior_nll_source']:.2f}", f"{edit['prior_nll']:.2f}"] == [before, after]
    assert f"{outputs['optimize']['prior_nll']:.2f}" == search
