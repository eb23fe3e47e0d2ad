"""The one engine every job runs: Source -> (Transform, validate, batch) -> Sink.

    reader threads (one unit at a time: scan segment / file / shard)
        read a chunk (scan page, N file lines) -> transform -> validate -> encode -> batches
        └─ bounded queue of batches (backpressure) ─▶ writer threads -> Sink.write(batch)
                                                           └─ ack -> ticket -> unit position

Invariants:
1. A unit's checkpoint position only moves past a chunk when every batch of that chunk, and
   every chunk before it, has been acknowledged by the sink (tickets complete in order).
2. Every record read ends in exactly one place: written, skipped by a user rule (dropped by the
   transform, skipped-existing, collapsed duplicate), or dead-lettered with its reason.
   Counters are committed with their ticket, so a checkpoint's counters match its positions.
3. Memory is bounded by ``queue_batches`` x 25 items (at least 4 batches per writer for an
   ordered source) plus one chunk per reader.
4. A source with ``ordered = True`` (files) has its versions of one key written in source order:
   keyed batches go to one writer per key hash (see ``Pipeline.key_affine``).
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from queue import Empty, Full, Queue
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
)

from ..core.processing import Processing, Processor
from ..core.protocols import Sink, Source
from ..core.records import COUNTER_NAMES, MAX_BATCH_BYTES, BatchResult, Chunk, Op
from ..errors import FatalError, InterruptedError_, RetriableError
from ..state.crashpoints import pause_point
from ..state.deadletter import DeadLetters, dead_letter_line


class Ticket:
    """Outstanding work of one chunk; complete when every batch is acknowledged."""

    __slots__ = ("unit", "position", "remaining", "sealed", "counts", "done_unit", "dead")

    def __init__(self, unit: str, position: Any, done_unit: bool) -> None:
        self.unit = unit
        self.position = position
        self.remaining = 0
        self.sealed = False
        self.counts: Dict[str, int] = {}
        self.done_unit = done_unit
        # Dead-letter lines of this chunk: written when the ticket completes, with its counters,
        # so the file holds exactly the dead letters a checkpoint counts (a resume never repeats one).
        self.dead: List[Tuple[bytes, str]] = []

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


class Cut(NamedTuple):
    """One consistent instant of a pipeline: what a checkpoint saves."""

    positions: Dict[str, Any]
    done: List[str]
    counters: Dict[str, int]
    dead_mark: int  # the dead-letter sink's mark covering exactly these tickets


@dataclass
class Batch:
    ops: List[Op]
    ticket: Ticket
    nbytes: int
    lane: int = 0  # the writer queue it goes to (key-affine pipelines only)


class UnitRoundRobinQueue(Queue):  # type: ignore[type-arg]
    """A bounded queue of batches that hands them out one unit (segment, file) after the other.

    Within a unit the order is kept (first in, first out); across units it rotates, so the
    writers are spread over every unit that has something queued. ``None`` (a writer's stop
    sentinel) is handed out only when no batch is left, as in a plain queue where sentinels are
    put after the last batch.
    """

    def _init(self, maxsize: int) -> None:
        self._units: "Dict[Any, Deque[Batch]]" = {}
        self._turns: "Deque[Any]" = deque()  # units with batches, in the order they are served
        self._stops = 0
        self._n = 0

    def _qsize(self) -> int:
        return self._n

    def _put(self, item: Optional[Batch]) -> None:
        self._n += 1
        if item is None:
            self._stops += 1
            return
        unit = item.ticket.unit
        q = self._units.get(unit)
        if q is None:
            q = self._units[unit] = deque()
        if not q:
            self._turns.append(unit)
        q.append(item)

    def _get(self) -> Optional[Batch]:
        self._n -= 1
        if not self._turns:
            self._stops -= 1
            return None
        unit = self._turns.popleft()
        q = self._units[unit]
        b = q.popleft()
        if q:
            self._turns.append(unit)
        else:
            del self._units[unit]
        return b


@dataclass
class UnitState:
    position: Any = None
    done: bool = False
    pending: Deque[Ticket] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # monotonic times of this run's first read and of the unit's last acknowledgement (report only)
    started: Optional[float] = None
    finished: Optional[float] = None


class Counters:
    """Live counters (for progress) and committed counters (for checkpoints and reports)."""

    def __init__(self, initial: Optional[Dict[str, int]] = None) -> None:
        self._lock = threading.Lock()
        self.live: Dict[str, int] = {k: 0 for k in COUNTER_NAMES}
        self.committed: Dict[str, int] = {k: 0 for k in COUNTER_NAMES}
        for k, v in (initial or {}).items():
            self.live[k] = self.live.get(k, 0) + v
            self.committed[k] = self.committed.get(k, 0) + v

    def bump(self, counts: Dict[str, int]) -> None:
        with self._lock:
            for k, v in counts.items():
                self.live[k] = self.live.get(k, 0) + v

    def commit(self, counts: Dict[str, int]) -> None:
        with self._lock:
            for k, v in counts.items():
                self.committed[k] = self.committed.get(k, 0) + v

    def snapshot(self, committed: bool = False) -> Dict[str, int]:
        with self._lock:
            return dict(self.committed if committed else self.live)


# The code of the error that stops a job at --max-errors: its dead letters not yet settled are
# kept in the file (to be read), so its report says them too.
MAX_ERRORS = "MaxErrors"


class Pipeline:
    """Run a source into a sink with bounded queues, threads, tickets and cancellation."""

    def __init__(
        self,
        source: Source,
        sink: Sink,
        processing: Processing,
        *,
        readers: int = 4,
        writers: int = 8,
        queue_batches: Optional[int] = None,
        dead_letters: Optional[DeadLetters] = None,
        positions: Optional[Dict[str, Any]] = None,
        done_units: Sequence[str] = (),
        counters: Optional[Dict[str, int]] = None,
        on_checkpoint: Optional[Callable[["Pipeline", Dict[str, Any]], None]] = None,
        checkpoint_every: float = 2.0,
        drain_timeout: float = 60.0,
        crash_hook: Optional[Callable[[str], None]] = None,
        abandon_grace: float = 5.0,
    ) -> None:
        self.source = source
        self.sink = sink
        self.proc = processing
        self.readers = max(1, readers)
        self.writers = max(1, writers)
        # An ordered source (a file, read line by line) may hold one key several times, far
        # apart: the last version must win. Its batches then go by key hash to one queue per
        # writer, and a writer sends its batches one after the other (retries included), so
        # every version of a key is written in source order by the same writer. Other sources
        # (a scan holds each key once) share one queue, so no writer ever waits for a slow one.
        self.key_affine = source.ordered and processing.dedupe and processing.key_schema is not None
        self.keep_first = sink.first_write_wins
        self.processor = Processor(processing)
        lanes = self.writers if self.key_affine else 1
        depth = queue_batches or self.writers * 4
        # Each lane holds a few batches, so a reader blocked on one writer's retry back-off has
        # usually handed the other writers enough to go on with.
        # The shared queue deals batches out one unit after the other: the items of one scan page
        # sit close together in the hash space, so a first-in-first-out queue would have every
        # writer on the same few target partitions at once while the others idle.
        self.queues: "List[Queue[Optional[Batch]]]" = (
            [Queue(maxsize=max(4, -(-depth // lanes))) for _ in range(lanes)] if self.key_affine
            else [UnitRoundRobinQueue(maxsize=max(4, depth))])
        self.dead = dead_letters or DeadLetters(None)
        self.counters = Counters(counters)
        self.on_checkpoint = on_checkpoint
        self.checkpoint_every = checkpoint_every
        self.drain_timeout = drain_timeout
        # After an abort, threads still inside a request get this long before they are abandoned.
        self.abandon_grace = abandon_grace
        self._drain_deadline: Optional[float] = None
        self._abandon_at: Optional[float] = None
        # Held while a ticket moves a position and commits its counters, and while a checkpoint
        # snapshots them, so a saved checkpoint's counters match its positions exactly.
        self._commit_lock = threading.Lock()
        self.crash_hook = crash_hook or (lambda point: None)
        self.stop_reading = threading.Event()  # graceful: finish what is queued
        self.abort = threading.Event()  # fatal: stop everything now
        self.errors: List[BaseException] = []
        self._err_lock = threading.Lock()
        self.units: Dict[str, UnitState] = {}
        all_units = source.units()
        positions = positions or {}
        for u in all_units:
            self.units[u] = UnitState(position=positions.get(u), done=u in set(done_units))
        self.started = time.monotonic()
        self.finished: Optional[float] = None
        self.interrupted = False
        self._ckpt_lock = threading.Lock()
        self._dropped: List[Ticket] = []  # tickets abandoned before they were queued
        self._stopped_by_max_errors = False  # the unsettled dead letters are then kept (see run)
        self._paused = threading.Event()  # readers hold new chunks (a buffering sink commits)

    # ------------------------------------------------------------------ public

    def run(self) -> None:
        with _gc_tuned():
            self._run()

    def _run(self) -> None:
        todo = [u for u, st in self.units.items() if not st.done]
        work: "Queue[str]" = Queue()
        for u in todo:
            work.put(u)
        readers = [threading.Thread(target=self._reader, args=(work,), name=f"reader-{i}", daemon=True)
                   for i in range(min(self.readers, max(1, len(todo))))]
        writers = [threading.Thread(target=self._writer, args=(self.queues[i % len(self.queues)],),
                                    name=f"writer-{i}", daemon=True)
                   for i in range(self.writers)]
        for t in writers + readers:
            t.start()
        saver_stop = threading.Event()
        saver = threading.Thread(target=self._saver, args=(saver_stop,), name="checkpoint", daemon=True)
        saver.start()
        try:
            self._join_all(readers, drain=False)
            # Readers are done (or stopped): writers finish the queue, then see a sentinel each.
            for i in range(len(writers)):
                self._put_sentinel(self.queues[i % len(self.queues)])
            self._join_all(writers, drain=True)
        finally:
            saver_stop.set()
            saver.join()
            self.finished = time.monotonic()
            self.save_checkpoint()
            if self._stopped_by_max_errors:
                # Only then: after a Ctrl-C or a failure the file holds exactly what the report counts.
                self._keep_unsettled_dead_letters()
        # Stopped by the user while DynamoDB was out of reach: the retries that ran out while
        # draining are the stop's consequence, not the job's failure (exit 130, not 75). A fatal
        # error (access denied, a bad item) still wins.
        if self.errors and not (self.interrupted and isinstance(self.errors[0], RetriableError)):
            raise self.errors[0]
        if self.interrupted:
            raise InterruptedError_("interrupted; checkpoint saved")

    def _join_all(self, threads: List[threading.Thread], drain: bool) -> None:
        """Wait for threads; a first Ctrl-C stops reading, a second one (or the drain timeout) aborts.

        The drain deadline runs from the interrupt, for readers and writers alike (a reader can
        be stuck retrying a Scan through an outage too). Once aborted, threads still inside a
        request get ``abandon_grace`` seconds, then are abandoned: they are daemons, and whatever
        they acknowledge later can only move a position over writes DynamoDB acknowledged.
        """
        for t in threads:
            while t.is_alive():
                try:
                    t.join(0.2)
                except KeyboardInterrupt:
                    if self.stop_reading.is_set():
                        self.abort.set()
                    self.interrupt()
                now = time.monotonic()
                if self._drain_deadline is not None and now > self._drain_deadline:
                    self.abort.set()
                if self.abort.is_set():
                    if self._abandon_at is None:
                        self._abandon_at = now + self.abandon_grace
                    if now > self._abandon_at:
                        return

    def interrupt(self) -> None:
        """Graceful stop (Ctrl-C / SIGTERM): stop reading, let queued batches finish."""
        self.interrupted = True
        if self._drain_deadline is None:
            self._drain_deadline = time.monotonic() + self.drain_timeout
        self.stop_reading.set()

    @property
    def samples(self) -> List[Tuple[Any, Any]]:
        """The first ``processing.sample`` (before, after) pairs of a transform."""
        return self.processor.samples

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def save_checkpoint(self) -> None:
        if self.on_checkpoint is None:
            return
        final = self.finished is not None
        with self._ckpt_lock:
            if self.sink.buffers:
                # A buffering sink (files) commits everything it wrote, including writes of
                # chunks whose other batches are still queued: it may only commit when no chunk
                # is half-acknowledged, or a resume would write those items a second time.
                if not self.sink.commit_due(final):
                    return
                with self._quiesced(final) as quiet:
                    if quiet:
                        self._commit_and_save(final)
                return
            self._commit_and_save(final)

    def _commit_and_save(self, final: bool) -> None:
        # The sink makes everything it acknowledged durable, or asks to skip this save
        # (core/protocols.py, invariant 2).
        with self.sink.commit(final) as state:
            if state is not None:
                # No fsync of the dead letters here: one before the cut would miss the lines of
                # chunks completing between the two. The checkpoint's owner takes the cut first
                # and makes the dead letters it counts durable after it (engine/run.py, save).
                pause_point("checkpoint_window")
                assert self.on_checkpoint is not None
                self.on_checkpoint(self, state)

    @contextlib.contextmanager
    def _quiesced(self, final: bool) -> Iterator[bool]:
        """Readers hold their next chunk until every queued one is acknowledged; yields whether
        that happened (within ``drain_timeout``). At the end of a run nothing is waited for: a
        run that stopped with chunks in flight saves nothing more (its last save stands)."""
        if final:
            yield not self._any_pending()
            return
        self._paused.set()
        try:
            deadline = time.monotonic() + max(1.0, self.drain_timeout)
            while self._any_pending() and not self.abort.is_set() and time.monotonic() < deadline:
                time.sleep(0.005)
            yield not self._any_pending()
        finally:
            self._paused.clear()

    def _any_pending(self) -> bool:
        for st in self.units.values():
            with st.lock:
                if st.pending:
                    return True
        return False

    def _keep_unsettled_dead_letters(self) -> None:
        """After the last checkpoint of a stopped run: the dead letters of chunks it does not cover.

        They are kept for the operator to see why the job stopped (``--max-errors``), *after*
        the size the checkpoint recorded: a resume reads those chunks again and cuts the file
        back to that size first, so no line is ever repeated.
        """
        lines: List[Tuple[bytes, str]] = []
        with self._commit_lock:
            for st in self.units.values():
                with st.lock:
                    for t in st.pending:
                        lines.extend(t.dead)
                        t.dead = []
            for t in self._dropped:
                lines.extend(t.dead)
                t.dead = []
        if lines:
            self.dead.commit(lines, settled=False)

    def checkpoint_snapshot(self) -> Tuple[Dict[str, Any], List[str], Dict[str, int]]:
        """Positions, finished units and committed counters, all as of the same instant."""
        cut = self.checkpoint_cut()
        return cut.positions, cut.done, cut.counters

    def checkpoint_cut(self) -> "Cut":
        """:meth:`checkpoint_snapshot` plus how much of the dead-letter file that cut covers."""
        with self._commit_lock:
            positions, done = self.unit_positions()
            return Cut(positions, done, self.counters.snapshot(committed=True), self.dead.mark())

    def unit_seconds(self) -> Dict[str, float]:
        """Seconds each unit (segment, file, shard) took in this run, for units that finished."""
        return {u: round(st.finished - st.started, 3) for u, st in self.units.items()
                if st.started is not None and st.finished is not None}

    def unit_positions(self) -> Tuple[Dict[str, Any], List[str]]:
        positions: Dict[str, Any] = {}
        done: List[str] = []
        for u, st in self.units.items():
            with st.lock:
                if st.done:
                    done.append(u)
                elif st.position is not None:
                    positions[u] = st.position
        return positions, done

    # ------------------------------------------------------------------ threads

    def _fail(self, e: BaseException) -> None:
        with self._err_lock:
            self.errors.append(e)
        self.abort.set()
        self.stop_reading.set()

    def _saver(self, stop: threading.Event) -> None:
        while not stop.wait(self.checkpoint_every):
            try:
                self.save_checkpoint()
            except BaseException as e:  # a checkpoint we cannot save must stop the job
                self._fail(e)
                return

    def _put_sentinel(self, queue: "Queue[Optional[Batch]]") -> None:
        while True:
            try:
                queue.put(None, timeout=0.2)
                return
            except KeyboardInterrupt:
                # As in _join_all: a first Ctrl-C drains, a second one aborts.
                if self.stop_reading.is_set():
                    self.abort.set()
                self.interrupt()
            except Full:
                # Writers stuck in a request keep the queue full: the drain deadline must apply
                # here too, or an interrupt would wait for them forever.
                if self._drain_deadline is not None and time.monotonic() > self._drain_deadline:
                    self.abort.set()
                if self.abort.is_set():
                    # Writers are stopping anyway; make room so they can see the sentinel.
                    try:
                        queue.get_nowait()
                    except Empty:
                        pass

    def _reader(self, work: "Queue[str]") -> None:
        try:
            while not self.stop_reading.is_set():
                try:
                    unit = work.get_nowait()
                except Empty:
                    return
                self._read_unit(unit)
        except BaseException as e:
            self._fail(e)

    def _read_unit(self, unit: str) -> None:
        st = self.units[unit]
        if st.started is None:
            st.started = time.monotonic()
        for chunk in self.source.read(unit, st.position, self.stop_reading):
            while self._paused.is_set() and not self.abort.is_set():
                time.sleep(0.005)  # a buffering sink is committing: queue nothing new meanwhile
            ticket = Ticket(unit, chunk.position, chunk.done)
            batches = self._process(chunk, ticket)
            if self.abort.is_set():
                # A record of this chunk was refused (--max-errors): the chunk is never sealed,
                # so the checkpoint stays behind it and a resume reads it again.
                with st.lock:
                    self._dropped.append(ticket)
                return
            with st.lock:
                st.pending.append(ticket)
                ticket.remaining = len(batches)
            for b in batches:
                if not self._enqueue(b):
                    return
            with st.lock:
                ticket.sealed = True
            self._maybe_complete(st)
            if self.stop_reading.is_set():
                return

    def _enqueue(self, b: Batch) -> bool:
        while True:
            if self.abort.is_set():
                return False
            try:
                self.queues[b.lane].put(b, timeout=0.2)
                return True
            except Full:
                continue

    def _writer(self, queue: "Queue[Optional[Batch]]") -> None:
        try:
            while True:
                b = queue.get()
                if b is None:
                    return
                if self.abort.is_set():
                    continue  # drop from the queue: not acknowledged, so not checkpointed
                res = self.sink.write(b.ops)
                self._ack(b, res)
        except BaseException as e:
            partial = getattr(e, "partial", None)
            if isinstance(partial, BatchResult):
                # Written, never acknowledged as a batch: live counts only (see table_writer._partial).
                self.counters.bump({k: v for k, v in (("written", partial.written), ("deleted", partial.deleted),
                                                      ("skipped_existing", partial.skipped_existing)) if v})
            self._fail(e)

    def _ack(self, b: Batch, res: BatchResult) -> None:
        t = b.ticket
        counts = {"written": res.written, "deleted": res.deleted, "skipped_existing": res.skipped_existing}
        for k, v in res.counts.items():
            counts[k] = counts.get(k, 0) + v
        st = self.units[t.unit]
        # Several writers acknowledge batches of one ticket at once: its counts are updated
        # under the unit's lock, or concurrent read-modify-writes lose acknowledgements.
        with st.lock:
            stage = getattr(self.sink, "dead_letter_stage", "write")
            for op, reason, code in res.rejected:
                if not self._dead(op.wire(), reason, code, stage, op.origin, op.source_key, t):
                    return  # refused (--max-errors): the ticket stays open, its position unsaved
            for k, v in counts.items():
                if v:
                    t.add(k, v)
        self.counters.bump(counts)
        self.crash_hook("after_batch_ack")
        with st.lock:
            t.remaining -= 1
        self._maybe_complete(st)

    def _maybe_complete(self, st: UnitState) -> None:
        with self._commit_lock, st.lock:
            while st.pending and st.pending[0].sealed and st.pending[0].remaining <= 0:
                t = st.pending[0]
                if t.dead:
                    # First: a dead-letter file that cannot be written (a full disk) fails the job
                    # with the ticket still pending, so no checkpoint moves past records whose
                    # only trace was to be those lines.
                    self.dead.commit(t.dead)
                    t.dead = []
                st.pending.popleft()
                st.position = t.position
                if t.done_unit:
                    st.done = True
                    st.finished = time.monotonic()
                self.counters.commit(t.counts)

    # ------------------------------------------------------------------ processing

    def _dead(self, item: Any, reason: str, code: str, stage: str, origin: Any, source_key: Any,
              ticket: Ticket, raw: Optional[str] = None, tb: Optional[str] = None) -> bool:
        """Dead-letter one record; False when ``--max-errors`` refuses it (the job then stops).

        The limit is counted over the whole job (the dead-letter file may be shared by several
        worker processes): the file holds at most ``max_errors`` lines, and the record that would
        have been one more is not settled anywhere, so the checkpoint stays behind it.
        """
        limit = self.proc.max_errors
        if not self.dead.reserve(limit):
            self._stopped_by_max_errors = True
            self._fail(FatalError(f"more than --max-errors {limit} items would be dead-lettered; stopping "
                                  "(checkpoint kept; fix the cause and --resume)", code=MAX_ERRORS))
            return False
        ticket.dead.append((dead_letter_line(
            item, reason, code=code, stage=stage, origin=str(origin) if origin is not None else None,
            source_key=source_key, transform=self.proc.transform.name if self.proc.transform else None,
            raw=raw, traceback=tb), code or reason))
        ticket.add("dead_lettered")
        self.counters.bump({"dead_lettered": 1})
        return True

    def _process(self, chunk: Chunk, ticket: Ticket) -> List[Batch]:
        def dead(item: Any, reason: str, code: str, stage: str, origin: Any, skey: Any,
                 raw: Optional[str] = None, tb: Optional[str] = None) -> None:
            self._dead(item, reason, code, stage, origin, skey, ticket, raw=raw, tb=tb)

        seg = _segment_of(ticket.unit, self.proc.context.segment) if self.proc.unit_segment \
            else self.proc.context.segment
        ops, counts, keyed = self.processor.chunk(chunk, seg, dead, keep_keys=self.key_affine)
        self.counters.bump(counts)
        for k, v in counts.items():
            if v:
                ticket.add(k, v)
        return self._batches(ops, ticket, keyed)

    def _pack(self, ops: List[Op], ticket: Ticket, lane: int, out: List[Batch]) -> None:
        cur: List[Op] = []
        nbytes = 0
        limit = self.proc.max_batch_ops
        for op in ops:
            if len(cur) >= limit or (cur and nbytes + len(op.enc) > MAX_BATCH_BYTES):
                out.append(Batch(cur, ticket, nbytes, lane))
                cur, nbytes = [], 0
            cur.append(op)
            nbytes += len(op.enc)
        if cur:
            out.append(Batch(cur, ticket, nbytes, lane))

    def _batches(self, ops: List[Op], ticket: Ticket, dedupe: bool) -> List[Batch]:
        collapsed = 0
        if dedupe and len(ops) > 1:
            # One version per key across the whole chunk, not only inside one batch: two batches
            # of one chunk may be written by different writers in either order (and DynamoDB
            # rejects a BatchWriteItem holding one key twice). The last one, as a later write
            # would replace it; the first one for a sink whose conditional writes keep it.
            chosen: Dict[Any, int]
            if self.keep_first:
                chosen = {}
                for i, op in enumerate(ops):
                    chosen.setdefault(op.key, i)
            else:
                chosen = {op.key: i for i, op in enumerate(ops)}
            if len(chosen) != len(ops):
                kept = [op for i, op in enumerate(ops) if chosen[op.key] == i]
                collapsed = len(ops) - len(kept)
                ops = kept
        out: List[Batch] = []
        lanes = len(self.queues)
        if lanes > 1:
            by_lane: Dict[int, List[Op]] = {}
            for op in ops:
                by_lane.setdefault(hash(op.key) % lanes, []).append(op)
            for lane, lane_ops in by_lane.items():
                self._pack(lane_ops, ticket, lane, out)
        else:
            self._pack(ops, ticket, 0, out)
        if collapsed:
            ticket.add("collapsed", collapsed)
            self.counters.bump({"collapsed": collapsed})
        return out


def _segment_of(unit: str, default: Optional[int]) -> Optional[int]:
    # Table scans name their units by segment number; other sources keep the job's value.
    return int(unit) if unit.isdigit() else default


_arenas_limited = False


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's per-thread malloc arenas (once per process, before worker threads start).

    With a reader and a writer pool each thread gets its own arena, and pages of a few MB
    allocated and freed across them fragment into ~100 MB of extra RSS for nothing (measured:
    212 -> 120 MB peak for a copy). Only glibc has mallopt; elsewhere this does nothing.
    """
    global _arenas_limited
    if _arenas_limited or os.environ.get("MALLOC_ARENA_MAX"):
        return
    _arenas_limited = True
    try:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("c")
        if name:
            ctypes.CDLL(name).mallopt(-8, arenas)  # -8 = M_ARENA_MAX
    except (OSError, AttributeError):
        pass


_gc_lock = threading.Lock()
_gc_users = 0
_gc_saved: Optional[Tuple[int, int, int]] = None


@contextlib.contextmanager
def _gc_tuned() -> Iterator[None]:
    """Fewer cyclic-GC passes while items flow.

    A copy allocates millions of short-lived dicts that reference counting frees on its own;
    with the default thresholds the collector still runs every 700 allocations and rescans the
    long-lived heap (botocore's models among it), which measured as 30-60 % of the CPU of a
    transform copy. Freezing the heap present at start and raising the young-generation
    threshold removes that cost. Global interpreter state, so reference-counted across
    concurrent pipelines and restored by the last one.
    """
    global _gc_users, _gc_saved
    _limit_malloc_arenas()
    with _gc_lock:
        if _gc_users == 0:
            _gc_saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(50_000, 20, 100)
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0 and _gc_saved is not None:
                gc.set_threshold(*_gc_saved)
                gc.unfreeze()


def default_readers(units: int) -> int:
    return max(1, min(units, 4 * (os.cpu_count() or 2), 32))


__all__ = ["Batch", "Counters", "Pipeline", "Ticket", "default_readers"]
