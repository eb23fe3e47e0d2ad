"""Scan pages under a write capacity the job found by itself (no --max-write-units): once the
writers hold a rate, each Scan asks for about two seconds of writes (as under a configured
limit), so a small table's pages settle, move progress and checkpoint within seconds rather
than a 1 MB page at a time."""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List, Optional

import orjson

from ddbmigrate.aws.capacity import AdaptiveLimiter, page_limit
from ddbmigrate.core.specs import Resources
from ddbmigrate.sources.table_scan import TableScanSource, found_rate


class Pages:
    """A client answering ``pages`` Scan pages of 3 items; it records each request's Limit."""

    def __init__(self, pages: int, on_call: Callable[[int], None]) -> None:
        self.pages, self.on_call = pages, on_call
        self.limits: List[Optional[int]] = []
        self.stats = type("S", (), {"consumed": staticmethod(lambda **kw: None)})()

    def call_parsed(self, op: str, req: Dict[str, Any], parse: Callable[[bytes], Any], **kw: Any) -> Any:
        n = len(self.limits)
        self.limits.append(req.get("Limit"))
        self.on_call(n)
        body: Dict[str, Any] = {"Items": [{"pk": {"S": f"{n}-{i}"}} for i in range(3)], "Count": 3}
        if n + 1 < self.pages:
            body["LastEvaluatedKey"] = {"pk": {"S": f"{n}-2"}}
        return parse(orjson.dumps(body))


def _read(source: TableScanSource) -> int:
    return sum(len(c.items or []) for c in source.read("0", None, threading.Event()))


def test_pages_follow_the_write_rate_the_writers_found() -> None:
    rate: List[Optional[float]] = [None]
    client = Pages(4, lambda n: rate.__setitem__(0, 40.0) if n == 1 else None)
    source = TableScanSource(client, "t", 1, write_rate=lambda: rate[0])  # type: ignore[arg-type]
    assert _read(source) == 12
    # No rate yet: DynamoDB's 1 MB pages; from the third call on, two seconds of 40 units/s.
    assert client.limits == [None, None, 80, 80] and page_limit(None, 40.0) == 80


def test_a_read_limits_pages_and_the_found_write_rate_the_smaller_wins() -> None:
    for found, limits in ((5.0, [10, 10]), (500.0, [25, 25]), (None, [25, 25])):
        client = Pages(2, lambda n: None)
        source = TableScanSource(client, "t", 1, page_limit=25, write_rate=lambda: found)  # type: ignore[arg-type]
        _read(source)
        assert client.limits == limits, (found, client.limits)


def test_pages_read_at_once_share_two_seconds_of_writes() -> None:
    # 8 segments read at once at 600 units/s: 150 items a page, 1,200 in flight (two seconds),
    # not 8 pages of 1,000 (13 s of writes that progress and the ETA would trail by).
    assert page_limit(None, 600.0, 8) == 150 and page_limit(None, 600.0) == 1000
    assert page_limit(None, 20.0, 8) == 10  # never below 10 items
    client = Pages(2, lambda n: None)
    source = TableScanSource(client, "t", 8, write_rate=lambda: 600.0, readers=8)  # type: ignore[arg-type]
    _read(source)
    assert client.limits == [150, 150]


def test_the_found_rate_is_the_write_limiters() -> None:
    res = Resources()
    assert found_rate(res, "write") is None  # the writers are built after the readers
    res.limiter(None, "read")
    lim = res.limiter(None, "write")
    assert isinstance(lim, AdaptiveLimiter) and found_rate(res, "write") is None  # nothing found yet
    lim.rate = 120.0
    assert found_rate(res, "write") == 120.0
