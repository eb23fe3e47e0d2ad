"""Regressions found in review, reproduced without a server (engine-level behaviour)."""

from __future__ import annotations

import sys
import threading
from typing import Any, Iterator, List

from ddbmigrate.items import KeySchema
from ddbmigrate.pipeline import BatchResult, Chunk, Op, Pipeline, Processing

KEYS = KeySchema("pk", "S")


class BigPages:
    """One unit of a few large chunks: many batches per ticket, acknowledged by many writers."""

    def __init__(self, chunks: int, per_chunk: int) -> None:
        self.chunks, self.per_chunk = chunks, per_chunk

    def units(self) -> List[str]:
        return ["0"]

    def read(self, unit: str, position: Any, stop: threading.Event) -> Iterator[Chunk]:
        for c in range(self.chunks):
            items = [{"pk": {"S": f"{c}-{i}"}} for i in range(self.per_chunk)]
            yield Chunk(items=items, position=c, done=c == self.chunks - 1)


class AckSink:
    def write(self, ops: List[Op]) -> BatchResult:
        return BatchResult(written=len(ops))

    def close(self) -> None:
        return None


def test_committed_counters_add_up_when_writers_ack_one_ticket_concurrently() -> None:
    # Writers acknowledge batches of the same chunk (ticket) at the same time; every ack must
    # land in the ticket's counts, or the checkpoint/report counters stop adding up.
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # make thread switches inside a read-modify-write likely
    try:
        n_chunks, per_chunk = 4, 4000
        p = Pipeline(BigPages(n_chunks, per_chunk), AckSink(),
                     Processing(key_schema=KEYS, max_batch_ops=1, dedupe=False),
                     readers=1, writers=8, checkpoint_every=3600)
        p.run()
    finally:
        sys.setswitchinterval(old)
    committed = p.counters.snapshot(committed=True)
    assert committed["read"] == n_chunks * per_chunk
    assert committed["written"] == n_chunks * per_chunk
