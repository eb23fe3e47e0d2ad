"""A sample of source items, run through the transform, summarised for the estimate.

:func:`sample_table` reads up to ``n`` items with a parallel Scan of a few segments (each its
share of ``n``), so the sample is not just the first partition's items; it says whether it saw
the whole table (every segment ended), in which case the counts are exact rather than scaled.

:class:`SampleStats` takes source items one at a time and keeps only sums and, per target key
attribute, one counter per distinct value (at most one entry per sampled output): source and
output sizes, fan-out, drops, transform errors, the write units of every output for the table
and for each index that projects it, and the CPU time the transform and encoding took.

Invariant: nothing here writes, and memory is bounded by the sample size, not the table's.
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple

import orjson

from ..core.items import WireItem, item_size
from ..core.transform import Transform, TransformContext
from ..errors import DdbMigrateError

DEFAULT_SAMPLE = 1000
SAMPLE_SEGMENTS = 4


def write_units(size: int) -> int:
    """Write units of one put: 1 per started KB (an empty item still costs 1)."""
    return max(1, math.ceil(size / 1024))


def read_units(size: float, consistent: bool = False) -> float:
    """Read units of reading ``size`` bytes in a Scan: 1 per started 4 KB, halved when eventually
    consistent (a Scan rounds the total of a page, not each item)."""
    units = float(math.ceil(size / 4096)) if size > 0 else 0.0
    return units if consistent else units / 2.0


def value_text(v: Mapping[str, Any]) -> str:
    """A key value as the user wrote it (S and N as text, B as base64)."""
    tag, x = next(iter(v.items()))
    if tag == "B" and isinstance(x, (bytes, bytearray)):
        return base64.b64encode(bytes(x)).decode()
    return str(x)


@dataclass
class IndexShape:
    """The table or one of its indexes, as far as write units and key spread are concerned."""

    name: str  # "table" or the index name
    kind: str  # "table" | "GSI" | "LSI"
    hash_key: str
    range_key: Optional[str]
    projection: str = "ALL"  # ALL | KEYS_ONLY | INCLUDE
    include: Tuple[str, ...] = ()

    def projects(self, item: Mapping[str, Any]) -> bool:
        """A GSI/LSI holds an item only when the item has all its key attributes (sparse index)."""
        return self.hash_key in item and (self.range_key is None or self.range_key in item)

    def entry_size(self, item: Mapping[str, Any], table_keys: Tuple[str, ...]) -> int:
        if self.kind == "table" or self.projection == "ALL":
            return item_size(item)
        names = set(table_keys) | {self.hash_key} | ({self.range_key} if self.range_key else set())
        if self.projection == "INCLUDE":
            names |= set(self.include)
        return item_size({k: v for k, v in item.items() if k in names})


def index_shapes(desc: Mapping[str, Any]) -> List[IndexShape]:
    """The table and every GSI/LSI of a DescribeTable answer or a CreateTable request."""
    def keys(schema: Iterable[Mapping[str, Any]]) -> Tuple[str, Optional[str]]:
        h = r = None
        for k in schema:
            if k["KeyType"] == "HASH":
                h = k["AttributeName"]
            else:
                r = k["AttributeName"]
        return str(h), r

    h, r = keys(desc.get("KeySchema") or [])
    out = [IndexShape("table", "table", h, r)]
    for kind, label in (("GlobalSecondaryIndexes", "GSI"), ("LocalSecondaryIndexes", "LSI")):
        for ix in desc.get(kind) or []:
            ih, ir = keys(ix.get("KeySchema") or [])
            proj = ix.get("Projection") or {}
            out.append(IndexShape(str(ix["IndexName"]), label, ih, ir, str(proj.get("ProjectionType", "ALL")),
                                  tuple(proj.get("NonKeyAttributes") or ())))
    return out


@dataclass
class KeySpread:
    """Per distinct value of one index's partition key: [write units, outputs, source items], and
    (with a sort key) the distinct sort-key values seen under it: what a split for heat could use."""

    attribute: str
    values: Dict[str, List[int]] = field(default_factory=dict)
    sort_attribute: Optional[str] = None
    sort_values: Dict[str, Set[str]] = field(default_factory=dict)  # bounded by the sample size

    def add(self, value: str, units: int, source_index: int, last_source: Dict[str, int],
            sort_value: Optional[str] = None) -> None:
        row = self.values.setdefault(value, [0, 0, 0])
        row[0] += units
        row[1] += 1
        if last_source.get(value) != source_index:  # fan-out outputs of one item share a key: count the item once
            row[2] += 1
            last_source[value] = source_index
        if sort_value is not None:
            self.sort_values.setdefault(value, set()).add(sort_value)

    def hottest(self) -> Optional[Tuple[str, List[int]]]:
        """The value with the most write units among those seen in two or more source items.

        A value seen in one source item only says nothing about the whole table: with unique keys
        every value of a sample looks like 1/n of it."""
        repeated = [(v, row) for v, row in self.values.items() if row[2] >= 2]
        if not repeated:
            return None
        return max(repeated, key=lambda vr: (vr[1][0], vr[1][1]))


@dataclass
class SampleStats:
    """Sums over a sample of source items and their transformed outputs."""

    shapes: List[IndexShape]
    transform: Optional[Transform] = None
    context: Optional[TransformContext] = None
    source_items: int = 0
    outputs: int = 0
    dropped: int = 0
    errors: int = 0
    source_bytes: int = 0
    output_bytes: int = 0
    json_line_bytes: int = 0  # the outputs as export lines: {"Item":<wire JSON>} and a newline each
    cpu_seconds: float = 0.0
    complete: bool = False  # the sample is the whole source
    read_units: float = 0.0  # what taking the sample consumed (DynamoDB's ConsumedCapacity)
    units: Dict[str, int] = field(default_factory=dict)  # index name -> write units of the sample
    entry_bytes: Dict[str, int] = field(default_factory=dict)  # index name -> bytes written to it
    projected: Dict[str, int] = field(default_factory=dict)  # index name -> outputs it holds
    spread: Dict[str, KeySpread] = field(default_factory=dict)
    first_error: Optional[str] = None
    _last: Dict[str, Dict[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for s in self.shapes:
            self.units.setdefault(s.name, 0)
            self.entry_bytes.setdefault(s.name, 0)
            self.projected.setdefault(s.name, 0)
            self.spread.setdefault(s.name, KeySpread(s.hash_key, sort_attribute=s.range_key))
            self._last.setdefault(s.name, {})

    @property
    def table_keys(self) -> Tuple[str, ...]:
        t = self.shapes[0]
        return (t.hash_key,) + ((t.range_key,) if t.range_key else ())

    def add(self, item: WireItem) -> None:
        idx = self.source_items
        self.source_items += 1
        self.source_bytes += item_size(item)
        t0 = time.process_time()
        lines = 0
        try:
            outs = self.transform(item, self.context) if self.transform is not None else [item]
            for o in outs:
                # the encoding the writer does: part of the CPU per item
                lines += len(orjson.dumps(o)) + len(b'{"Item":}\n')
        except DdbMigrateError as e:
            self.errors += 1  # a dead letter of the job, not a drop
            self.first_error = self.first_error or e.one_line()
            return
        finally:
            self.cpu_seconds += time.process_time() - t0
        if not outs:
            self.dropped += 1
        self.json_line_bytes += lines
        for o in outs:
            self.outputs += 1
            size = item_size(o)
            self.output_bytes += size
            for s in self.shapes:
                if not s.projects(o):
                    continue
                entry = s.entry_size(o, self.table_keys)
                u = write_units(entry)
                self.units[s.name] += u
                self.entry_bytes[s.name] += entry
                self.projected[s.name] += 1
                v = o.get(s.hash_key)
                if isinstance(v, dict) and v:
                    r = o.get(s.range_key) if s.range_key else None
                    self.spread[s.name].add(value_text(v), u, idx, self._last[s.name],
                                            value_text(r) if isinstance(r, dict) and r else None)


def sample_table(client: Any, table: str, n: int = DEFAULT_SAMPLE, segments: int = SAMPLE_SEGMENTS,
                 consistent: bool = False) -> Tuple[List[WireItem], bool, float]:
    """(items, whole table seen, read units consumed): a parallel Scan of ``segments`` segments,
    each reading its share of ``n`` items; the share of a segment that ends early goes to the
    segments still going (in rounds), so the sample has ``n`` items unless the table has fewer."""
    segments = max(1, min(segments, n))
    got: List[List[WireItem]] = [[] for _ in range(segments)]
    starts: List[Optional[Dict[str, Any]]] = [None] * segments
    ended = [False] * segments
    consumed = [0.0] * segments

    def one(seg: int, share: int) -> None:
        want = len(got[seg]) + share
        while len(got[seg]) < want:
            req: Dict[str, Any] = {"TableName": table, "Segment": seg, "TotalSegments": segments,
                                   "Limit": min(1000, want - len(got[seg])), "ReturnConsumedCapacity": "TOTAL"}
            if consistent:
                req["ConsistentRead"] = True
            if starts[seg]:
                req["ExclusiveStartKey"] = starts[seg]
            page = client.call("Scan", req, table=table)
            got[seg].extend(page.get("Items") or [])
            consumed[seg] += float((page.get("ConsumedCapacity") or {}).get("CapacityUnits") or 0.0)
            starts[seg] = page.get("LastEvaluatedKey")
            if not starts[seg]:
                ended[seg] = True
                return

    with cf.ThreadPoolExecutor(max_workers=segments, thread_name_prefix="estimate-sample") as pool:
        while True:
            going = [i for i in range(segments) if not ended[i]]
            left = n - sum(len(g) for g in got)
            if not going or left <= 0:
                break
            # Even shares of what is left (the first ones one more): a key that fills its segment
            # (one partition-key value's items are all in one segment) gets the others' unused share.
            shares = {seg: left // len(going) + (1 if k < left % len(going) else 0) for k, seg in enumerate(going)}
            list(pool.map(lambda seg: one(seg, shares[seg]), [s for s in going if shares[s] > 0]))
    items = [i for g in got for i in g]
    return items, all(ended), sum(consumed)
