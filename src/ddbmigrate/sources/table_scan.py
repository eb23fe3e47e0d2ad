"""Parallel segmented Scan of one table: one unit per segment, resumable at LastEvaluatedKey.

Items are yielded exactly as DynamoDB sent them (wire format), a page per chunk. A chunk's
position is the page's LastEvaluatedKey, so a checkpoint at that position resumes right after
the page; the last page (no LastEvaluatedKey) marks the segment done.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

import orjson

from ..aws.capacity import RateLimiter
from ..aws.client import DynamoClient
from ..config import RetryPolicy, TableRef
from ..core.protocols import SourceBase
from ..core.records import DELETE, Chunk
from ..core.specs import Resources, SourceSpecBase

# DynamoDB reads at most 1 MB per page: 1 MB eventually consistent = 128 RCU (4 KB at 0.5).
_PAGE_RCU_ESTIMATE = 128.0


MIN_SEGMENTS = 32


def default_segments(table: Dict[str, Any]) -> int:
    """Segments from DescribeTable size: about one per 128 MB, at least 32 for non-trivial tables.

    Segments are cheap (reader threads, not segments, bound memory and connections) and many
    small ones beat a few big ones: readers stay busy to the end instead of one thread scanning
    the last big segment alone, a resume redoes less, and DynamoDB Local's Scan, whose cost per
    page grows with the size of the segment, stays linear.
    """
    size = int(table.get("TableSizeBytes") or 0)
    count = int(table.get("ItemCount") or 0)
    if size < 1_000_000 and count < 5_000:
        return 4 if count > 0 else 1
    return int(min(4096, max(MIN_SEGMENTS, math.ceil(size / (128 * 1024 * 1024)))))


_simdjson: Any
try:  # optional: a lazy parser that hands out each item's JSON without building Python objects
    import simdjson as _simdjson
except ImportError:  # pragma: no cover - pysimdjson is a dependency, but degrade gracefully
    _simdjson = None


def split_page(data: bytes) -> Tuple[List[bytes], Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
    """A Scan/Query response -> (each item's minified JSON, LastEvaluatedKey, ConsumedCapacity).

    Building Python dicts for every attribute is most of a copy's client CPU (about 10-15 µs per
    1 KB item with orjson); pass-through copies never need them, so the page is parsed by
    simdjson and each item is taken out as bytes (about 2 µs).
    """
    assert _simdjson is not None
    doc: Any = _simdjson.Parser().parse(data)
    items: Any = doc.get("Items")
    raw: List[bytes] = [it.mini for it in items] if items is not None else []
    lek: Any = doc.get("LastEvaluatedKey")
    cc: Any = doc.get("ConsumedCapacity")
    out = (raw, lek.as_dict() if lek is not None else None, cc.as_dict() if cc is not None else None)
    del items, lek, cc, doc  # the parser's buffers are released with its last proxy
    return out


def unit_name(segment: int) -> str:
    return str(segment)


class TableScanSource(SourceBase):
    """One unit per scan segment; see the module docstring."""

    def __init__(
        self,
        client: DynamoClient,
        table: str,
        total_segments: int,
        *,
        consistent_read: bool = False,
        page_limit: Optional[int] = None,
        limiter: Optional[RateLimiter] = None,
        segments: Optional[List[int]] = None,
        projection: Optional[List[str]] = None,
        raw: bool = False,
        as_deletes: bool = False,
    ) -> None:
        self.client = client
        self.table = table
        self.total = max(1, total_segments)
        self.consistent = consistent_read
        self.page_limit = page_limit
        self.limiter = limiter or RateLimiter()
        self.only = segments
        self.projection = projection
        # raw: hand items on as their JSON bytes (lazy parse), for pass-through copies.
        self.raw = raw and _simdjson is not None and not as_deletes
        self.as_deletes = as_deletes

    def units(self) -> List[str]:
        segs = self.only if self.only is not None else range(self.total)
        return [unit_name(s) for s in segs]

    def read(self, unit: str, position: Any, stop: threading.Event) -> Iterator[Chunk]:
        seg = int(unit)
        req: Dict[str, Any] = {"TableName": self.table, "ReturnConsumedCapacity": "TOTAL"}
        if self.total > 1:
            req["Segment"] = seg
            req["TotalSegments"] = self.total
        if self.consistent:
            req["ConsistentRead"] = True
        if self.page_limit:
            req["Limit"] = self.page_limit
        if self.projection:
            names = {f"#k{i}": n for i, n in enumerate(self.projection)}
            req["ProjectionExpression"] = ", ".join(names)
            req["ExpressionAttributeNames"] = names
        if position:
            req["ExclusiveStartKey"] = position
        estimate = _PAGE_RCU_ESTIMATE * (2 if self.consistent else 1)
        if self.page_limit:
            estimate = min(estimate, max(1.0, self.page_limit / 2))
        while not stop.is_set():
            self.limiter.acquire(estimate)
            data = self.client.call_raw("Scan", req, table=self.table, limiter=self.limiter)
            if self.raw:
                raw, lek, cc = split_page(data)
                chunk = Chunk(raw=raw, position=lek, done=lek is None)
            else:
                resp = orjson.loads(data)
                lek, cc = resp.get("LastEvaluatedKey"), resp.get("ConsumedCapacity")
                items = resp.get("Items") or []
                if self.as_deletes:  # emptying a table: each item read is a delete of its key
                    chunk = Chunk(ops=[(DELETE, it) for it in items], position=lek, done=lek is None)
                else:
                    chunk = Chunk(items=items, position=lek, done=lek is None)
            consumed = float((cc or {}).get("CapacityUnits") or 0.0)
            chunk.consumed = consumed
            self.limiter.settle(estimate, consumed)
            self.client.stats.consumed(read=consumed)
            yield chunk
            if lek is None:
                return
            req["ExclusiveStartKey"] = lek


@dataclass(frozen=True)
class TableScanSpec(SourceSpecBase):
    """A parallel scan of ``ref``'s table in ``total_segments`` segments (picklable)."""

    ref: TableRef
    total_segments: int
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    consistent_read: bool = False
    read_rate: Optional[float] = None  # units/s for the whole job (workers divide it)
    page_limit: Optional[int] = None
    projection: Optional[Tuple[str, ...]] = None
    raw: bool = False
    as_deletes: bool = False

    def units(self) -> List[str]:
        return [unit_name(s) for s in range(max(1, self.total_segments))]

    def build(self, res: Resources) -> TableScanSource:
        segments = [int(u) for u in res.units] if res.units is not None else None
        readers = len(segments) if segments is not None else self.total_segments
        client = res.client(self.ref, self.retry, pool_size=min(32, max(1, readers)) + 4)
        return TableScanSource(client, self.ref.table, self.total_segments, consistent_read=self.consistent_read,
                               page_limit=self.page_limit, limiter=res.limiter(self.read_rate, "read"),
                               segments=segments, projection=list(self.projection) if self.projection else None,
                               raw=self.raw, as_deletes=self.as_deletes)
