"""Parallel segmented Scan of one table: one unit per segment, resumable at LastEvaluatedKey.

Items are yielded exactly as DynamoDB sent them (wire format), a page per chunk. A chunk's
position is the page's LastEvaluatedKey, so a checkpoint at that position resumes right after
the page; the last page (no LastEvaluatedKey) marks the segment done.

A page is checked as it is parsed, in O(1) (never per item): a body that is not a JSON object,
``Items`` that is not a list (null, missing, a string), a ``Count`` that disagrees with it, or a
``LastEvaluatedKey`` that is not an object is a :class:`BadResponse`, retried like a body cut
short; a ``LastEvaluatedKey`` equal to the ``ExclusiveStartKey`` just sent would read the same
page for ever, so it stops the job (:class:`FatalError`).
"""

from __future__ import annotations

import collections
import hashlib
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Set, Tuple

import orjson

from ..aws.capacity import RateLimiter, page_limit
from ..aws.client import DynamoClient, load_object
from ..aws.transport import BadResponse
from ..config import RetryPolicy, TableRef
from ..core.protocols import SourceBase
from ..core.records import DELETE, Chunk
from ..core.specs import Resources, SourceSpecBase
from ..errors import FatalError

# DynamoDB reads at most 1 MB per page: 1 MB eventually consistent = 128 RCU (4 KB at 0.5).
_PAGE_RCU_ESTIMATE = 128.0
# LastEvaluatedKeys of a segment remembered to tell a Scan that goes round in circles (16 bytes each).
_SEEN_KEYS = 4096


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
    try:
        doc: Any = _simdjson.Parser().parse(data)
    except ValueError as e:  # UnicodeDecodeError too (a gzip body)
        raise BadResponse(f"the Scan answer (HTTP 200, {len(data):,} bytes) is not JSON: "
                          f"{str(e).split(':', 1)[0]}") from None
    if not isinstance(doc, _simdjson.Object):
        raise BadResponse(f"the Scan answer (HTTP 200) is a JSON {type(doc).__name__}, not an object")
    items: Any = doc.get("Items")
    lek: Any = doc.get("LastEvaluatedKey")
    # Array/Object are the parser's own types: isinstance and len are O(1), nothing is built.
    _check_page(items, items if isinstance(items, _simdjson.Array) else None, doc.get("Count"), lek,
                _simdjson.Object)
    try:
        raw: List[bytes] = [it.mini for it in items]
    except AttributeError:  # a number or a string among the Items
        raise BadResponse("the Scan answer's Items are not all JSON objects") from None
    if not all(r.startswith(b"{") for r in raw):  # an array among them (arrays have .mini too)
        raise BadResponse("the Scan answer's Items are not all JSON objects")
    cc: Any = doc.get("ConsumedCapacity")
    out = (raw, lek.as_dict() if lek is not None else None,
           cc.as_dict() if isinstance(cc, _simdjson.Object) else None)
    del items, lek, cc, doc  # the parser's buffers are released with its last proxy
    return out


def _check_page(items: Any, as_list: Any, count: Any, lek: Any, mapping: Any) -> None:
    """A Scan page's shape, in O(1): ``as_list`` is ``items`` when it is a list (of the parser's
    type), ``mapping`` the parser's type of a JSON object."""
    if as_list is None:
        # Taking null or a missing Items as an empty page would skip the page's items silently.
        what = "missing or null" if items is None else f"a JSON {type(items).__name__}"
        raise BadResponse(f"the Scan answer has no list of Items ({what})")
    if count is not None and (type(count) is not int or count != len(as_list)):
        raise BadResponse(f"the Scan answer's Count ({str(count)[:20]}) is not its number of Items ({len(as_list)})")
    if lek is not None and not isinstance(lek, mapping):
        raise BadResponse(f"the Scan answer's LastEvaluatedKey is a JSON {type(lek).__name__}, not an object")


def _parse_page(data: bytes) -> Dict[str, Any]:
    resp = load_object(data, "Scan")
    items = resp.get("Items")
    _check_page(items, items if isinstance(items, list) else None, resp.get("Count"),
                resp.get("LastEvaluatedKey"), dict)
    if not all(type(i) is dict for i in items or ()):  # (a list: checked above)
        raise BadResponse("the Scan answer's Items are not all JSON objects")
    return resp


def _units(cc: Any) -> float:
    """ConsumedCapacity's units; 0 for a shape DynamoDB never sends (it only steers the rate)."""
    units = cc.get("CapacityUnits") if isinstance(cc, dict) else None
    return float(units) if isinstance(units, (int, float)) and not isinstance(units, bool) else 0.0


def found_rate(res: Resources, name: str) -> Optional[float]:
    """The rate the limiter ``name`` of ``res`` holds now (a worker's writers are built after its
    readers, so it is looked up when asked); None while it holds none."""
    for lim in res.limiters:
        if lim.name == name:
            return lim.current_rate()
    return None


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
        write_rate: Optional[Callable[[], Optional[float]]] = None,
        readers: int = 1,
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
        # The write rate the job's writers found the target holds (None until they find one):
        # without a configured limit, pages shrink to it once known, as page_limit says.
        self.write_rate = write_rate
        self.readers = readers  # segments read at once (their pages share the found rate)

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
        seen: Set[bytes] = set()  # the segment's last LastEvaluatedKeys (see below)
        order: Deque[bytes] = collections.deque()
        while not stop.is_set():
            if self.write_rate is not None:
                found = page_limit(None, self.write_rate(), self.readers)
                if found:  # (with a read limit's pages too: the smaller of the two)
                    found = min(found, self.page_limit or found)
                    req["Limit"] = found
                    estimate = min(_PAGE_RCU_ESTIMATE * (2 if self.consistent else 1), max(1.0, found / 2))
            self.limiter.acquire(estimate)
            if self.raw:
                raw, lek, cc = self.client.call_parsed("Scan", req, split_page, table=self.table,
                                                       limiter=self.limiter)
                chunk = Chunk(raw=raw, position=lek, done=lek is None)
            else:
                resp = self.client.call_parsed("Scan", req, _parse_page, table=self.table, limiter=self.limiter)
                lek, cc = resp.get("LastEvaluatedKey"), resp.get("ConsumedCapacity")
                items = resp["Items"]
                if self.as_deletes:  # emptying a table: each item read is a delete of its key
                    chunk = Chunk(ops=[(DELETE, it) for it in items], position=lek, done=lek is None)
                else:
                    chunk = Chunk(items=items, position=lek, done=lek is None)
            if lek is not None and lek != req.get("ExclusiveStartKey"):
                # A key handed back again after others (a server cycling between pages) would read
                # the same pages for ever too: the last keys of this segment are remembered.
                mark = hashlib.blake2b(orjson.dumps(lek, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()
                if mark in seen:
                    raise FatalError("the Scan goes round in circles: it handed back a LastEvaluatedKey it had "
                                     "already given, so the same pages would be read for ever (a broken endpoint "
                                     "or proxy?)", table=self.table, segment=seg, code="LastEvaluatedKeyRepeated")
                seen.add(mark)
                order.append(mark)
                if len(order) > _SEEN_KEYS:
                    seen.discard(order.popleft())
            if lek is not None and lek == req.get("ExclusiveStartKey"):
                # The server would hand back this page for ever: a copy would read the same items
                # again and again, never finishing. Nothing retried will change that.
                raise FatalError("the Scan does not advance: the LastEvaluatedKey returned is the ExclusiveStartKey "
                                 "just sent, so the same page would be read for ever (a broken endpoint or proxy?)",
                                 table=self.table, segment=seg,
                                 code="LastEvaluatedKeyRepeated")
            consumed = _units(cc)
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
    readers: int = 1  # segments the job reads at once (page sizes under a write rate share it)

    def units(self) -> List[str]:
        return [unit_name(s) for s in range(max(1, self.total_segments))]

    def build(self, res: Resources) -> TableScanSource:
        segments = [int(u) for u in res.units] if res.units is not None else None
        readers = len(segments) if segments is not None else self.total_segments
        client = res.client(self.ref, self.retry, pool_size=min(32, max(1, readers)) + 4)
        return TableScanSource(client, self.ref.table, self.total_segments, consistent_read=self.consistent_read,
                               page_limit=self.page_limit, limiter=res.limiter(self.read_rate, "read"),
                               segments=segments, projection=list(self.projection) if self.projection else None,
                               raw=self.raw, as_deletes=self.as_deletes, write_rate=lambda: found_rate(res, "write"),
                               readers=self.readers)
