"""The README's Python quickstart runs as written from a fresh home and prints the same T*_concept as the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart() -> str:
    text = README.read_text()
    section = text[text.index("## The same in Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_python_quickstart_prints_t_star_concept(tmp_path):
    env = {**os.environ, "CORTEX_HOME": str(tmp_path / "home")}
    run = subprocess.run([sys.executable, "-c", quickstart()], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    printed = re.search(r"^T\*_concept: \[([\d, ]+)\]$", run.stdout, re.M)
    assert printed, run.stdout
    cli = subprocess.run([sys.executable, "-m", "cortex_cli", "top-tokens", "red-capped bird", "-k", "10", "--json"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr
    tokens = [row["token"] for row in json.loads(cli.stdout)["rows"]]
    assert [int(t) for t in printed.group(1).split(",")] == tokens and len(tokens) == 10
    assert json.loads(cli.stdout)["images_indexed"] == 20
