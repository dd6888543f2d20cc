"""`cortex demo`, the README's first command, for real: the bundled mini model in a fresh home, no stub."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from cortex_cli.cli import app


def test_the_demo_tours_the_mini_model_from_a_fresh_home_with_the_readmes_figures(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--json"], env={"CORTEX_HOME": str(tmp_path / "home")})
    assert result.exit_code == 0, result.output
    demo = json.loads(result.stdout)
    assert demo["model"] == "mini" and demo["concept"] == "red-capped bird"
    assert demo["index"]["added"] == demo["index"]["images"] == len(demo["image_pngs"]) == 12  # generated, then indexed
    assert all(Path(p).is_file() for p in demo["image_pngs"])
    assert Path(demo["figure"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # Figure 2
    top = demo["top_tokens"]
    assert len(top["rows"]) == 10 and len(top["baseline"]) == 10
    # the README's figures for the default seed: 15 tokens changed in the edit; of the 8 part-pair directions,
    # the ResNet judge calls 25% of the edits the target and the ViT judge 62%
    assert len(demo["edit"]["changed"]) == 15
    assert demo["sweep_edits"] == 8 and demo["sweep"] == {"resnet": 0.25, "vit": 0.625}
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    quoted = re.search(r"judges call (\d+)% \(ResNet\) and (\d+)% \(ViT\) of the (\d+) edits", readme)
    assert quoted, "the README no longer quotes the demo's sweep"
    assert (int(quoted[1]), int(quoted[2]), int(quoted[3])) == (round(100 * demo["sweep"]["resnet"]), int(100 * demo["sweep"]["vit"]),
                                                                demo["sweep_edits"])
    assert Path(demo["atlas"]["index"]).is_file() and demo["atlas"]["concepts"] == 1
    assert (tmp_path / "home").is_dir()  # everything went to the fresh home, not the user's
