"""The stream Source of a replication and its change mapping: stream records -> full-image writes.

    StreamReader (sources.stream) ──pages──▶ ChangeMapper ──ops──▶ StreamChangeSource ──chunks──▶ pipeline
    one page of every ready shard per round       per source key       waits for every ack before the next round

Change mapping (full images only, so any replay is harmless)::

    INSERT / MODIFY  -> put transform(NewImage)
    REMOVE           -> delete every target key derived from transform(OldImage)
    MODIFY re-keyed  -> also delete the derived keys of the old image that the new one lacks

Invariants:
1. Per-key order: one shard is read one GetRecords page at a time, and the next page of any shard
   is read only after every write of the previous round was acknowledged. Within a page, the
   records of one source key collapse into one net change: delete the keys derived from *every*
   image seen (the backfill may have copied any of them) that the final image does not derive,
   then put the final image's items (or nothing, for a REMOVE).
2. The per-shard position a chunk carries covers only its own page and the pages yielded before
   it, so the checkpoint only moves past a page when the target acknowledged its writes (the
   pipeline's tickets); a crash replays at most the unacknowledged pages.
3. A stream that can no longer serve the checkpoint (trimmed, disabled, older than 24 h) stops the
   replication with ResyncNeededError; nothing is skipped silently.

The transform must give each source item its own target keys (no two source items may derive
the same target key), as for any replicated re-modelling.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple

import orjson

from ..core.items import KeySchema, WireItem
from ..core.processing import Processing, Processor
from ..core.protocols import SourceBase
from ..core.records import DELETE, PUT, Chunk
from ..core.transform import Transform, TransformContext
from ..errors import FatalError, ResyncNeededError, TransformError
from ..state.crashpoints import crash_point
from .stream import (
    RETENTION_MARGIN,
    RETENTION_SECONDS,
    Page,
    StreamReader,
    approx_time,
    fix_image,
)

if TYPE_CHECKING:  # a type only: a source does not depend on the engine that runs it
    from ..engine.pipeline import Pipeline

# An ENABLED stream whose shards are all closed has children coming; after this long, it ended.
STREAM_END_GRACE = 120.0
UNIT = "stream"


# --------------------------------------------------------------------------- change mapping


def is_ttl_delete(record: Dict[str, Any]) -> bool:
    """A REMOVE made by DynamoDB's TTL expiry: its ``userIdentity`` is the DynamoDB service."""
    ident = record.get("userIdentity") or {}
    kind = ident.get("Type") or ident.get("type")
    principal = ident.get("PrincipalId") or ident.get("principalId")
    return kind == "Service" and principal == "dynamodb.amazonaws.com"


class ChangeMapper:
    """Stream records of one page -> write operations (see the module docstring, invariant 1)."""

    def __init__(self, transform: Optional[Transform], source_keys: KeySchema, target_keys: KeySchema, *,
                 on_error: str = "fail", context: Optional[TransformContext] = None,
                 skip_ttl_deletes: bool = False) -> None:
        self.tf = transform
        self.skip_ttl_deletes = skip_ttl_deletes
        self.skeys = source_keys
        self.tkeys = target_keys
        self.on_error = on_error
        self.ctx = context or TransformContext()
        # The pipeline's own processing step: a change derives exactly the items a backfill writes.
        self.step = Processor(Processing(key_schema=None, transform=transform, context=self.ctx))
        # Without a transform and with the same key, a record's Keys are the target key.
        self.simple = transform is None and source_keys == target_keys
        self.counts: Dict[str, int] = {"records": 0, "inserts": 0, "modifies": 0, "removes": 0,
                                       "skipped_before_start": 0, "collapsed_records": 0, "ttl_deletes": 0,
                                       "ttl_deletes_skipped": 0}

    @property
    def needs_old_images(self) -> bool:
        return not self.simple

    def _apply(self, image: WireItem) -> List[WireItem]:
        return self.step.apply(image, self.ctx)

    def map(self, shard_id: str, records: List[Dict[str, Any]], skip_before: Optional[float] = None,
            ) -> Tuple[List[Tuple[int, WireItem]], List[Tuple[str, str, str]]]:
        """Ops (kind, image) and rejects (raw, reason, origin) for one page of one shard."""
        groups: Dict[Any, List[Dict[str, Any]]] = {}
        c = self.counts
        for r in records:
            d = r.get("dynamodb") or {}
            c["records"] += 1
            if skip_before is not None:
                t = approx_time(r)
                if t is not None and t < skip_before:
                    c["skipped_before_start"] += 1
                    continue
            name = r.get("eventName")
            if name == "REMOVE" and is_ttl_delete(r):
                if self.skip_ttl_deletes:
                    c["ttl_deletes_skipped"] += 1  # --skip-ttl-deletes: the target keeps its copy
                    continue
                c["ttl_deletes"] += 1
            c["inserts" if name == "INSERT" else "modifies" if name == "MODIFY" else "removes"] += 1
            groups.setdefault(self.skeys.key(d["Keys"]), []).append(r)
        ops: List[Tuple[int, WireItem]] = []
        rejects: List[Tuple[str, str, str]] = []
        for recs in groups.values():
            c["collapsed_records"] += len(recs) - 1
            self._group(shard_id, recs, ops, rejects)
        return ops, rejects

    def _group(self, shard_id: str, recs: List[Dict[str, Any]], ops: List[Tuple[int, WireItem]],
               rejects: List[Tuple[str, str, str]]) -> None:
        first, last = recs[0]["dynamodb"], recs[-1]["dynamodb"]
        removed = recs[-1].get("eventName") == "REMOVE"
        final = None if removed else fix_image(last.get("NewImage"))
        origin = f"shard {shard_id} seq {last.get('SequenceNumber')}"
        if not removed and final is None:
            raise FatalError(f"stream record without NewImage ({origin}): the stream must carry new images",
                             code="StreamViewType")
        if self.simple:
            ops.append((PUT, final) if final is not None else (DELETE, dict(last["Keys"])))
            return
        # Every image this source item had since the previous page: the backfill (or an earlier
        # page) may have written the items derived from any of them.
        if recs[0].get("eventName") != "INSERT" and first.get("OldImage") is None:
            raise FatalError(f"stream record without OldImage ({origin}): deleting derived items needs "
                             "a NEW_AND_OLD_IMAGES stream", code="StreamViewType")
        images: Dict[bytes, WireItem] = {}
        for i, r in enumerate(recs):
            d = r["dynamodb"]
            # Old images of every record (they chain, but a gap must not leave a stale item) and
            # the new images of all but the last, each transformed once.
            for img in (d.get("OldImage"), d.get("NewImage") if i < len(recs) - 1 else None):
                fixed = fix_image(img)
                if fixed is not None:
                    images.setdefault(orjson.dumps(fixed, option=orjson.OPT_SORT_KEYS), fixed)
        try:
            outs = self._apply(final) if final is not None else []
        except TransformError as e:
            self._reject(e, last, origin, rejects, "transform of the new image failed")
            return
        tk = self.tkeys
        keep = {tk.key(o) for o in outs if tk.problem(o) is None}
        stale: Dict[Any, WireItem] = {}
        for img in images.values():
            try:
                derived = self._apply(img)
            except TransformError as e:
                self._reject(e, last, origin, rejects, "cannot derive the target keys of an earlier image "
                             "to delete them")
                continue
            for o in derived:
                if tk.problem(o) is not None:
                    continue  # never writable, so never written
                k = tk.key(o)
                if k not in keep and k not in stale:
                    stale[k] = tk.project(o)
        ops.extend((DELETE, k) for k in stale.values())
        ops.extend((PUT, o) for o in outs)

    def _reject(self, e: TransformError, rec: Dict[str, Any], origin: str, rejects: List[Tuple[str, str, str]],
                what: str) -> None:
        key = orjson.dumps(rec.get("Keys")).decode()
        if self.on_error == "fail":
            raise TransformError(f"{what}: {e.message} (source key {key}, {origin})", code=e.code) from e
        raw = orjson.dumps({"Keys": rec.get("Keys"), "SequenceNumber": rec.get("SequenceNumber"),
                            "NewImage": rec.get("NewImage"), "OldImage": rec.get("OldImage")}).decode()
        rejects.append((raw, f"{what}: {e.message}", origin))


# --------------------------------------------------------------------------- stream source


class StreamChangeSource(SourceBase):
    """The pipeline Source of the replay/tail phase: one unit, shards read round by round.

    Position of the unit: ``{"shards": {shard: position}, "alive_at": epoch s}``. Each page is one
    chunk; before the next round the source waits until the pipeline acknowledged every chunk
    it yielded (invariants 1 and 2).
    """

    def __init__(self, reader: StreamReader, mapper: ChangeMapper, *, start: Dict[str, Any],
                 skip_before: Optional[float], stop_event: Optional[threading.Event] = None,
                 deadline: Optional[float] = None, stop_after_idle: Optional[float] = None,
                 poll_interval: float = 0.5, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, table: str = "", shard_readers: int = 8) -> None:
        self.reader = reader
        self.shard_readers = shard_readers
        self._pool: Optional[ThreadPoolExecutor] = None
        self._ended_since: Optional[float] = None
        self.mapper = mapper
        self.start = start
        self.skip_before = skip_before
        self.stop_event = stop_event
        self.deadline = deadline
        self.stop_after_idle = stop_after_idle
        self.poll_interval = poll_interval
        self.clock = clock
        self.sleep = sleep
        self.table = table
        self.pipeline: Optional[Pipeline] = None
        self._lock = threading.Lock()
        # Metrics for lag and status (written by the reader thread, read by the status thread).
        self.records_read = 0
        self.records_acked = 0
        self.last_applied_time: Optional[float] = None  # ApproximateCreationDateTime
        self.newest_record_time: Optional[float] = None
        self.last_change_at: Optional[float] = None  # wall time of the last non-empty page
        self.caught_up = False
        self.caught_up_since: Optional[float] = None
        self.rounds = 0
        self.stopped_by: Optional[str] = None

    def units(self) -> List[str]:
        return [UNIT]

    def attach(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    # ------------------------------------------------------------------ metrics

    def lag_seconds(self) -> float:
        """0 when caught up; else how far the last applied change is behind now."""
        if self.caught_up and self.records_read == self.records_acked:
            return 0.0
        ref = self.last_applied_time
        if ref is None:
            ref = self.newest_record_time
        if ref is None:
            return 0.0
        return max(0.0, round(self.clock() - ref, 1))

    def metrics(self) -> Dict[str, Any]:
        return {
            "lag_seconds": self.lag_seconds(),
            "pending_records": max(0, self.records_read - self.records_acked),
            "caught_up": self.caught_up and self.records_read == self.records_acked,
            "last_change_at": self.last_change_at,
            "newest_record_at": self.newest_record_time,
            "idle_seconds": round(self.clock() - self.caught_up_since, 1) if self.caught_up_since else 0.0,
            "shards_open": len(self.reader.ready_shards()),
            "shards_waiting": len(self.reader.waiting_shards()),
            "shards_finished": sum(1 for p in list(self.reader.positions.values()) if p.get("done")),
            "iterator_renewals": self.reader.iterator_renewals,
            **self.mapper.counts,
        }

    def progress_fields(self) -> Dict[str, Any]:
        return {"done": self.records_acked, "lag_s": self.lag_seconds(), "status": "caught up" if self.caught_up else "replaying"}

    # ------------------------------------------------------------------ reading

    def _stop_now(self, stop: threading.Event) -> bool:
        if stop.is_set():
            self.stopped_by = self.stopped_by or "interrupt"
            return True
        if self.stop_event is not None and self.stop_event.is_set():
            self.stopped_by = "stop requested"
            return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.stopped_by = "max runtime"
            return True
        if (self.stop_after_idle is not None and self.caught_up_since is not None
                and self.clock() - self.caught_up_since >= self.stop_after_idle):
            self.stopped_by = "idle"
            return True
        return False

    def _wait_acked(self, stop: threading.Event) -> bool:
        p = self.pipeline
        if p is None:
            return True
        st = p.units[UNIT]
        while True:
            with st.lock:
                if not st.pending:
                    return True
            if p.abort.is_set() or stop.is_set():
                return False
            time.sleep(0.003)

    def _read_round(self, ready: List[str]) -> List[Page]:
        """One page of every ready shard; several shards are fetched concurrently."""
        if len(ready) <= 1 or self.shard_readers <= 1:
            return [self.reader.read_page(sid) for sid in ready]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.shard_readers, thread_name_prefix="shard")
        return list(self._pool.map(self.reader.read_page, ready))

    def read(self, unit: str, position: Any, stop: threading.Event) -> Iterator[Chunk]:
        try:
            yield from self._read(position, stop)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def _read(self, position: Any, stop: threading.Event) -> Iterator[Chunk]:
        state = position or self.start
        alive_at = float(state.get("alive_at") or self.clock())
        if self.clock() - alive_at > RETENTION_SECONDS - RETENTION_MARGIN:
            raise ResyncNeededError(
                f"resync needed: the replication checkpoint is from {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(alive_at))}, "
                "older than the stream's 24 h retention, so changes may have been trimmed", table=self.table,
                code="CheckpointTooOld")
        self.reader.load(state.get("shards") or {})
        # Records older than the start (minus the skew margin) were seen by the backfill's scan.
        skip_before = self.skip_before
        last_yield = 0.0
        while not self._stop_now(stop):
            round_start = self.clock()
            self.reader.refresh()
            ready = self.reader.ready_shards()
            if not ready and not self.reader.waiting_shards() and self.reader.all_finished():
                self._stream_ended()
            else:
                self._ended_since = None
            got = 0
            pending_acks: List[Tuple[int, Optional[float]]] = []
            # Each chunk's position covers only its own page and the pages yielded before it, so
            # a checkpoint never includes a page that is not acknowledged yet.
            positions = self.reader.snapshot()
            for page in self._read_round(ready):
                if stop.is_set():
                    return
                sid = page.shard_id
                positions[sid] = dict(page.position)
                ops, rejects = self.mapper.map(sid, page.records, skip_before)
                n = len(page.records)
                got += n
                newest = approx_time(page.records[-1]) if page.records else None
                if n:
                    with self._lock:
                        self.records_read += n
                        if newest is not None:
                            self.newest_record_time = max(self.newest_record_time or 0.0, newest)
                    self.last_change_at = self.clock()
                    pending_acks.append((n, newest))
                if n or page.finished or self.clock() - last_yield > 5.0:
                    last_yield = self.clock()
                    yield Chunk(ops=ops, rejects=rejects,
                                position={"shards": {k: dict(v) for k, v in positions.items()}, "alive_at": round_start})
                    if stop.is_set():
                        return
            if not self._wait_acked(stop):
                return
            crash_point("after_stream_write")  # acknowledged, not yet checkpointed (kill -9 tests)
            with self._lock:
                for n, newest in pending_acks:
                    self.records_acked += n
                    if newest is not None:
                        self.last_applied_time = newest
            self.rounds += 1
            caught = got == 0 and self.reader.caught_up()
            if caught and not self.caught_up:
                self.caught_up_since = self.clock()
            if not caught:
                self.caught_up_since = None
            self.caught_up = caught
            if caught or not ready:
                self._idle_wait(stop)

    def _idle_wait(self, stop: threading.Event) -> None:
        end = time.monotonic() + self.poll_interval
        while time.monotonic() < end:
            if stop.is_set() or (self.stop_event is not None and self.stop_event.is_set()):
                return
            self.sleep(min(0.05, max(0.0, end - time.monotonic())))

    def _stream_ended(self) -> None:
        """Every shard is finished: the stream was disabled, or children of a split are not listed yet."""
        self.reader.refresh(force=True)
        if self.reader.ready_shards() or self.reader.waiting_shards():
            return
        status = self.reader.status
        now = self.clock()
        if status == "ENABLED":
            # DescribeStream may list a closed shard's children a little later: wait for them.
            if self._ended_since is None:
                self._ended_since = now
            if now - self._ended_since < STREAM_END_GRACE:
                return
        raise ResyncNeededError(
            f"the stream of {self.table} has ended (status {status}): the stream was disabled, so changes made "
            "since then are not recorded", table=self.table, code="StreamDisabled")


__all__ = ["ChangeMapper", "STREAM_END_GRACE", "StreamChangeSource", "UNIT", "is_ttl_delete"]
