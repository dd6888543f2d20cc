"""The index's writer thread: finished batches reach the database behind a bounded queue, in transactions sized by work.

The indexer computes batch i+1 while batch i is written. Batches wait in the writer until
`CommitPolicy.images` images are pending or the oldest has waited `CommitPolicy.seconds`, whichever
comes first, and are then written in one transaction (`store.index.write_index`), so a transaction
holds hundreds of images on a fast device and one batch on a slow one. A kill loses what is pending
and in flight: at most `images` + `queue_images` images, about a second of work. A writer error stops
the producer at its next `put` with that same exception; on a producer error the finished batches
are still written before the error propagates.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from ..store.database import Store
from ..store.index import IndexRows, write_index


@dataclass(frozen=True)
class CommitPolicy:
    """When the index commits: whichever of `images` pending images or `seconds` of waiting comes first."""

    images: int = 512
    seconds: float = 1.0
    queue_images: int = 1024  # finished images that may wait for the writer before the producer blocks


class IndexWriter:
    """Writes `IndexRows` of one saliency run on a background thread; use as a context manager.

    Args:
        store: the open database (the thread takes its own connection).
        run_id: the saliency run written to.
        policy: when to commit.
        on_commit: called on the writer thread with the number of images each committed transaction held.
    """

    def __init__(self, store: Store, run_id: int, policy: CommitPolicy = CommitPolicy(),
                 on_commit: Callable[[int], None] | None = None) -> None:
        self.store, self.run_id, self.policy, self.on_commit = store, run_id, policy, on_commit
        self._queue: deque[IndexRows] = deque()
        self._queued_images = 0
        self._closing = False
        self._error: BaseException | None = None
        self._raised = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"cortex-index-writer-{run_id}", daemon=True)
        self._thread.start()

    def put(self, rows: IndexRows) -> None:
        """Hand over a finished batch; blocks while the queue is full; raises the writer's error if it has stopped."""
        with self._changed:
            while self._error is None and self._queued_images >= self.policy.queue_images:
                self._changed.wait()
            self._raise_error()
            self._queue.append(rows)
            self._queued_images += len(rows)
            self._changed.notify_all()

    def close(self) -> None:
        """Write everything handed over, stop the thread, and raise its error if it had one."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join()
        with self._changed:
            self._raise_error()

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self.close()
            return False
        if exc is not self._error:  # the producer failed: keep its finished batches, then let its error through
            with self._changed:
                self._closing = True
                self._changed.notify_all()
            self._thread.join()
        return False

    def _raise_error(self) -> None:
        if self._error is not None and not self._raised:
            self._raised = True
            raise self._error

    def _next(self, deadline: float | None) -> IndexRows | None:
        """The next queued batch; None at the deadline or once closing with an empty queue."""
        with self._changed:
            while not self._queue and not self._closing:
                timeout = None if deadline is None else deadline - time.monotonic()
                if timeout is not None and timeout <= 0:
                    return None
                self._changed.wait(timeout)
            if not self._queue:
                return None
            rows = self._queue.popleft()
            self._queued_images -= len(rows)
            self._changed.notify_all()
            return rows

    def _run(self) -> None:
        pending: list[IndexRows] = []
        images, deadline = 0, None
        try:
            while True:
                rows = self._next(deadline)
                if rows is not None:
                    pending.append(rows)
                    images += len(rows)
                    deadline = deadline or time.monotonic() + self.policy.seconds
                if pending and (rows is None or images >= self.policy.images or time.monotonic() >= deadline):
                    write_index(self.store, self.run_id, pending)
                    if self.on_commit is not None:
                        self.on_commit(images)
                    pending, images, deadline = [], 0, None
                elif rows is None and self._closing:
                    return
        except BaseException as exc:  # noqa: BLE001  (handed to the producer, which raises it)
            with self._changed:
                self._error = exc
                self._changed.notify_all()


__all__ = ["CommitPolicy", "IndexWriter"]
