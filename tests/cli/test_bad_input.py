"""A sweep of bad input over every command: refused in one line on stderr, exit != 0, the store unchanged."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cortex_cli.cli import app
from tests.store_rows import sqlite_row_counts

runner = CliRunner()
CONCEPT = "red-capped bird"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A mini home with 2 indexed images of CONCEPT, one cortex PNG, a file that is not an image, and a concept 'warm'."""
    path = tmp_path_factory.mktemp("bad-input")
    env = {"CORTEX_HOME": str(path)}
    for args in (["generate", "--class", CONCEPT, "-n", "2", "--out", str(path / "pngs"), "-q"],
                 ["index", "--class", CONCEPT, "-n", "2", "--samples", "2", "-q"],
                 ["concepts", "add", "warm", "--classes", f"{CONCEPT},sun"]):
        assert runner.invoke(app, args, env=env).exit_code == 0
    (path / "notes.txt").write_text("not a picture\n")
    (path / "a-file").write_text("")
    return path


PNG = "{home}/pngs/red-capped-bird_train_0.png"
BAD = [
    # global options, checked before any command runs
    (["--device", "tpu", "models", "list"], "unknown device 'tpu'"),
    (["--device", "cuda:x", "token", "4"], "device"),
    (["--db", "mysql://h/db", "models", "list"], "not 'mysql'"),
    (["--db", "", "models", "list"], "empty"),
    (["--db", "no url at all", "models", "list"], "malformed database URL"),
    (["--db", "sqlite:////no/such/dir/x.db", "models", "list"], "does not exist"),
    # usage errors (typer's own parsing)
    (["index", "--class", CONCEPT, "-n", "abc"], "--images"),
    (["index", "--no-such-flag"], "No such option"),
    (["edit"], "Missing argument"),
    (["token", "four"], "Invalid value for 'token'"),
    # generate
    (["generate", "--class", CONCEPT, "-n", "0"], "positive number of images"),
    (["generate", "--class", CONCEPT, "-n", "2", "--first-seed", "-1"], "--first-seed must be >= 0"),
    (["generate", "--class", CONCEPT, "-n", "2", "--split", "holdout"], "unknown split 'holdout'"),
    (["generate", "--class", "no such bird", "-n", "2"], "unknown class"),
    (["generate", "--class", CONCEPT, "--classes", CONCEPT, "-n", "2"], "give one of --class"),
    (["generate", "--classes", "@{home}/missing.txt", "-n", "2"], "cannot read the class list"),
    (["generate", "--class", CONCEPT, "-n", "2", "--top-p", "2"], "top-p"),
    (["generate", "--class", CONCEPT, "-n", "2", "--temperature", "0"], "temperature"),
    (["generate", "--class", CONCEPT, "-n", "2", "--batch-size", "0"], "batch size must be positive"),
    (["generate", "--class", CONCEPT, "-n", "2", "--out", "{home}/a-file/sub"], "cannot write"),
    # index
    (["index", "--class", CONCEPT, "-n", "2", "--method", "lime"], "lime"),
    (["index", "--class", CONCEPT, "-n", "2", "--samples", "0"], "--samples must be >= 1"),
    (["index", "--class", CONCEPT, "-n", "2", "--alpha", "-1"], "--alpha must be >= 0"),
    (["index", "--class", CONCEPT, "-n", "2", "--top-n", "0"], "--top-n must be >= 1"),
    (["index", "--class", CONCEPT, "-n", "2", "--reduce", "median"], "--reduce must be one of"),
    (["index", "--class", CONCEPT, "-n", "2", "--precision", "fp8"], "--precision must be one of"),
    (["index", "--class", CONCEPT, "-n", "2", "--method", "integrated-gradients", "--ig-steps", "0"], "--ig-steps must be >= 1"),
    (["index", "--class", CONCEPT, "-n", "2", "--extractor", "vgg"], "vgg"),
    (["index", "--class", CONCEPT, "-n", "2", "--first-seed", "-5"], "--first-seed must be >= 0"),
    (["index", "--class", CONCEPT, "-n", "-2"], "--images must be >= 1"),
    # reading the index
    (["top-tokens", "no such bird"], "unknown class"),
    (["top-tokens", CONCEPT, "--baseline", "tfidf"], "--baseline must be one of"),
    (["top-tokens", CONCEPT, "--run", "999"], "999"),
    (["top-tokens"], "give one concept"),
    (["token", "-1"], "token"),
    (["token", "999999"], "999999"),
    # explain / show
    (["explain", "{home}/missing.png"], "missing.png"),
    (["explain", "{home}/notes.txt"], "notes.txt"),
    (["show", "--class", CONCEPT, "--out", "{home}/f.png"], "--class and --token go together"),
    (["show", "99999", "--out", "{home}/f.png"], "99999"),
    # edit / optimize
    (["edit", PNG, "--target", "blue-capped bird", "--region", "99:100,0:1"], "region"),
    (["edit", PNG, "--target", "blue-capped bird", "--region", "a:b"], "region"),
    (["edit", PNG, "--target", "no such bird", "--region", "4:8,4:8"], "unknown class"),
    (["edit", PNG, "--target", "blue-capped bird", "--region", "4:8,4:8", "--steps", "0"], "--steps"),
    (["edit", PNG, "--target", "blue-capped bird", "--region", "4:8,4:8", "--space", "pixels"], "pixels"),
    (["edit", PNG, "--target", "blue-capped bird", "--region", "4:8,4:8", "--tau", "0"], "tau"),
    (["edit", "{home}/missing.png", "--target", "blue-capped bird", "--region", "4:8,4:8"], "missing.png"),
    (["optimize", "--class", CONCEPT, "--restarts", "0"], "restarts"),
    (["optimize", "--class", CONCEPT, "--init", "{home}/missing.png"], "missing.png"),
    (["optimize", "--class", CONCEPT, "--region", "0:0,0:0"], "region"),
    # named concepts
    (["concepts", "add", "house", "--classes", "sun"], "'house' is already a class of model 'mini'"),
    (["concepts", "add", "warm", "--classes", "sun"], "a concept named 'warm' already exists"),
    (["concepts", "add", "x", "--classes", ""], "needs at least one member class"),
    (["concepts", "add", "x", "--classes", "sun,no such bird"], "unknown class 'no such bird'"),
    (["concepts", "add", "x", "--prompt", "a sun"], "class-conditional"),
    (["concepts", "add", "x"], "give the concept's classes"),
    (["concepts", "remove", "cold"], "has no concept 'cold'"),
    (["index", "--class", "warm", "-n", "2", "--score", "max"], "--score must be one of"),
    (["top-tokens", "warm"], "concept 'warm' is not indexed yet"),
    # atlas, evaluations, models, extractors, report
    (["atlas", "--out", "{home}/site", "--baseline", "freq"], "--baseline must be among"),
    (["atlas", "--out", "{home}/a-file"], "a-file"),
    (["eval", "image-level", "--ns", "a,b"], "--ns must be comma-separated integers"),
    (["eval", "image-level", "--fill", "purple"], "purple"),
    (["eval", "concept-level", "--classes", "no such bird"], "unknown class"),
    (["eval", "edit", "--pairs", "a"], "--pairs item 'a' is not A:B"),
    (["eval", "edit", "--realism-images", "1"], "--realism-images must be 0"),
    (["eval", "stability", "--noise-seeds", ""], "--noise-seeds needs at least one number"),
    (["eval", "localization", "--extractor", "vgg"], "vgg"),
    (["models", "add", "x", "--config", "{home}/missing.yaml", "--ckpt", "{home}/missing.ckpt"], "missing"),
    (["models", "add", "x", "--backend", "nope"], "nope"),
    (["train-extractor", "--arch", "vgg"], "unknown extractor architecture 'vgg'"),
    (["train-extractor", "--arch", "ce", "--epochs", "0"], "epochs must be at least 1"),
    (["report", "--model", "nosuch"], "nosuch"),
    (["test-extractor", "--model", "nosuch"], "nosuch"),
    (["top-tokens", "[bold]x[/bold]"], "[bold]x[/bold]"),  # Rich markup in user input prints as written
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_input_is_one_line_and_changes_nothing(home, args, message):
    before = sqlite_row_counts(home / "cortex.db")
    result = runner.invoke(app, [a.format(home=home) for a in args], env={"CORTEX_HOME": str(home)})
    lines = result.stderr.strip().splitlines()
    assert result.exit_code != 0 and (result.exception is None or isinstance(result.exception, SystemExit)), result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    assert message.format(home=home) in lines[0]
    assert sqlite_row_counts(home / "cortex.db") == before
