"""Sample data: deterministic items of every DynamoDB type, as a Source (:class:`GeneratedSource`).

Used by the demo, the tests and the benchmarks (``jobs/seed.py`` writes them into a table).
"""

from __future__ import annotations

import base64
import random
import threading
from typing import Any, Iterator, List, Optional

from ..core.items import WireItem
from ..core.protocols import SourceBase
from ..core.records import Chunk

_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
          "kilo", "lima", "mike", "november", "oscar", "papa", "québec", "romeo", "sierra", "tango", "ünïcødé")


def sample_item(i: int, *, size: int = 1000, hash_name: str = "pk", range_name: Optional[str] = None) -> WireItem:
    """Item number ``i``: every type, about ``size`` bytes, the same for the same ``i``."""
    r = random.Random(i)
    item: WireItem = {
        hash_name: {"S": f"user#{i:09d}"},
        "name": {"S": " ".join(r.choice(_WORDS) for _ in range(3))},
        "age": {"N": str(r.randint(0, 120))},
        "balance": {"N": f"{r.randint(-10**12, 10**12)}.{r.randint(0, 99):02d}"},
        "big": {"N": "1234567890123456789012345678901234567" + str(i % 10)},
        "active": {"BOOL": bool(i % 2)},
        "nothing": {"NULL": True},
        "tags": {"SS": sorted({r.choice(_WORDS) for _ in range(3)})},
        "scores": {"NS": sorted({str(r.randint(0, 1000)) for _ in range(3)}, key=int)},
        "blob": {"B": base64.b64encode(r.randbytes(16)).decode()},
        "blobs": {"BS": sorted({base64.b64encode(r.randbytes(4)).decode() for _ in range(2)})},
        "address": {"M": {"city": {"S": r.choice(_WORDS)}, "zip": {"N": str(r.randint(10000, 99999))},
                          "geo": {"M": {"lat": {"N": "52.52"}, "lon": {"N": "-13.405"}}}}},
        "history": {"L": [{"S": "created"}, {"N": str(i)}, {"BOOL": False}, {"NULL": True}]},
        "empty": {"S": ""},
    }
    if range_name:
        item[range_name] = {"N": str(i % 7)}
    pad = size - 600
    if pad > 0:
        item["payload"] = {"S": "x" * pad}
    return item


class GeneratedSource(SourceBase):
    """``count`` sample items split into units of ``per_unit`` items."""

    def __init__(self, count: int, *, size: int = 1000, per_unit: int = 5000, page: int = 500,
                 hash_name: str = "pk", range_name: Optional[str] = None, start: int = 0) -> None:
        self.count, self.size, self.per_unit, self.page = count, size, per_unit, page
        self.hash_name, self.range_name, self.start = hash_name, range_name, start

    def units(self) -> List[str]:
        return [str(u) for u in range(0, self.count, self.per_unit)]

    def read(self, unit: str, position: Any, stop: threading.Event) -> Iterator[Chunk]:
        lo = int(unit)
        hi = min(self.count, lo + self.per_unit)
        i = int(position) if position is not None else lo
        while i < hi and not stop.is_set():
            j = min(hi, i + self.page)
            items = [sample_item(self.start + k, size=self.size, hash_name=self.hash_name,
                                 range_name=self.range_name) for k in range(i, j)]
            yield Chunk(items=items, position=j, done=j >= hi)
            i = j
