"""Per-key order: an ordered source's versions of one key are written in source order."""

from __future__ import annotations

import random
import threading
import time
from typing import Any, Dict, Iterator, List

import pytest

from ddbmigrate.core.protocols import SinkBase, SourceBase
from ddbmigrate.core.items import KeySchema
from ddbmigrate.core.records import DELETE, PUT, BatchResult, Chunk, Op
from ddbmigrate.engine.pipeline import Pipeline
from ddbmigrate.core.processing import Processing

KEYS = KeySchema("pk", "S")


class Versions(SourceBase):
    """One unit; chunk r holds version r of every key (and deletes some keys in odd rounds)."""

    def __init__(self, ordered: bool, keys: int = 40, rounds: int = 30) -> None:
        self.ordered = ordered
        self.keys, self.rounds = keys, rounds

    def units(self) -> List[str]:
        return ["file"]

    def read(self, unit: str, position: Any, stop: threading.Event) -> Iterator[Chunk]:
        for r in range(self.rounds):
            ops = []
            for k in range(self.keys):
                item = {"pk": {"S": f"k{k}"}, "v": {"N": str(r)}}
                # Keys divisible by 7 are deleted in odd rounds, and put again in even ones.
                ops.append((DELETE if k % 7 == 0 and r % 2 else PUT, item))
            yield Chunk(ops=ops, position=r, done=r == self.rounds - 1)


class JitterSink(SinkBase):
    """Applies writes to a dict after a random pause; one write in ten is slow (a throttled retry)."""

    def __init__(self, seed: int) -> None:
        self.table: Dict[str, int] = {}
        self.lock = threading.Lock()
        self.rng = random.Random(seed)

    def write(self, ops: List[Op]) -> BatchResult:
        with self.lock:
            pause = 0.03 if self.rng.random() < 0.1 else self.rng.random() * 0.002
        time.sleep(pause)
        with self.lock:
            for op in ops:
                k = op.item["pk"]["S"]
                if op.kind == PUT:
                    self.table[k] = int(op.item["v"]["N"])
                else:
                    self.table.pop(k, None)
        return BatchResult(written=sum(op.kind == PUT for op in ops), deleted=sum(op.kind == DELETE for op in ops))

    def close(self) -> None:
        pass


def expected(src: Versions) -> Dict[str, int]:
    last = src.rounds - 1
    return {f"k{k}": last for k in range(src.keys) if not (k % 7 == 0 and last % 2)}


@pytest.mark.parametrize("seed", range(3))
def test_ordered_source_keeps_the_last_version_of_every_key(seed: int) -> None:
    src = Versions(ordered=True, rounds=31)
    sink = JitterSink(seed)
    p = Pipeline(src, sink, Processing(key_schema=KEYS, max_batch_ops=3), readers=1, writers=8)
    assert p.key_affine
    p.run()
    assert sink.table == expected(src)
    snap = p.counters.snapshot()
    assert snap["written"] + snap["deleted"] == src.keys * src.rounds


def test_unordered_source_shares_one_queue() -> None:
    p = Pipeline(Versions(ordered=False), JitterSink(0), Processing(key_schema=KEYS), writers=8)
    assert not p.key_affine and len(p.queues) == 1


def test_without_lanes_versions_race() -> None:
    """The hazard the lanes remove is real: the same jittery writes, one shared queue, reorder.

    Guards the test above against passing for a reason other than the lanes (e.g. a sink too
    quick to ever interleave).
    """
    raced = False
    for seed in range(5):
        src = Versions(ordered=False, rounds=31)
        sink = JitterSink(seed)
        Pipeline(src, sink, Processing(key_schema=KEYS, max_batch_ops=3), readers=1, writers=8).run()
        raced = raced or sink.table != expected(src)
    assert raced


def test_queued_ops_hold_their_encoding_not_the_encoders_buffer() -> None:
    """Memory: a queued op costs about its item's JSON (orjson's dumps buffer is 8x that)."""
    import tracemalloc

    from ddbmigrate.engine.pipeline import Ticket
    from ddbmigrate.core.transform import Transform

    items = [{"pk": {"S": f"k{i:05d}"}, "body": {"S": "x" * 1000}} for i in range(2000)]
    p = Pipeline(Versions(ordered=False), JitterSink(0), Processing(
        key_schema=KEYS, transform=Transform(lambda it: it, "identity", "h", "test")), writers=2)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        batches = p._process(Chunk(items=items, position=0), Ticket("u", 0, False))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    encoded = sum(len(op.enc) for b in batches for op in b.ops)
    assert sum(len(b.ops) for b in batches) == 2000
    assert held < 2 * encoded, (held, encoded)
