"""What sources, the processing step and sinks exchange: records, chunks, write ops, results.

A source yields :class:`Chunk` s (records plus the position to resume from once they are
written); the processing step turns records into :class:`Op` s (full-image puts and deletes,
invariant 3 of DESIGN.md); a sink acknowledges them with a :class:`BatchResult`. These types
carry items in DynamoDB's wire format (``{"S": ...}``), encoded once as JSON bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import orjson

from .items import WireItem

PUT = 0
DELETE = 1
MAX_BATCH_OPS = 25
MAX_BATCH_BYTES = 16 * 1024 * 1024 - 64 * 1024  # headroom for the request envelope

COUNTER_NAMES = (
    "read",  # records read from the source
    "out",  # records after the transform (fan-out and drops applied)
    "written",  # acknowledged by the sink
    "deleted",  # acknowledged deletes (clean, incremental import, replicate)
    "dead_lettered",
    "collapsed",  # duplicate keys inside one batch, last one kept
    "skipped_existing",  # --mode skip-existing
    "dropped",  # transform returned None / []
    "transform_errors",
    "fanout_extra",  # outputs beyond the first for one source record
)


class Op:
    """One write: put of a full item, or delete of a key. ``enc`` is the item's JSON.

    Ops made on the hot path keep only ``enc``; ``item`` decodes it on first access, so a sink
    may read either, and a chunk waiting in the queue costs its bytes, not its Python objects.
    """

    __slots__ = ("kind", "_item", "enc", "key", "origin", "source_key")

    def __init__(self, kind: int, item: Optional[WireItem], enc: bytes, key: Any, origin: Any = None,
                 source_key: Any = None) -> None:
        self.kind = kind
        self._item = item
        self.enc = enc
        self.key = key
        self.origin = origin
        self.source_key = source_key

    @property
    def item(self) -> WireItem:
        if self._item is None:
            self._item = orjson.loads(self.enc)
        return self._item

    def wire(self) -> WireItem:
        """The item as a dict (same as ``item``)."""
        return self.item


@dataclass
class Chunk:
    """What a source yields: records, and the position to resume from once they are written.

    ``items`` are puts; ``ops`` (kind, image) pairs allow deletes (incremental files, streams).
    ``rejects`` are records the source could not parse: (raw text, reason, origin).
    ``origins`` optionally names each item's place (file:line) for dead letters.
    """

    items: List[WireItem] = field(default_factory=list)
    position: Any = None
    ops: Optional[List[Tuple[int, WireItem]]] = None
    rejects: List[Tuple[str, str, str]] = field(default_factory=list)
    origins: Optional[List[str]] = None
    done: bool = False  # the unit has no more data after this chunk
    consumed: float = 0.0
    raw: Optional[List[bytes]] = None  # items as their JSON bytes (lazy): parsed only if needed
    # Beside ``items``: each item's JSON as read, when the source has it exactly (else None),
    # so an item written unchanged is not encoded again.
    encs: Optional[List[Optional[bytes]]] = None
    # Records the source read and resolved itself, counted with this chunk's ticket (an
    # incremental import counts the superseded versions of a key as read + collapsed).
    counts: Optional[Dict[str, int]] = None


@dataclass
class BatchResult:
    written: int = 0
    deleted: int = 0
    skipped_existing: int = 0
    # Counters of the sink's own outcomes, beside the three above (an in-place update's
    # "unchanged", "retried_races", "vanished"); committed with the batch's ticket like them.
    counts: Dict[str, int] = field(default_factory=dict)
    # ops the sink refused item by item (dead-lettered by the pipeline with the reason)
    rejected: List[Tuple[Op, str, str]] = field(default_factory=list)
