import json

import pytest
import typer
from typer.testing import CliRunner

from cortex_cli.cli import app

runner = CliRunner()


def _all_command_paths():
    """Every command path of the Typer app, including groups and commands other modules register."""
    root = typer.main.get_command(app)
    paths = []

    def walk(group, prefix):
        for name, cmd in group.commands.items():
            paths.append([*prefix, name])
            if hasattr(cmd, "commands"):
                walk(cmd, [*prefix, name])

    walk(root, [])
    return paths


def test_every_command_has_help():
    paths = _all_command_paths()
    assert ["generate"] in paths and ["models", "add"] in paths and ["models", "list"] in paths
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0 and "--db" in top.stdout and "--device" in top.stdout
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.stdout and "Traceback" not in result.output, path


def test_models_add_then_list_json(db_url, tiny_model_files):
    config, ckpt, labels = tiny_model_files
    added = runner.invoke(app, ["--db", db_url, "models", "add", "tiny", "--config", str(config), "--ckpt", str(ckpt),
                                "--labels", str(labels), "--json"])
    assert added.exit_code == 0, added.output
    info = json.loads(added.stdout)
    assert (info["name"], info["n_embed"], info["embed_dim"], info["grid"], info["image_size"], info["n_classes"]) == (
        "tiny", 64, 16, 16, 64, 4)
    assert info["backend"] == "taming"  # the default backend
    listed = runner.invoke(app, ["--db", db_url, "models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    models = {m["name"]: m for m in json.loads(listed.stdout)}
    assert [c["name"] for c in models["tiny"]["classes"]] == ["goldfinch", "water ouzel", "black grouse", "analog clock"]
    assert models["tiny"]["classes"][1]["synonyms"] == ["dipper"]
    table = runner.invoke(app, ["--db", db_url, "models", "list"])
    assert table.exit_code == 0 and "tiny" in table.stdout and "goldfinch" in table.stdout
    again = runner.invoke(app, ["--db", db_url, "models", "add", "tiny", "--config", str(config), "--ckpt", str(ckpt)])
    assert again.exit_code == 1 and "already registered" in again.stderr


def _assert_one_line_error(result, fragment):
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert fragment in lines[0], lines[0]


@pytest.fixture
def bad_inputs(tmp_path, tiny_model_files):
    config, ckpt, _ = tiny_model_files
    other = tmp_path / "other.yaml"
    other.write_text("model:\n  target: taming.models.vqgan.VQModel\n  params: {}\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return config, ckpt, other, blocker


def test_bad_input_is_one_line_without_traceback(db_url, tiny_model, bad_inputs, tmp_path):
    config, ckpt, other, blocker = bad_inputs
    cases = [
        (["models", "add", "x", "--config", str(config), "--ckpt", str(tmp_path / "missing.ckpt")], "does not exist"),
        (["models", "add", "x", "--config", str(other), "--ckpt", str(ckpt)], "is not a taming class-conditional model"),
        (["models", "add", "x", "--config", str(config), "--ckpt", str(ckpt), "--labels", "nope.tsv"], "neither 'imagenet'"),
        (["models", "add", "x", "--backend", "nosuch", "--config", str(config), "--ckpt", str(ckpt)],
         "unknown backend 'nosuch' (known: janus, llamagen, taming)"),
        (["models", "add", "x", "--ckpt", str(ckpt)], "a taming model needs --config"),
        (["models", "add", "x", str(tmp_path)], "the taming backend takes --config and --ckpt, not a path"),
        (["models", "add", "x", "--backend", "janus", "--config", str(config)], "takes one snapshot directory PATH"),
        (["models", "add", "x", "--backend", "janus", str(tmp_path)], "is not a transformers snapshot (no config.json)"),
        (["generate", "--model", "tiny", "--class", "goldfnch", "-n", "1"], "did you mean 'goldfinch'"),
        (["generate", "--model", "nosuch", "--class", "0", "-n", "1"], "no model named 'nosuch'"),
        (["generate", "--model", "tiny", "--class", "0", "-n", "0"], "positive number"),
        (["generate", "--model", "tiny", "--class", "0", "-n", "1", "--out", str(blocker / "pngs")], "cannot write PNGs"),
        (["generate", "--model", "tiny", "--class", "0", "-n", "1", "--top-p", "1.5"], "top-p"),
    ]
    for args, fragment in cases:
        _assert_one_line_error(runner.invoke(app, ["--db", db_url, *args]), fragment)
    _assert_one_line_error(runner.invoke(app, ["--db", "not a url", "models", "list"]), "malformed database URL")
    _assert_one_line_error(runner.invoke(app, ["--device", "tpu", "generate", "--model", "tiny", "--class", "0", "-n", "1"]),
                           "unknown device")
    with __import__("sqlite3").connect(db_url.removeprefix("sqlite:///")) as conn:
        assert conn.execute("SELECT COUNT(*) FROM images").fetchone() == (0,)
