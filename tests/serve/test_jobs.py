"""The compute queue: one job at a time, in order, bounded (429), failures as one line, no server paths in results."""

from __future__ import annotations

import threading
import time

import pytest

from cortex_cli.core.errors import CortexError
from cortex_cli.serve.jobs import CANCELLED, DONE, FAILED, QUEUED, JobQueue, QueueFull


@pytest.fixture
def jobs(tmp_path):
    queue = JobQueue(tmp_path / "jobs", limit=2, public={tmp_path / "uploads": "/api/uploads"})
    yield queue
    queue.stop()


def test_jobs_run_one_at_a_time_in_submission_order(tmp_path):
    jobs = JobQueue(tmp_path / "jobs", limit=3)
    running, overlaps, order = [0], [], []
    lock = threading.Lock()

    def work(job):
        with lock:
            running[0] += 1
            overlaps.append(running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        order.append(job.id)
        return {"id": job.id}

    submitted = [jobs.submit("mask", work) for _ in range(2)]
    submitted.append(jobs.run("mask", work))  # waits for all three
    for job in submitted:
        job.finished.wait(5)
    assert order == [j.id for j in submitted]
    assert max(overlaps) == 1
    assert [j.status for j in submitted] == [DONE] * 3 and submitted[2].result == {"id": submitted[2].id}
    jobs.stop()


def test_a_full_queue_refuses_with_queue_full_and_accepts_again_once_drained(jobs):
    gate = threading.Event()
    blocker = jobs.submit("edit", lambda job: gate.wait(10))
    while blocker.status == QUEUED:  # the worker took it: it runs, it does not wait
        time.sleep(0.01)
    waiting = [jobs.submit("edit", lambda job: 1) for _ in range(2)]
    with pytest.raises(QueueFull, match="the compute queue is full \\(2 jobs waiting\\)"):
        jobs.submit("edit", lambda job: 1)
    gate.set()
    for job in waiting:
        assert job.finished.wait(5) and job.status == DONE
    assert jobs.run("edit", lambda job: 2).result == 2


def test_a_failing_job_keeps_its_one_line_error_and_the_worker_goes_on(jobs):
    def broken(job):
        raise CortexError("no class 'unicorn'; see cortex models show\nsecond line")

    def bug(job):
        raise ZeroDivisionError("division by zero")

    assert jobs.run("edit", broken).error == "no class 'unicorn'; see cortex models show"
    failed = jobs.run("edit", bug)
    assert failed.status == FAILED and failed.error == "internal error (ZeroDivisionError): division by zero"
    assert jobs.run("edit", lambda job: "fine").status == DONE


def test_progress_and_files_appear_in_the_status_and_results_name_urls_not_paths(jobs, tmp_path):
    def work(job):
        job.progress(3, 10, "loss 0.5")
        out = job.work_dir / "strip.png"
        out.write_bytes(b"png")
        return {"out": str(out), "source": str(tmp_path / "uploads" / "abc.png"), "nested": [str(out)],
                "elsewhere": str(tmp_path / "uploads" / "deeper" / "x.png"), "text": "strip.png"}

    job = jobs.run("edit", work)
    status = job.to_dict()
    assert status["status"] == "done" and status["progress"] == {"done": 3, "total": 10, "info": "loss 0.5"}
    assert status["files"] == [f"/api/jobs/{job.id}/files/strip.png"]
    assert status["result"]["out"] == f"/api/jobs/{job.id}/files/strip.png" == status["result"]["nested"][0]
    assert status["result"]["source"] == "/api/uploads/abc.png"
    assert status["result"]["elsewhere"] == str(tmp_path / "uploads" / "deeper" / "x.png")  # not a served file: left alone
    assert status["result"]["text"] == "strip.png"


def test_stop_cancels_waiting_jobs_lets_the_running_one_finish_and_refuses_new_ones(tmp_path):
    jobs = JobQueue(tmp_path / "jobs", limit=4)
    gate = threading.Event()
    running = jobs.submit("edit", lambda job: gate.wait(10) and "finished")
    while running.status == QUEUED:
        time.sleep(0.01)
    waiting = jobs.submit("edit", lambda job: "never")
    threading.Timer(0.2, gate.set).start()
    jobs.stop()
    assert running.status == DONE and running.result == "finished"
    assert waiting.status == CANCELLED and waiting.result is None and waiting.finished.is_set()
    with pytest.raises(CortexError, match="shutting down"):
        jobs.submit("edit", lambda job: 1)


def test_finished_jobs_are_forgotten_oldest_first_beyond_the_keep_limit(tmp_path, monkeypatch):
    import cortex_cli.serve.jobs as jobs_module

    monkeypatch.setattr(jobs_module, "KEEP_FINISHED", 3)
    jobs = JobQueue(tmp_path / "jobs", limit=2)
    try:
        done = [jobs.run("mask", lambda job: job.id) for _ in range(6)]
        kept = [j.id for j in done if jobs.get(j.id) is not None]
        assert kept[-1] == done[-1].id and done[0].id not in kept and len(kept) <= 4
    finally:
        jobs.stop()


def test_an_error_names_urls_not_server_paths(jobs, tmp_path):
    def work(job):
        raise CortexError(f"image {str(tmp_path / 'uploads' / 'abc.png')!r} is damaged; see {job.work_dir / 'log.txt'}")

    failed = jobs.run("mask", work)
    assert failed.error == f"image '/api/uploads/abc.png' is damaged; see /api/jobs/{failed.id}/files/log.txt"
