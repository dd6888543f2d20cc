"""`cortex concepts add|list|remove`: what the API returns, printed; a table that fits 80 columns."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cortex_cli import Workspace
from cortex_cli.cli import app

runner = CliRunner()


def run(home, *args: str):
    result = runner.invoke(app, list(args), env={"CORTEX_HOME": str(home), "COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result


def test_add_list_remove_round_trip(tmp_path):
    added = json.loads(run(tmp_path, "concepts", "add", "red", "--classes", "red mushroom,0,house", "--json").stdout)
    assert (added["name"], added["kind"], [m["name"] for m in added["members"]]) == ("red", "classes",
                                                                                  ["red mushroom", "red-capped bird", "house"])
    shown = run(tmp_path, "concepts", "list").stdout
    assert all(word in shown for word in ("red", "classes", "mushroom,", "red-capped", "house"))
    assert max(len(line) for line in shown.splitlines()) <= 80
    listed = json.loads(run(tmp_path, "concepts", "list", "--json").stdout)
    assert listed == [added] == [c.to_dict() for c in Workspace(home=tmp_path).concepts()]
    assert "next: cortex index --class 'sky things'" in run(tmp_path, "concepts", "add", "sky things", "--classes", "sun,star").stdout
    removed = json.loads(run(tmp_path, "concepts", "remove", "RED", "--json").stdout)  # names compare as class names do
    assert removed == added
    assert [c["name"] for c in json.loads(run(tmp_path, "concepts", "list", "--json").stdout)] == ["sky things"]
