"""Regressions found in review, reproduced without a server (engine-level behaviour)."""

from __future__ import annotations

import sys
import threading
from typing import Any, Iterator, List

from ddbmigrate.core.protocols import SinkBase, SourceBase
from ddbmigrate.core.items import KeySchema
from ddbmigrate.core.records import BatchResult, Chunk, Op
from ddbmigrate.engine.pipeline import Pipeline
from ddbmigrate.core.processing import Processing

KEYS = KeySchema("pk", "S")


class BigPages(SourceBase):
    """One unit of a few large chunks: many batches per ticket, acknowledged by many writers."""

    def __init__(self, chunks: int, per_chunk: int) -> None:
        self.chunks, self.per_chunk = chunks, per_chunk

    def units(self) -> List[str]:
        return ["0"]

    def read(self, unit: str, position: Any, stop: threading.Event) -> Iterator[Chunk]:
        for c in range(self.chunks):
            items = [{"pk": {"S": f"{c}-{i}"}} for i in range(self.per_chunk)]
            yield Chunk(items=items, position=c, done=c == self.chunks - 1)


class AckSink(SinkBase):
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


def test_numbers_dynamodb_refuses_are_invalid_before_sending() -> None:
    # Python's Decimal accepts surrounding whitespace and digit-group underscores; DynamoDB
    # answers "A value provided cannot be converted into a number" (checked on DynamoDB Local).
    # Caught here, the dead letter names the attribute and a dry run counts it as invalid.
    from ddbmigrate.core.items import KeySchema as KS
    from ddbmigrate.core.items import item_problem, number_problem

    for bad in (" 5", "5 ", "1_000", "\t1", "1\n"):
        assert number_problem(bad) is not None, bad
    assert item_problem({"pk": {"S": "a"}, "n": {"N": "1_000"}}) is not None
    assert KS("id", "N").problem({"id": {"N": " 7"}}) is not None
    for good in ("5", "+5", "-5.", ".5", "1e5", "1E-130", "-0", "12345678901234567890123456789012345678"):
        assert number_problem(good) is None, good


def test_bare_item_with_an_attribute_named_item_is_not_read_as_the_wrapper() -> None:
    # Only {"Item": {...}} alone is AWS's wrapper; a bare item that also has other attributes
    # is the item itself (it used to be dead-lettered as an invalid "Item" value).
    import orjson

    from ddbmigrate.sources.lines import parse_item

    item = {"pk": {"S": "a"}, "Item": {"L": []}}
    assert parse_item(orjson.dumps(item), "ddb")[:2] == (item, None)
    item2 = {"pk": {"S": "b"}, "Item": {"M": {"x": {"N": "1"}}}}
    assert parse_item(orjson.dumps(item2), "auto")[:2] == (item2, None)
    wrapped = {"Item": {"pk": {"S": "c"}}}
    assert parse_item(orjson.dumps(wrapped), "auto")[:2] == ({"pk": {"S": "c"}}, None)
