"""The explorer's compute queue: jobs run one at a time on the workspace's device, behind a bounded queue.

Reads (the index, stored images) do not pass through here and run concurrently; anything that runs a
network (explain, mask, edit) does, so two requests never race for one device. An edit is submitted and
polled (`GET /api/jobs/{id}`); explain and mask wait for their job and answer at once.
"""

from __future__ import annotations

import itertools
import re
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..core.errors import CortexError, first_line
from ..core.jsonable import to_jsonable

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
KEEP_FINISHED = 256  # finished jobs remembered (oldest forgotten first)


class QueueFull(CortexError):
    """The compute queue holds its limit of waiting jobs (HTTP 429)."""


@dataclass
class Job:
    """One compute request: its state, progress and, once done, the result's JSON or the one-line error."""

    id: int
    kind: str  # 'explain', 'mask', 'edit'
    work_dir: Path  # the files it writes (an edit's PNGs, a mask's strip)
    status: str = QUEUED
    done: int = 0
    total: int = 0
    info: str = ""
    result: Any = None
    error: str | None = None
    submitted: float = field(default_factory=time.time)
    finished: threading.Event = field(default_factory=threading.Event, repr=False)

    def progress(self, done: int, total: int, info: str = "") -> None:
        """A `Progress` callback: the job's steps done of total."""
        self.done, self.total, self.info = int(done), int(total), str(info)

    def to_dict(self) -> dict[str, Any]:
        """`GET /api/jobs/{id}`: status, progress, result (done) or error (failed), and the files it wrote."""
        files = sorted(p.name for p in self.work_dir.iterdir() if p.is_file()) if self.status == DONE and self.work_dir.is_dir() else []
        return {"id": self.id, "kind": self.kind, "status": self.status,
                "progress": {"done": self.done, "total": self.total, "info": self.info},
                "result": self.result, "error": self.error, "files": [f"/api/jobs/{self.id}/files/{name}" for name in files]}


class JobQueue:
    """A worker thread that runs submitted jobs in order; at most `limit` wait, more are refused (`QueueFull`).

    A result names no server path: a file the job wrote is named by its URL (`/api/jobs/{id}/files/NAME`), as is
    a file in one of `public`'s directories (directory -> URL prefix).
    """

    def __init__(self, work_root: Path, limit: int = 4, public: dict[Path, str] | None = None) -> None:
        self.work_root = work_root
        self.limit = limit
        self.public = {str(directory): url for directory, url in (public or {}).items()}  # other served directories
        self._waiting: queue.Queue[tuple[Job, Callable[[Job], Any]] | None] = queue.Queue()
        self._jobs: OrderedDict[int, Job] = OrderedDict()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._run, name="cortex-serve-jobs", daemon=True)
        self._stopping = False
        self._worker.start()

    def submit(self, kind: str, work: Callable[[Job], Any]) -> Job:
        """Queue `work(job)` (its return value is the job's result, turned into JSON); QueueFull when `limit` wait."""
        with self._lock:
            if self._stopping:
                raise CortexError("the server is shutting down; no new jobs")
            if sum(j.status == QUEUED for j in self._jobs.values()) >= self.limit:
                raise QueueFull(f"the compute queue is full ({self.limit} jobs waiting); retry when one is done")
            job_id = next(self._ids)
            job = Job(job_id, kind, self.work_root / f"job-{job_id}")
            self._jobs[job.id] = job
            self._forget_old()
        self._waiting.put((job, work))
        return job

    def run(self, kind: str, work: Callable[[Job], Any]) -> Job:
        """Submit and wait for the job to finish (explain, mask): the caller reads `result` or `error`."""
        job = self.submit(kind, work)
        job.finished.wait()
        return job

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def stop(self) -> None:
        """Cancel the waiting jobs, let the running one finish, and end the worker."""
        with self._lock:
            self._stopping = True
            for job in self._jobs.values():
                if job.status == QUEUED:
                    job.status, job.error = CANCELLED, "the server stopped before this job ran"
                    job.finished.set()
        self._waiting.put(None)
        self._worker.join(timeout=60)

    def _forget_old(self) -> None:
        finished = [i for i, j in self._jobs.items() if j.status in (DONE, FAILED, CANCELLED)]
        for job_id in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job_id]

    def _run(self) -> None:
        while (item := self._waiting.get()) is not None:
            job, work = item
            if job.status != QUEUED:  # cancelled while waiting
                continue
            job.status = RUNNING
            places = {str(job.work_dir): f"/api/jobs/{job.id}/files", **self.public}
            try:
                job.work_dir.mkdir(parents=True, exist_ok=True)
                job.result = _served(to_jsonable(work(job)), places)
                job.status = DONE
            except CortexError as exc:
                job.error, job.status = _scrubbed(first_line(exc), places), FAILED
            except Exception as exc:  # a bug: the job fails with its one line, the server goes on
                job.error, job.status = _scrubbed(f"internal error ({type(exc).__name__}): {first_line(exc)}", places), FAILED
            finally:
                job.finished.set()


def _served(value: Any, places: dict[str, str]) -> Any:
    """`value` with every path of a file in one of `places` (directory -> URL prefix) replaced by its URL."""
    if isinstance(value, dict):
        return {k: _served(v, places) for k, v in value.items()}
    if isinstance(value, list):
        return [_served(v, places) for v in value]
    if isinstance(value, str):
        for directory, url in places.items():
            name = value[len(directory) + 1:]
            if value.startswith(directory + "/") and name and "/" not in name:
                return f"{url}/{name}"
    return value


def _scrubbed(message: str, places: dict[str, str]) -> str:
    """`message` with every path into one of `places` written as its URL (an error names no server path either)."""
    for directory, url in places.items():
        message = re.sub(re.escape(directory) + r"/([^\s'\"/]+)", lambda m: f"{url}/{m.group(1)}", message)
    return message
