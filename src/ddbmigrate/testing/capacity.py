"""A table's write capacity as DynamoDB spends it, for the fault proxy (``Faults.capacity``).

DynamoDB splits a table's write capacity over its partitions by the hash of the partition key;
each partition (and each partition of each global secondary index, which a write also consumes)
admits about ``units / partitions`` write units per second, with a little burst. A
BatchWriteItem whose requests do not all fit gets the rest back in ``UnprocessedItems``; when
none fit, the whole call is refused with ``ProvisionedThroughputExceededException``. This model
does the same, so a client's rate control can be measured against a known capacity ``C``:
efficiency is accepted units / (C x seconds), the throttled share is what came back.

The capacity can be changed while a run goes on (:meth:`WriteCapacity.set_units`).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import Counter, deque
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

from ..core.items import item_size

# What one throttled key value is reported as: (table, index or "" for the table, attribute, value).
HotKey = Tuple[str, str, str, str]
# One partition's bucket: (table, index or "", partition key attribute, partition). Each table has
# its own capacity, as on DynamoDB: two targets written through one proxy do not share it.
_Bucket = Tuple[str, str, str, int]


class WriteCapacity:
    def __init__(self, units: float, *, partitions: int = 4, burst_seconds: float = 1.0,
                 clock: Any = time.monotonic, declared: bool = True) -> None:
        if partitions < 1 or not (math.isfinite(burst_seconds) and burst_seconds > 0):
            raise ValueError("partitions must be at least 1 and burst seconds a positive number")
        self.partitions = partitions
        self.burst_seconds = burst_seconds
        # Whether the table says what it admits (DescribeTable through the proxy carries the
        # units, as a provisioned table's WriteCapacityUnits do), or not (an on-demand table's
        # partition limits): a job reads the first and must find the second.
        self.declared = declared
        self.units = self._checked(units)
        self.clock = clock
        self._lock = threading.Lock()
        self._tokens: Dict[_Bucket, Tuple[float, float]] = {}  # -> (tokens, at)
        self.refused_calls = 0
        self.throttled_calls = 0  # calls with anything held back (refused ones included)
        self.write_calls = 0
        self.first: Optional[float] = None
        self.last: Optional[float] = None
        self.throttled_keys: Counter[HotKey] = Counter()
        # Per table written: [units accepted, items accepted, items throttled]; the totals are their sums.
        self.tables: Dict[str, List[float]] = {}
        self._origin = clock()
        # Per second since the model was made: [write calls, throttled calls, units admitted].
        self.seconds: Dict[int, List[float]] = {}
        # The last calls, for a closer look than per second: (at, units sent, units admitted).
        self.calls: Deque[Tuple[float, float, float]] = deque(maxlen=100_000)

    def reset_stats(self) -> None:
        """Start counting afresh (the buckets keep their tokens): for a steady-state window."""
        with self._lock:
            self.refused_calls = self.throttled_calls = 0
            self.write_calls = 0
            self.first = self.last = None
            self.throttled_keys.clear()
            self.tables.clear()

    def _checked(self, units: float) -> float:
        """Units a partition's bucket can hold at least one write unit of: a capacity that never
        admits a 1 KB item would refuse every write for ever, which no table does."""
        units = float(units)
        if not (math.isfinite(units) and units > 0):
            raise ValueError(f"write capacity must be a positive number, got {units:g}")
        if units / self.partitions * self.burst_seconds < 1.0:
            raise ValueError(f"{units:g} units over {self.partitions} partitions with {self.burst_seconds:g} s of "
                             "burst cannot admit one write unit; give more units or fewer partitions")
        return units

    @property
    def accepted_units(self) -> float:
        return float(sum(t[0] for t in self.tables.values()))

    @property
    def accepted_items(self) -> int:
        return int(sum(t[1] for t in self.tables.values()))

    @property
    def throttled_items(self) -> int:
        return int(sum(t[2] for t in self.tables.values()))

    def set_units(self, units: float) -> None:
        units = self._checked(units)
        with self._lock:
            self.units = units

    def _take(self, bucket: _Bucket, wcu: float, now: float) -> bool:
        rate = self.units / self.partitions
        tokens, at = self._tokens.get(bucket, (rate * self.burst_seconds, now))
        tokens = min(rate * self.burst_seconds, tokens + (now - at) * rate)
        if tokens < wcu:
            self._tokens[bucket] = (tokens, now)
            return False
        self._tokens[bucket] = (tokens - wcu, now)
        return True

    def _partition(self, value: Any) -> int:
        raw = repr(sorted(value.items())) if isinstance(value, dict) else repr(value)
        return int.from_bytes(hashlib.md5(raw.encode()).digest()[:4], "big") % self.partitions

    def admit(self, table: str, requests: Sequence[Dict[str, Any]], hash_key: Optional[str],
              gsi_keys: Dict[str, str]) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
        """(admitted, held back) of one call's write requests, in order."""
        now = self.clock()
        kept: List[Dict[str, Any]] = []
        held: List[Dict[str, Any]] = []
        sent = admitted = 0.0  # this call's write units
        with self._lock:
            self.write_calls += 1
            self.first = now if self.first is None else self.first
            self.last = now
            per_table = self.tables.setdefault(table, [0.0, 0, 0])
            for r in requests:
                put = (r.get("PutRequest") or {}).get("Item")
                image = put if put is not None else (r.get("DeleteRequest") or {}).get("Key") or {}
                wcu = float(max(1, math.ceil(item_size(image) / 1024))) if put is not None else 1.0
                sent += wcu
                wanted: List[Tuple[_Bucket, HotKey]] = []
                if hash_key and hash_key in image:
                    v = image[hash_key]
                    wanted.append(((table, "", hash_key, self._partition(v)), (table, "", hash_key, _text(v))))
                if put is not None:
                    for index, attr in gsi_keys.items():
                        if attr in put:
                            v = put[attr]
                            wanted.append(((table, index, attr, self._partition(v)), (table, index, attr, _text(v))))
                short = [hot for bucket, hot in wanted if not self._peek(bucket, wcu, now)]
                if short:
                    held.append(r)
                    per_table[2] += 1
                    for hot in short:
                        self.throttled_keys[hot] += 1
                    continue
                for bucket, _ in wanted:
                    self._take(bucket, wcu, now)
                kept.append(r)
                per_table[0] += wcu
                per_table[1] += 1
                admitted += wcu
            if held:
                self.throttled_calls += 1
            if not kept:
                self.refused_calls += 1
            sec = self.seconds.setdefault(int(now - self._origin), [0, 0, 0.0])
            sec[0] += 1
            sec[1] += 1 if held else 0
            sec[2] += admitted
            self.calls.append((now - self._origin, sent, admitted))
        return kept, held

    def timeline(self) -> List[Dict[str, Any]]:
        """Per second: write calls, throttled calls and units admitted (to see when throttles happen)."""
        with self._lock:
            return [{"second": k, "calls": int(v[0]), "throttled": int(v[1]), "units": round(v[2], 1)}
                    for k, v in sorted(self.seconds.items())]

    def _peek(self, bucket: _Bucket, wcu: float, now: float) -> bool:
        rate = self.units / self.partitions
        tokens, at = self._tokens.get(bucket, (rate * self.burst_seconds, now))
        return min(rate * self.burst_seconds, tokens + (now - at) * rate) >= wcu

    def snapshot(self) -> Dict[str, Any]:
        """The model's figures. Each table has the capacity, so efficiency is what was accepted of
        the capacity of every table written (one table: accepted / (units x seconds)); calls are
        counted per table (a BatchWriteItem to two tables is two)."""
        with self._lock:
            span = (self.last - self.first) if self.first is not None and self.last is not None else 0.0
            hot = self.throttled_keys.most_common(3)
            whole = self.units * span * max(1, len(self.tables))
            accepted, throttled = self.accepted_items, self.throttled_items
            return {
                "units": self.units, "partitions": self.partitions, "declared": self.declared,
                "seconds": round(span, 3),
                "accepted_units": round(self.accepted_units, 1), "accepted_items": accepted,
                "throttled_items": throttled, "refused_calls": self.refused_calls,
                "write_calls": self.write_calls, "throttled_calls": self.throttled_calls,
                "throttled_call_share": round(self.throttled_calls / max(1, self.write_calls), 4),
                "efficiency": round(self.accepted_units / whole, 3) if span > 0 else None,
                "throttled_share": round(throttled / max(1, throttled + accepted), 4),
                "hot_keys": [{"table": t, "index": i, "attribute": a, "value": v, "throttled": n}
                             for (t, i, a, v), n in hot],
                "tables": {t: {"accepted_units": round(u, 1), "accepted_items": int(ok), "throttled_items": int(no),
                               "efficiency": round(u / (self.units * span), 3) if span > 0 else None}
                           for t, (u, ok, no) in self.tables.items()},
            }


def _text(v: Any) -> str:
    if isinstance(v, dict) and len(v) == 1:
        return str(next(iter(v.values())))
    return str(v)
