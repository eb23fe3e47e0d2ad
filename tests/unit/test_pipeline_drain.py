"""The engine's stop paths, without a server: bounded drain, abandonment, consistent snapshots."""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator, List

import pytest

from ddbmigrate.core.protocols import SinkBase, SourceBase
from ddbmigrate.errors import InterruptedError_
from ddbmigrate.core.items import KeySchema
from ddbmigrate.core.records import BatchResult, Chunk, Op
from ddbmigrate.engine.pipeline import Pipeline
from ddbmigrate.core.processing import Processing

KEYS = KeySchema("pk", "S")


class Pages(SourceBase):
    """``units`` units of ``pages`` chunks of 10 items each; positions are page numbers."""

    def __init__(self, units: int = 2, pages: int = 20) -> None:
        self.n_units, self.pages = units, pages

    def units(self) -> List[str]:
        return [str(u) for u in range(self.n_units)]

    def read(self, unit: str, position: Any, stop: threading.Event) -> Iterator[Chunk]:
        start = 0 if position is None else int(position) + 1
        for p in range(start, self.pages):
            if stop.is_set():
                return
            items = [{"pk": {"S": f"{unit}-{p}-{i}"}} for i in range(10)]
            yield Chunk(items=items, position=p, done=p == self.pages - 1)


class StuckSink(SinkBase):
    """Acknowledges ``ok`` batches, then blocks every write (an unreachable DynamoDB)."""

    def __init__(self, ok: int) -> None:
        self.ok = ok
        self.calls = 0
        self.lock = threading.Lock()
        self.stuck = threading.Event()
        self.release = threading.Event()

    def write(self, ops: List[Op]) -> BatchResult:
        with self.lock:
            self.calls += 1
            n = self.calls
        if n > self.ok:
            self.stuck.set()
            self.release.wait(60)
        return BatchResult(written=len(ops))

    def close(self) -> None:
        self.release.set()


def test_interrupt_with_stuck_writes_is_bounded_and_checkpoint_stays_behind() -> None:
    sink = StuckSink(ok=6)
    p = Pipeline(Pages(), sink, Processing(key_schema=KEYS, max_batch_ops=5), readers=2, writers=2,
                 drain_timeout=0.2, abandon_grace=0.2, checkpoint_every=3600)
    result: List[BaseException] = []

    def run() -> None:
        try:
            p.run()
        except BaseException as e:
            result.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert sink.stuck.wait(30)
    p.interrupt()
    t.join(30)  # liveness, not timing: without the drain deadline this would hang until released
    try:
        assert not t.is_alive(), "run() did not return after the drain timeout"
        assert len(result) == 1 and isinstance(result[0], InterruptedError_)
        positions, done, counters = p.checkpoint_snapshot()
        # Only fully acknowledged chunks are behind the positions: 6 batches of 5 = 3 chunks of 10.
        assert counters["written"] == counters["read"] <= 30
        assert sum(int(pos) + 1 for pos in positions.values()) * 10 == counters["read"]
        assert done == []
    finally:
        sink.release.set()


class CountingSink(SinkBase):
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def write(self, ops: List[Op]) -> BatchResult:
        if self.delay:
            time.sleep(self.delay)  # a little latency, so saves interleave with acknowledgements
        return BatchResult(written=len(ops))

    def close(self) -> None:
        return None


def test_saved_counters_match_saved_positions_at_every_save() -> None:
    """Every snapshot taken while the job runs has counters == the items behind its positions."""
    seen: List[tuple] = []

    def on_checkpoint(p: Pipeline, state: object) -> None:
        seen.append(p.checkpoint_snapshot())

    p = Pipeline(Pages(units=4, pages=50), CountingSink(0.001), Processing(key_schema=KEYS, max_batch_ops=5),
                 readers=4, writers=4,
                 on_checkpoint=on_checkpoint, checkpoint_every=0.001)
    p.run()
    assert len(seen) > 2
    for positions, done, counters in seen:
        behind = sum(int(pos) + 1 for pos in positions.values()) * 10 + len(done) * 500
        assert counters["read"] == counters["written"] == behind
    assert seen[-1][2]["read"] == 4 * 50 * 10 and sorted(seen[-1][1]) == ["0", "1", "2", "3"]


def test_resume_positions_skip_what_was_acknowledged() -> None:
    p = Pipeline(Pages(units=2, pages=5), CountingSink(), Processing(key_schema=KEYS),
                 positions={"0": 2}, done_units=["1"], counters={"read": 30, "written": 30, "out": 30})
    p.run()
    c = p.counters.snapshot(committed=True)
    assert c["read"] == c["written"] == 50  # 30 restored + the 2 pages of unit 0 after position 2


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_options_reject_nonsense_timeouts(bad: float) -> None:
    from ddbmigrate.config import RunOptions
    from ddbmigrate.errors import UsageError

    with pytest.raises(UsageError):
        RunOptions(checkpoint_every=bad)
