"""Faults: a rank killed mid-run, a database that stops mid-run; rerunning the command completes the job
with exactly the rows of an uninterrupted single-process run (no duplicate, no missing row)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cortex_cli.cli import app

from dist_helpers import cortex_command, count_maps, environment, make_ckpt, prepare, rows, torchrun

IMAGES = 8
TOTAL = 4 * IMAGES  # the tiny model's 4 classes
ARGS = ["index", "--model", "tiny", "--class", "all", "--images", str(IMAGES), "--samples", "2", "--top-n", "5",
        "--batch-size", "1", "--json"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_files):
    """The rows of one uninterrupted single-process run, and the extractor checkpoint it used."""
    directory = tmp_path_factory.mktemp("reference")
    ckpt = make_ckpt(directory)
    url = f"sqlite:///{directory / 'single.db'}"
    prepare(url, tiny_model_files, ckpt)
    result = CliRunner().invoke(app, ["--db", url, "--device", "cpu", *ARGS])
    assert result.exit_code == 0, result.output
    return rows(url), ckpt


def _start(url: str, tmp_path: Path, ranks: int, **env: str) -> tuple[subprocess.Popen, Path]:
    err = tmp_path / f"stderr-{uuid.uuid4().hex[:6]}.txt"
    with open(tmp_path / "stdout.txt", "w") as out_file, open(err, "w") as err_file:
        proc = subprocess.Popen(cortex_command(url, *ARGS, ranks=ranks), stdout=out_file, stderr=err_file, env=environment(**env))
    return proc, err


def _wait_for_maps(url: str, proc: subprocess.Popen, at_least: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the job ended (exit {proc.returncode}) before it could be interrupted")
        if count_maps(url) >= at_least:
            return
        time.sleep(0.05)
    pytest.fail(f"fewer than {at_least} maps were committed within {timeout} s")


def _pids_with(marker: str, rank: int | None = None) -> list[int]:
    """Processes started with CORTEX_FAULT_TEST=marker (and RANK=rank): torchrun's workers for this test."""
    wanted = {f"CORTEX_FAULT_TEST={marker}".encode()} | ({f"RANK={rank}".encode()} if rank is not None else set())
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                env = set((entry / "environ").read_bytes().split(b"\0"))
            except OSError:
                continue
            if wanted <= env:
                found.append(int(entry.name))
    return found


def _rerun_adds_the_rest(url: str, expected: dict) -> None:
    """An interrupted job left some of the maps; the same command, single-process, adds exactly the rest."""
    partial = count_maps(url)
    assert 0 < partial < TOTAL
    rerun = subprocess.run(cortex_command(url, *ARGS, ranks=0), capture_output=True, text=True, env=environment(), timeout=240)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert sum(r["added"] for r in json.loads(rerun.stdout)) == TOTAL - partial
    assert rows(url) == expected  # every table, counts included: nothing doubled, nothing missing


def test_a_killed_rank_stops_the_job_and_the_rerun_completes_it(new_db_url, tmp_path, tiny_model_files, reference):
    expected, ckpt = reference
    url = new_db_url("dist")  # SQLite: the PostgreSQL fault is the next test's (2-rank rows on PostgreSQL: test_distributed)
    prepare(url, tiny_model_files, ckpt)
    marker = uuid.uuid4().hex
    proc, _ = _start(url, tmp_path, 2, CORTEX_FAULT_TEST=marker)
    try:
        _wait_for_maps(url, proc, 2)
        victims = _pids_with(marker, rank=1)
        assert victims, "rank 1 is not running"
        os.kill(victims[0], signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0  # torchrun saw the rank die and tore the job down
    assert not _pids_with(marker), "a rank outlived the job"
    partial = count_maps(url)
    assert 0 < partial < TOTAL

    again = json.loads(torchrun(url, *ARGS).stdout)
    assert sum(r["added"] for r in again) == TOTAL - partial
    assert rows(url) == expected  # every table, by identity: nothing doubled (counts included), nothing missing


def test_a_killed_single_process_index_resumes_to_the_rows_of_an_uninterrupted_run(new_db_url, tmp_path, tiny_model_files, reference):
    """SIGKILL while the writer thread holds finished batches: what was committed stays, the rerun adds the rest."""
    expected, ckpt = reference
    url = new_db_url("killed")
    prepare(url, tiny_model_files, ckpt)
    proc, _ = _start(url, tmp_path, ranks=0)
    try:
        _wait_for_maps(url, proc, 2)
        proc.kill()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    _rerun_adds_the_rest(url, expected)


def test_a_database_that_stops_gives_one_line_and_the_rerun_resumes(tmp_path, tiny_model_files, reference):
    from pg_server import PgServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found; install postgresql to run this test")
    expected, ckpt = reference
    server = PgServer(bindir).start()  # its own server: this test stops it
    try:
        url = server.database(empty=True)
        prepare(url, tiny_model_files, ckpt)
        proc, err = _start(url, tmp_path, ranks=0)
        try:
            _wait_for_maps(url, proc, 2)
            server.halt()
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        lines = [line for line in err.read_text().splitlines() if line.strip()]
        assert proc.returncode == 1
        assert len(lines) == 1 and lines[0].startswith("error: the database stopped answering"), lines
        assert "rerun the same command" in lines[0]

        server.resume()
        _rerun_adds_the_rest(url, expected)
    finally:
        server.stop()
