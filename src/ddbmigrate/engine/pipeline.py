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
from dataclasses import dataclass, field, replace
from queue import Empty, Full, Queue
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Protocol, Sequence, Set, Tuple

import orjson

from ..state.deadletter import DeadLetters
from ..errors import (
    DdbMigrateError,
    FatalError,
    InterruptedError_,
    SkippableError,
    TransformError,
    UsageError,
)
from ..core.items import MAX_ITEM_BYTES, KeySchema, WireItem, oversize
from ..core.transform import Transform, TransformContext, short_traceback

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
    # Records the source read and resolved itself, counted with this chunk's ticket (an
    # incremental import counts the superseded versions of a key as read + collapsed).
    counts: Optional[Dict[str, int]] = None


class Source(Protocol):
    """A source splits into independent units, each read from a resumable position."""

    def units(self) -> List[str]: ...

    def read(self, unit: str, position: Any, stop: threading.Event) -> Iterator[Chunk]: ...


@dataclass
class BatchResult:
    written: int = 0
    deleted: int = 0
    skipped_existing: int = 0
    # ops the sink refused item by item (dead-lettered by the pipeline with the reason)
    rejected: List[Tuple[Op, str, str]] = field(default_factory=list)


class Sink(Protocol):
    def write(self, ops: List[Op]) -> BatchResult: ...

    def close(self) -> None: ...


class Ticket:
    """Outstanding work of one chunk; complete when every batch is acknowledged."""

    __slots__ = ("unit", "position", "remaining", "sealed", "counts", "done_unit")

    def __init__(self, unit: str, position: Any, done_unit: bool) -> None:
        self.unit = unit
        self.position = position
        self.remaining = 0
        self.sealed = False
        self.counts: Dict[str, int] = {}
        self.done_unit = done_unit

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


@dataclass
class Batch:
    ops: List[Op]
    ticket: Ticket
    nbytes: int
    lane: int = 0  # the writer queue it goes to (key-affine pipelines only)


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


@dataclass
class Processing:
    """How records become write operations."""

    key_schema: Optional[KeySchema]  # the sink's key (None: files, no key checks)
    transform: Optional[Transform] = None
    on_error: str = "fail"
    max_errors: Optional[int] = None
    trusted: bool = False  # records come from a table with this very key schema: skip key checks
    source_key_schema: Optional[KeySchema] = None
    context: TransformContext = field(default_factory=TransformContext)
    max_batch_ops: int = MAX_BATCH_OPS
    dedupe: bool = True
    sample: int = 0  # keep N before/after pairs (dry run)


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
        on_checkpoint: Optional[Callable[["Pipeline"], None]] = None,
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
        self.key_affine = bool(getattr(source, "ordered", False)) and processing.dedupe \
            and processing.key_schema is not None
        self.keep_first = bool(getattr(sink, "first_write_wins", False))
        lanes = self.writers if self.key_affine else 1
        depth = queue_batches or self.writers * 4
        # Each lane holds a few batches, so a reader blocked on one writer's retry back-off has
        # usually handed the other writers enough to go on with.
        self.queues: "List[Queue[Optional[Batch]]]" = [Queue(maxsize=max(4, -(-depth // lanes)))
                                                       for _ in range(lanes)]
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
        self.samples: List[Tuple[Any, Any]] = []
        self._sample_lock = threading.Lock()
        self.started = time.monotonic()
        self.finished: Optional[float] = None
        self.interrupted = False
        self._ckpt_lock = threading.Lock()

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
        if self.errors:
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
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def save_checkpoint(self) -> None:
        if self.on_checkpoint is None:
            return
        with self._ckpt_lock:
            # A sink that buffers (files) may hold writes back while it makes everything it
            # acknowledged durable, or ask to skip this save; see sinks/files.py.
            gate = getattr(self.sink, "checkpoint_gate", None)
            if gate is None:
                self.dead.sync()  # dead letters are durable before a checkpoint counts them
                self.on_checkpoint(self)
                return
            with gate(self.finished is not None) as save:
                if save:
                    self.dead.sync()
                    self.on_checkpoint(self)

    def checkpoint_snapshot(self) -> Tuple[Dict[str, Any], List[str], Dict[str, int]]:
        """Positions, finished units and committed counters, all as of the same instant."""
        with self._commit_lock:
            positions, done = self.unit_positions()
            return positions, done, self.counters.snapshot(committed=True)

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
            ticket = Ticket(unit, chunk.position, chunk.done)
            batches = self._process(chunk, ticket)
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
            self._fail(e)

    def _ack(self, b: Batch, res: BatchResult) -> None:
        t = b.ticket
        counts = {"written": res.written, "deleted": res.deleted, "skipped_existing": res.skipped_existing}
        st = self.units[t.unit]
        # Several writers acknowledge batches of one ticket at once: its counts are updated
        # under the unit's lock, or concurrent read-modify-writes lose acknowledgements.
        with st.lock:
            for op, reason, code in res.rejected:
                self._dead(op.wire(), reason, code, "write", op.origin, op.source_key, t)
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
                t = st.pending.popleft()
                st.position = t.position
                if t.done_unit:
                    st.done = True
                    st.finished = time.monotonic()
                self.counters.commit(t.counts)

    # ------------------------------------------------------------------ processing

    def _dead(self, item: Any, reason: str, code: str, stage: str, origin: Any, source_key: Any,
              ticket: Ticket, raw: Optional[str] = None, tb: Optional[str] = None) -> None:
        self.dead.add(item, reason, code=code, stage=stage, origin=str(origin) if origin is not None else None,
                      source_key=source_key, transform=self.proc.transform.name if self.proc.transform else None,
                      raw=raw, traceback=tb)
        ticket.add("dead_lettered")
        self.counters.bump({"dead_lettered": 1})
        limit = self.proc.max_errors
        if limit is not None and self.dead.count > limit:
            self._fail(FatalError(f"more than --max-errors {limit} items dead-lettered; stopping "
                                  "(checkpoint kept; fix the cause and --resume)"))

    def _process(self, chunk: Chunk, ticket: Ticket) -> List[Batch]:
        proc = self.proc
        keyschema = proc.key_schema
        check_keys = keyschema is not None and not (proc.trusted and proc.transform is None)
        dedupe = proc.dedupe and keyschema is not None
        tf = proc.transform
        dumps = orjson.dumps
        counts = {"read": 0, "out": 0, "dropped": 0, "transform_errors": 0, "fanout_extra": 0}

        for name, n in (chunk.counts or {}).items():
            counts[name] = counts.get(name, 0) + n
        for raw, reason, where in chunk.rejects:
            counts["read"] += 1
            self._dead(None, reason, "InvalidInput", "read", where, None, ticket, raw=raw)

        records: Iterable[Tuple[int, WireItem]]
        if chunk.raw is not None and chunk.ops is None:
            if tf is None and not check_keys and not self.key_affine:
                return self._pass_through(chunk.raw, ticket, counts)
            # Parse one item at a time: only one item's dicts are alive at once, not a page's.
            loads = orjson.loads
            records = ((PUT, loads(b)) for b in chunk.raw)
        elif chunk.ops is not None:
            records = chunk.ops
        else:
            records = [(PUT, it) for it in chunk.items]
        origins = chunk.origins
        ops: List[Op] = []
        # A context of its own per chunk: reader threads never share a mutable context, and the
        # transform sees the segment it is reading.
        ctx = replace(proc.context, segment=_segment_of(ticket.unit, proc.context.segment)) if tf else proc.context
        for idx, (kind, item) in enumerate(records):
            counts["read"] += 1
            origin = origins[idx] if origins is not None else None
            if tf is not None:
                if origin is not None:
                    ctx.origin = origin
                try:
                    outs = tf(item, ctx)
                except TransformError as e:
                    counts["transform_errors"] += 1
                    skey = _source_key(proc, item)
                    if proc.on_error == "fail":
                        # Name the record: by its key (tables) or its place (files without a key).
                        where = (f"source key {orjson.dumps(skey).decode()}" if skey is not None
                                 else f"source record {origin}" if origin is not None else "source record")
                        raise TransformError(f"{e.message} ({where})", code=e.code) from e
                    self._dead(item, e.message, e.code or "TransformError", "transform", origin, skey, ticket,
                               tb=short_traceback(e))
                    continue
                if proc.sample and len(self.samples) < proc.sample:
                    with self._sample_lock:
                        if len(self.samples) < proc.sample:
                            self.samples.append((item, outs))
                if not outs:
                    counts["dropped"] += 1
                    continue
                if len(outs) > 1:
                    counts["fanout_extra"] += len(outs) - 1
                # Every dead letter of a transformed item names the source item it came from.
                skey = _source_key(proc, item)
            else:
                outs = [item]
                skey = None
            # Keys already produced by this one source record: a second output with the same key
            # is a transform bug (the writes would race); the first is kept, the rest dead-lettered.
            seen_keys: Optional[Set[Any]] = set() if len(outs) > 1 and keyschema is not None else None
            for out in outs:
                counts["out"] += 1
                if kind == DELETE:
                    # A delete only needs the key; the image may be an old full item.
                    if keyschema is not None:
                        p = keyschema.problem(out) if check_keys else None
                        if p:
                            self._dead(out, p, "InvalidKey", "validate", origin, skey, ticket)
                            continue
                        out = keyschema.project(out)
                    enc = _exact(dumps(out))
                    ops.append(Op(DELETE, out, enc, keyschema.key(out) if dedupe and keyschema else None,
                                  origin, skey))
                    continue
                if check_keys:
                    p = keyschema.problem(out)  # type: ignore[union-attr]
                    if p:
                        self._dead(out, p, "InvalidKey", "validate", origin, skey, ticket)
                        continue
                enc = _exact(dumps(out))
                if len(enc) > MAX_ITEM_BYTES:
                    size = oversize(out, len(enc))
                    if size is not None:
                        self._dead(out, f"item is {size} bytes; DynamoDB's limit is {MAX_ITEM_BYTES}",
                                   "ItemTooLarge", "validate", origin, skey, ticket)
                        continue
                okey = keyschema.key(out) if (dedupe or seen_keys is not None) and keyschema else None
                if seen_keys is not None:
                    if okey in seen_keys:
                        self._dead(out, "the transform returned more than one item with key "
                                   f"{orjson.dumps(keyschema.project(out)).decode()} for one source item; "  # type: ignore[union-attr]
                                   "the first was kept", "DuplicateKey", "validate", origin, skey, ticket)
                        continue
                    seen_keys.add(okey)
                # Only the encoding is kept (Op.wire() decodes it again if ever needed), so a
                # chunk waiting in the queue costs its JSON bytes, not its Python objects.
                ops.append(Op(PUT, None, enc, okey if dedupe else None, origin, skey))
        self.counters.bump(counts)
        for k, v in counts.items():
            if v:
                ticket.add(k, v)
        return self._batches(ops, ticket, dedupe)

    def _pass_through(self, raw: List[bytes], ticket: Ticket, counts: Dict[str, int]) -> List[Batch]:
        """Items from a table with the target's very key schema, no transform: no parsing.

        A scan page holds each key once, so no dedupe is needed; only the size is checked
        (JSON length is an upper bound of DynamoDB's size, so almost never parsed).
        """
        ops: List[Op] = []
        append = ops.append
        for enc in raw:
            if len(enc) > MAX_ITEM_BYTES:
                item = orjson.loads(enc)
                size = oversize(item, len(enc))
                if size is not None:
                    self._dead(item, f"item is {size} bytes; DynamoDB's limit is {MAX_ITEM_BYTES}",
                               "ItemTooLarge", "validate", None, None, ticket)
                    continue
            append(Op(PUT, None, enc, None))
        n = len(raw)
        counts["read"] += n
        counts["out"] += n
        self.counters.bump(counts)
        for k, v in counts.items():
            if v:
                ticket.add(k, v)
        limit = self.proc.max_batch_ops
        return [Batch(ops[i : i + limit], ticket, sum(len(o.enc) for o in ops[i : i + limit]))
                for i in range(0, len(ops), limit)]

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


def _exact(enc: bytes) -> bytes:
    """A copy of ``enc`` that owns exactly its length.

    orjson.dumps returns bytes inside the buffer it grew while writing and never shrinks (8 KB for
    a 1 KB item, 130 KB for a 9 KB one): the ~13,000 ops a transform copy holds in its queues
    took ~100 MB instead of ~13 MB (measured with tracemalloc). One memcpy fixes it.
    """
    return memoryview(enc).tobytes()


def _source_key(proc: Processing, item: WireItem) -> Any:
    ks = proc.source_key_schema
    return ks.project_or_none(item) if ks is not None else None


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


__all__ = [
    "Batch",
    "BatchResult",
    "Chunk",
    "Counters",
    "DELETE",
    "Op",
    "PUT",
    "Pipeline",
    "Processing",
    "Sink",
    "Source",
    "Ticket",
    "default_readers",
    "DdbMigrateError",
    "SkippableError",
    "UsageError",
]
