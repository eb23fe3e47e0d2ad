"""Stream -> journal -> target: the two halves of a replication that can outlast the stream's 24 h.

    JournalWriter (its own threads, from the recorded positions on, during every phase)
        dispatcher ──ready shard──▶ ≤ N shard readers ──page──▶ Journal.append ──seal──▶ segments
    JournalSource (the pipeline Source of the apply phase, after the backfill)
        sealed segments ──records, in order──▶ ChangeMapper ──chunks──▶ pipeline ──acks──▶ checkpoint

Parallel shards: independent lineages are read at the same time by at most ``readers`` threads;
a shard is read by one reader at a time (DynamoDB allows two per shard), and a child shard only
once its parent's last page is in the journal. Within a shard, pages are appended in order.

Invariants:
1. Per-key order: a key lives in one shard at a time, and moves only from a parent to a child;
   the journal holds a shard's pages in order and a parent's before its children's, and the
   applier applies the journal in order, one chunk after the previous one was acknowledged.
2. The applier's checkpoint position ``{"segment": k, "offset": j}`` only moves past records whose
   writes the target acknowledged (the pipeline's tickets); segments are deleted only once the
   *saved* checkpoint is past them.
3. The journal's positions are checkpointed only with the sealed segment they cover
   (:mod:`ddbmigrate.state.journal`, invariant 1): a kill -9 anywhere loses nothing and reorders
   nothing; records after the last sealed segment are read from the stream again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Optional,
    Tuple,
)

from ..core.protocols import SourceBase
from ..core.records import Chunk
from ..errors import DdbMigrateError, ResyncNeededError
from ..state.crashpoints import crash_point
from ..state.journal import Journal, record_time
from .changes import STREAM_END_GRACE, ChangeMapper
from .stream import RETENTION_MARGIN, Page, StreamReader

if TYPE_CHECKING:
    from ..engine.pipeline import Pipeline

UNIT = "journal"
DEFAULT_SHARD_READERS = 8
# A poll of a caught-up shard answers in well under a second; one still under way after this
# long is being retried (the Streams endpoint failing): the stream is no longer known caught up.
STALLED_READ_SECONDS = 5.0


class JournalWriter:
    """Reads every shard of the stream into the journal, lineage by lineage, until stopped."""

    def __init__(self, reader: StreamReader, journal: Journal, *, readers: int = DEFAULT_SHARD_READERS,
                 poll_interval: float = 0.5, clock: Callable[[], float] = time.time, table: str = "",
                 retention: Optional[float] = None) -> None:
        if readers < 1:
            raise ValueError("readers must be >= 1")
        self.reader = reader
        self.journal = journal
        self.readers = readers
        self.poll_interval = poll_interval
        self.clock = clock
        self.table = table
        self.retention = retention if retention is not None else reader.retention
        self.error: Optional[BaseException] = None
        self.records_read: Dict[str, int] = {"INSERT": 0, "MODIFY": 0, "REMOVE": 0}
        self.caught_up = False
        self.max_concurrent = 0  # most shards read at once (tests, bench)
        self._busy_since: Dict[str, float] = {}  # the shards being read, and since when
        self._not_before: Dict[str, float] = {}
        self._last_empty: Dict[str, bool] = {}
        self._turn: Dict[str, int] = {}  # when each shard was last dispatched: round robin over shards
        self._turns = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._ended_since: Optional[float] = None
        self._refresh_now = True

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Continue from the journal's positions (checked against the stream's retention first)."""
        alive_at = self.journal.alive_at or self.clock()
        margin = min(RETENTION_MARGIN, self.retention / 4)
        if self.clock() - alive_at > self.retention - margin:
            raise ResyncNeededError(
                f"resync needed: the journal's stream positions are from "
                f"{time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(alive_at))}, older than the stream's retention, "
                "so changes may have been trimmed", table=self.table, code="CheckpointTooOld")
        self.reader.load(self.journal.positions, saved_ago=self.clock() - alive_at)
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading; what was read is sealed (so a resume re-reads nothing it does not need to)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def check(self) -> None:
        """Raise the writer's error, if it failed (the applier and the backfill call this)."""
        if self.error is not None:
            raise self.error

    # ------------------------------------------------------------------ the dispatcher

    def _run(self) -> None:
        pool = ThreadPoolExecutor(max_workers=self.readers, thread_name_prefix="shard")
        futures: List[Future[None]] = []
        try:
            while not self._stop.is_set():
                self._dispatch(pool, futures)
                if self.journal.seal_due():
                    self.journal.seal()
                with self._cond:
                    self._cond.wait(timeout=min(0.05, self.poll_interval or 0.05))
                for f in futures:
                    err = f.exception() if f.done() else None
                    if err is not None:
                        raise err
                futures = [f for f in futures if not f.done()]
        except BaseException as e:
            self.error = e
        finally:
            pool.shutdown(wait=True)
            for f in futures:
                err = f.exception() if f.done() else None
                if err is not None and self.error is None:
                    self.error = err
            try:
                self.journal.seal()  # what was appended is kept (a stop, or another shard's failure)
            except BaseException as e:
                if self.error is None:
                    self.error = e

    def _dispatch(self, pool: ThreadPoolExecutor, futures: List[Future[None]]) -> None:
        now = self.clock()
        if self._refresh_now:
            self._refresh_now = False
            self.reader.refresh(force=True)
        else:
            self.reader.refresh()
        for sid, pos in list(self.reader.positions.items()):
            self.journal.set_position(sid, pos)  # shards learnt from DescribeStream
        if self.reader.forgotten:
            gone, self.reader.forgotten = self.reader.forgotten, []
            self.journal.forget(gone)
            for sid in gone:
                self._turn.pop(sid, None)
                self._not_before.pop(sid, None)
                self._last_empty.pop(sid, None)
        ready = self.reader.ready_shards()
        with self._cond:
            busy = set(self._busy_since)
        if not ready and not busy and not self.reader.waiting_shards() and self.reader.all_finished():
            self._stream_ended()
        else:
            self._ended_since = None
        # Caught up: every readable shard's last read was empty (a poll in flight does not count
        # against it: a record it finds makes its shard non-empty again; one stalled does: the
        # stream then takes changes nobody reads) and nothing is unsealed.
        self.caught_up = (not self.reader.waiting_shards() and bool(ready) and self.stalled_since() is None
                          and all(self._last_empty.get(s, False) for s in ready)
                          and self.journal.buffered_bytes() == 0)
        # Least recently read first, so a busy shard never starves the others of a reader.
        for sid in sorted(ready, key=lambda x: self._turn.get(x, -1)):
            if len(busy) >= self.readers:
                break
            parent = self.reader.shards[sid].parent_id if sid in self.reader.shards else None
            # A parent being read may already look finished to the reader while its last page is
            # not in the journal yet: its children wait for it (invariant 1).
            if sid in busy or (parent is not None and parent in busy) or self._not_before.get(sid, 0.0) > now:
                continue
            busy.add(sid)
            self._turns += 1
            self._turn[sid] = self._turns
            with self._cond:
                self._busy_since[sid] = now
                self.max_concurrent = max(self.max_concurrent, len(self._busy_since))
            futures.append(pool.submit(self._read_shard, sid))

    def _read_shard(self, sid: str) -> None:
        try:
            if self._stop.is_set():
                return
            page: Page = self.reader.read_page(sid)
            read_at = self.clock()
            self.journal.append(sid, page.records, page.position, read_at)
            for r in page.records:
                name = str(r.get("eventName"))
                self.records_read[name] = self.records_read.get(name, 0) + 1
            empty = not page.records and not page.finished
            self._last_empty[sid] = empty
            if empty:
                self._not_before[sid] = self.clock() + self.poll_interval
            elif len(page.records) < self.reader.page_limit and not page.finished:
                # A partial page: the shard is nearly caught up. A short pause keeps each shard
                # under DynamoDB's 5 GetRecords per second; a full page is followed at once.
                self._not_before[sid] = self.clock() + min(self.poll_interval, 0.2)
            if page.finished:
                self._refresh_now = True  # its children may be listed now
        finally:
            with self._cond:
                self._busy_since.pop(sid, None)
                self._cond.notify_all()

    def stalled_since(self) -> Optional[float]:
        """When the oldest poll still under way after STALLED_READ_SECONDS started (the changes
        made since may be unread), or None."""
        now = self.clock()
        with self._cond:
            old = [t for t in self._busy_since.values() if now - t > STALLED_READ_SECONDS]
        return min(old) if old else None

    def _stream_ended(self) -> None:
        """Every shard is finished: children of a split not listed yet, or the stream was disabled."""
        self.reader.refresh(force=True)
        if self.reader.ready_shards() or self.reader.waiting_shards():
            return
        now = self.clock()
        if self.reader.status == "ENABLED":
            if self._ended_since is None:
                self._ended_since = now
            if now - self._ended_since < STREAM_END_GRACE:
                return
        raise ResyncNeededError(
            f"resync needed: the stream of {self.table} has ended (status {self.reader.status}): the stream was "
            "disabled, so changes made since then are not recorded", table=self.table, code="StreamDisabled")

    # ------------------------------------------------------------------ figures

    def shard_counts(self) -> Dict[str, int]:
        positions = list(self.reader.positions.values())
        return {"shards_open": len(self.reader.ready_shards()), "shards_waiting": len(self.reader.waiting_shards()),
                "shards_finished": sum(1 for p in positions if p.get("done")), "shards_reading": len(self._busy_since)}


class JournalSource(SourceBase):
    """The pipeline Source of the apply phase: the journal's records, in order, as chunks.

    One unit; position ``{"segment": k, "offset": j}``. Each chunk holds up to ``chunk_records``
    records (collapsed per key by the mapper); the next chunk is made only once the pipeline
    acknowledged the previous one (invariant 1).
    """

    def __init__(self, journal: Journal, writer: JournalWriter, mapper: ChangeMapper, *,
                 skip_before: Optional[float], persisted: Callable[[], Optional[Dict[str, Any]]],
                 stop_event: Optional[threading.Event] = None, deadline: Optional[float] = None,
                 stop_after_idle: Optional[float] = None, poll_interval: float = 0.5,
                 chunk_records: int = 1000, clock: Callable[[], float] = time.time) -> None:
        self.journal = journal
        self.writer = writer
        self.mapper = mapper
        self.skip_before = skip_before
        self.persisted = persisted
        self.stop_event = stop_event
        self.deadline = deadline
        self.stop_after_idle = stop_after_idle
        self.poll_interval = poll_interval
        self.chunk_records = chunk_records
        self.clock = clock
        self.pipeline: Optional[Pipeline] = None
        self.position: Dict[str, int] = {"segment": journal.first, "offset": 0}  # acknowledged
        self.records_applied = 0
        self.in_flight = 0
        self.in_flight_since: Optional[float] = None  # the oldest change in flight
        self.last_applied_time: Optional[float] = None
        self.caught_up = False
        self.caught_up_since: Optional[float] = None
        self.stopped_by: Optional[str] = None
        self._pruned_at = 0.0

    def units(self) -> List[str]:
        return [UNIT]

    def attach(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    # ------------------------------------------------------------------ figures

    def backlog(self) -> Dict[str, Any]:
        pos = dict(self.position)
        return self.journal.backlog(int(pos["segment"]), int(pos["offset"]))

    def lag_seconds(self) -> float:
        """0 when everything read from the stream is applied; else how old the oldest unapplied change is."""
        b = self.backlog()
        # A stall first: the writer's caught_up may be from before it, its DescribeStream stuck
        # in the same outage (retried for minutes) before it could say otherwise.
        stalled = self.writer.stalled_since()
        if b["records"] == 0 and self.writer.caught_up and stalled is None:
            return 0.0
        oldest = self.in_flight_since
        if oldest is None:
            oldest = self.journal.oldest_time(int(self.position["segment"]))
        if stalled is not None:
            # A stalled read: what the source took since it began is unread, however old (a lag of
            # 0 let `status --max-lag` pass through a Streams outage).
            oldest = stalled if oldest is None else min(oldest, stalled)
        if oldest is None:
            return 0.0
        return max(0.0, round(self.clock() - oldest, 1))

    def metrics(self) -> Dict[str, Any]:
        b = self.backlog()
        caught = self.caught_up and b["records"] == 0
        return {
            "lag_seconds": self.lag_seconds(), "pending_records": b["records"], "caught_up": caught,
            "journal": {"location": self.journal.location, "backlog_records": b["records"],
                        "bytes": b["bytes"], "segments": b["segments"]},
            "idle_seconds": round(self.clock() - self.caught_up_since, 1) if self.caught_up_since else 0.0,
            "records_applied": self.records_applied, **self.writer.shard_counts(), **self.mapper.counts,
        }

    def progress_fields(self) -> Dict[str, Any]:
        b = self.backlog()
        return {"done": self.records_applied, "lag_s": self.lag_seconds(), "backlog": b["records"],
                "status": "caught up" if self.caught_up and not b["records"] else "replaying"}

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

    def prune(self, force: bool = False) -> None:
        """Delete segments the *saved* checkpoint is past (invariant 2)."""
        now = time.monotonic()
        if not force and now - self._pruned_at < 1.0:
            return
        self._pruned_at = now
        saved = self.persisted()
        if saved is not None:
            self.journal.delete_below(int(saved.get("segment", 0)))

    def read(self, unit: str, position: Any, stop: threading.Event) -> Iterator[Chunk]:
        pos = dict(position) if position else {"segment": self.journal.first, "offset": 0}
        self.position = {"segment": int(pos["segment"]), "offset": int(pos["offset"])}
        self.prune(force=True)
        loaded: Tuple[int, List[Dict[str, Any]]] = (-1, [])  # the one segment held in memory
        while not self._stop_now(stop):
            self.writer.check()
            # A chunk takes up to chunk_records records, across sealed segments: one round trip
            # to the target per chunk, however small the segments a tailing writer seals.
            seg, off = self.position["segment"], self.position["offset"]
            part: List[Dict[str, Any]] = []
            while len(part) < self.chunk_records and seg < self.journal.sealed_next():
                if loaded[0] != seg:
                    loaded = (seg, self.journal.read_segment(seg))
                lines = loaded[1]
                take = lines[off: off + self.chunk_records - len(part)]
                part.extend(take)
                off += len(take)
                if off >= len(lines):
                    seg, off = seg + 1, 0
            if not part:
                self.position = {"segment": seg, "offset": off}
                caught = self.writer.caught_up
                if caught and not self.caught_up:
                    self.caught_up_since = self.clock()
                if not caught:
                    self.caught_up_since = None
                self.caught_up = caught
                self.prune()
                self._idle_wait(stop)
                continue
            self.caught_up = False
            self.caught_up_since = None
            records = [x["r"] for x in part]
            self.in_flight = len(records)
            self.in_flight_since = record_time(records[0], float(part[0].get("t") or self.clock()))
            ops, rejects = self.mapper.map(f"{part[0].get('s')} (journal segment {self.position['segment']})",
                                           records, self.skip_before)
            nxt = {"segment": seg, "offset": off}
            yield Chunk(ops=ops, rejects=rejects, position=nxt)
            if stop.is_set() or not self._wait_acked(stop):
                return
            crash_point("after_stream_write")  # acknowledged, not yet checkpointed (kill -9 tests)
            self.records_applied += len(records)
            self.last_applied_time = record_time(records[-1], float(part[-1].get("t") or self.clock()))
            self.in_flight, self.in_flight_since = 0, None
            self.position = dict(nxt)
            if loaded[0] < seg:
                loaded = (-1, [])
            self.prune()

    def _idle_wait(self, stop: threading.Event) -> None:
        end = time.monotonic() + min(self.poll_interval, 0.1)
        while time.monotonic() < end:
            if stop.is_set() or (self.stop_event is not None and self.stop_event.is_set()):
                return
            time.sleep(0.01)


def run_guarded(fn: Callable[[], Any], writer: JournalWriter, cancel: threading.Event) -> Any:
    """Run ``fn`` (the backfill) while the writer journals; a writer failure cancels it and is raised."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            if writer.error is not None:
                cancel.set()
                return

    t = threading.Thread(target=watch, name="journal-watch", daemon=True)
    t.start()
    try:
        result = fn()
    except DdbMigrateError:
        writer.check()  # the journal's failure is the cause: say that
        raise
    finally:
        done.set()
        t.join()
    writer.check()
    return result


__all__ = ["DEFAULT_SHARD_READERS", "UNIT", "JournalSource", "JournalWriter", "run_guarded"]
