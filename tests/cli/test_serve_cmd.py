"""`cortex serve` as a user runs it: it prints its URL, answers, warns off loopback, and Ctrl-C stops it cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from typer.testing import CliRunner

from cortex_cli.cli import app

from cortex_cli.serve import exposure_warning, is_loopback


def _start(tmp_path, *args: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "CORTEX_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    env.pop("CORTEX_SERVE_TOKEN", None)
    process = subprocess.Popen([sys.executable, "-m", "cortex_cli", "--db", f"sqlite:///{tmp_path / 'cortex.db'}", "serve", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline()
    assert line.startswith("cortex explorer on http://"), (line, process.stderr.read() if process.poll() is not None else "")
    return process, line.split()[3]


def test_serve_prints_its_url_answers_and_stops_cleanly_on_ctrl_c(tmp_path):
    process, url = _start(tmp_path, "--port", "0")
    try:
        with urllib.request.urlopen(url + "api/models", timeout=60) as answer:
            assert [m["name"] for m in json.load(answer)] == ["mini"]
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "api/models", timeout=5)


def _run(tmp_path, *args: str):
    return CliRunner().invoke(app, ["--db", f"sqlite:///{tmp_path / 'c.db'}", "serve", *args])


def test_a_port_in_use_is_one_line_and_exit_1(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run(tmp_path, "--port", str(port))
    assert done.exit_code == 1
    assert done.stderr.strip().count("\n") == 0 and f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr


@pytest.mark.parametrize("args, fragment", [(["--port", "70000"], "not a TCP port"), (["--queue", "0"], "at least one job")])
def test_bad_options_are_one_line(tmp_path, args, fragment):
    done = _run(tmp_path, *args)
    assert done.exit_code == 1 and fragment in done.stderr and "Traceback" not in done.stderr


def test_only_loopback_is_quiet():
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert is_loopback(host) and exposure_warning(host, None) is None
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.org"):
        assert not is_loopback(host)
        assert "pass --token" in exposure_warning(host, None)
        assert "must carry the token" in exposure_warning(host, "t")


def test_a_public_host_warns_before_serving(tmp_path):
    process, url = _start(tmp_path, "--host", "0.0.0.0", "--port", "0", "--token", "s3cret")
    try:
        request = urllib.request.Request(url.replace("0.0.0.0", "127.0.0.1") + "api/models", headers={"Authorization": "Bearer s3cret"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            assert answer.status == 200
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert "warning: serving on 0.0.0.0" in err and "must carry the token" in err
