"""The index's writer thread: transactions sized by work, writes overlapping compute, errors from either side."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from cortex_cli.index import writer as index_writer
from cortex_cli.models import registry as model_registry
from cortex_cli.index.build import CommitPolicy, index_class
from cortex_cli.attribution import SaliencySettings
from cortex_cli.store.schema import RunClassCountRow, SaliencyMapRow, SalientTokenRow

from index_helpers import ToyExtractor, register_toy

pytestmark = pytest.mark.both_backends

SETTINGS = SaliencySettings(samples=2, top_n=4)
SLOW = 60.0  # seconds: a deadline no test reaches, so only the image bound decides


@pytest.fixture
def index(store, tiny_model):
    """index_class over 10 goldfinch images in batches of 3, with the toy extractor unless given another."""
    info = register_toy(store, tiny_model)
    cls = model_registry.resolve_class(store, tiny_model, "goldfinch")

    def run(**kwargs):
        kwargs.setdefault("extractor", ToyExtractor())
        return index_class(store, tiny_model, info, cls, n_images=10, settings=SETTINGS, batch_size=3, **kwargs)

    return run


def _stored(store) -> tuple[int, int, int]:
    with store.session() as s:
        return (s.scalar(select(func.count()).select_from(SaliencyMapRow)), s.scalar(select(func.count()).select_from(SalientTokenRow)),
                int(s.scalar(select(func.sum(RunClassCountRow.images))) or 0))


@pytest.mark.parametrize(("policy", "reports"), [
    (CommitPolicy(images=512, seconds=SLOW), [0, 10]),  # batches of 3 grouped into one transaction
    (CommitPolicy(images=6, seconds=SLOW), [0, 6, 10]),  # the image bound, then what is left at the end
    (CommitPolicy(images=512, seconds=0.0), [0, 3, 6, 9, 10]),  # the time bound: each batch alone
])
def test_transactions_are_sized_by_work_not_by_the_batch(store, index, policy, reports):
    seen = []
    result = index(commit=policy, progress=lambda done, total, info="": seen.append(done))
    assert seen == reports
    assert result.added == 10 and _stored(store) == (10, 40, 10)


def test_a_kill_loses_only_what_was_not_reported_committed(store, index):
    seen = []

    def die(done, total, info=""):
        seen.append(done)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        index(commit=CommitPolicy(images=6, seconds=SLOW), progress=die)
    assert _stored(store) == (6, 24, 6)  # the one committed transaction, counts included; nothing half-written
    again = index()
    assert (again.added, again.skipped) == (4, 6) and _stored(store) == (10, 40, 10)


def test_writes_overlap_compute(store, index, monkeypatch):
    """The second batch's compute waits until the first batch is being written: a serial loop would never get there."""
    writing = threading.Event()
    real = index_writer.write_index

    def write(*args):
        writing.set()
        return real(*args)

    class WaitsForTheWriter(ToyExtractor):
        calls = 0

        def forward(self, e):  # one call per batch (its noisy copies fit one chunk)
            type(self).calls += 1
            if type(self).calls == 2:
                assert writing.wait(30), "batch 1 was not written while batch 2 was computed"
            return super().forward(e)

    monkeypatch.setattr(index_writer, "write_index", write)
    result = index(extractor=WaitsForTheWriter(), commit=CommitPolicy(seconds=0.0))
    assert result.added == 10 and _stored(store) == (10, 40, 10)


def test_a_writer_error_stops_the_producer_with_that_error(store, index, monkeypatch):
    def fail(*args):
        raise OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))

    class Counting(ToyExtractor):
        batches = 0

        def forward(self, e):
            type(self).batches += 1
            return super().forward(e)

    monkeypatch.setattr(index_writer, "write_index", fail)
    with pytest.raises(OperationalError, match="server closed"):
        index(extractor=Counting(), commit=CommitPolicy(images=3, queue_images=3))
    # the producer stopped at its first hand-over after the failure, not after computing all 4 batches
    assert 0 < Counting.batches < 4
    assert _stored(store) == (0, 0, 0)


def test_a_producer_error_still_writes_the_finished_batches(store, index):
    class DiesOnBatchThree(ToyExtractor):
        calls = 0

        def forward(self, e):  # one call per batch (its noisy copies fit one chunk)
            type(self).calls += 1
            if type(self).calls == 3:
                raise RuntimeError("CUDA error: out of memory")
            return super().forward(e)

    with pytest.raises(RuntimeError, match="out of memory"):
        index(extractor=DiesOnBatchThree(), commit=CommitPolicy(images=512, seconds=SLOW))
    assert _stored(store) == (6, 24, 6)  # the two finished batches were written before the error propagated
