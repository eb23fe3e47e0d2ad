"""Parallel segmented Scan of one table: one unit per segment, resumable at LastEvaluatedKey.

Items are yielded exactly as DynamoDB sent them (wire format), a page per chunk. A chunk's
position is the page's LastEvaluatedKey, so a checkpoint at that position resumes right after
the page; the last page (no LastEvaluatedKey) marks the segment done.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Dict, Iterator, List, Optional

from ..client import DynamoClient
from ..pipeline import Chunk
from ..ratelimit import RateLimiter

# DynamoDB reads at most 1 MB per page: 1 MB eventually consistent = 128 RCU (4 KB at 0.5).
_PAGE_RCU_ESTIMATE = 128.0


def default_segments(table: Dict[str, Any]) -> int:
    """Segments from DescribeTable size: about one per 128 MB, at least 4 for non-trivial tables."""
    size = int(table.get("TableSizeBytes") or 0)
    count = int(table.get("ItemCount") or 0)
    if size < 1_000_000 and count < 5_000:
        return 4 if count > 0 else 1
    return int(min(4096, max(8, math.ceil(size / (128 * 1024 * 1024)))))


def unit_name(segment: int) -> str:
    return str(segment)


class TableScanSource:
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
    ) -> None:
        self.client = client
        self.table = table
        self.total = max(1, total_segments)
        self.consistent = consistent_read
        self.page_limit = page_limit
        self.limiter = limiter or RateLimiter()
        self.only = segments
        self.projection = projection

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
            resp = self.client.call("Scan", req, table=self.table, limiter=self.limiter)
            consumed = float((resp.get("ConsumedCapacity") or {}).get("CapacityUnits") or 0.0)
            self.limiter.settle(estimate, consumed)
            self.client.stats.consumed(read=consumed)
            lek = resp.get("LastEvaluatedKey")
            yield Chunk(items=resp.get("Items") or [], position=lek, done=lek is None, consumed=consumed)
            if lek is None:
                return
            req["ExclusiveStartKey"] = lek
