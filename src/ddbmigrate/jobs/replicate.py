"""Zero-downtime live migration: backfill + DynamoDB Streams replay, lag, cutover gate, rollback.

    1. check the source stream (NEW_AND_OLD_IMAGES; offer to enable it)
    2. record the position of every shard            ──▶ checkpoint (phase "backfill")
    3. backfill: copy_table (parallel scan + writers) ──▶ its own checkpoint
    4. replay the stream from the recorded positions  ──▶ checkpoint (phase "stream", per shard)
    5. keep tailing; a status file shows lag and counts; stop on signal / idle / max runtime

Change mapping (full images only, so any replay is harmless)::

    INSERT / MODIFY  -> put transform(NewImage)
    REMOVE           -> delete every target key derived from transform(OldImage)
    MODIFY re-keyed  -> also delete the derived keys of the old image that the new one lacks

Invariants:
1. Snapshot + log: shard positions are recorded before the backfill scans a single item, and the
   replay starts from them, so the target converges to transform(source) under concurrent writes.
2. Per-key order: one shard is read one GetRecords page at a time, and the next page of any shard
   is read only after every write of the previous round was acknowledged. Within a page, the
   records of one source key collapse into one net change: delete the keys derived from *every*
   image seen (the backfill may have copied any of them) that the final image does not derive,
   then put the final image's items (or nothing, for a REMOVE).
3. The per-shard checkpoint only moves past a page when the target acknowledged its writes (the
   pipeline's tickets); a crash replays at most the unacknowledged pages.
4. A stream that can no longer serve the checkpoint (trimmed, disabled, older than 24 h) stops the
   replication with ResyncNeededError and the command to resync; nothing is skipped silently.

The transform must give each source item its own target keys (no two source items may derive
the same target key), as for any replicated re-modelling.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import orjson

from ..state.checkpoint import CheckpointState, CheckpointStore, atomic_write, default_path, fingerprint, open_checkpoint
from ..aws.client import DynamoClient, RetryStats
from ..config import RunOptions, TableRef
from .copy import capacity_limit, copy_table, default_writers, make_limiter
from ..state.crashpoints import crash_point
from ..errors import (
    DdbMigrateError,
    EXIT_DIFFERENCES,
    EXIT_FATAL,
    EXIT_OK,
    FatalError,
    ResyncNeededError,
    TransformError,
    UsageError,
)
from ..core.items import KeySchema, WireItem
from ..engine.pipeline import DELETE, PUT, Chunk, Pipeline, Processing
from ..reporting.report import Report, utcnow
from ..engine.run import JobSpec, pool_size, progress_hook_context, run_job
from ..aws.tables import wait_active
from ..sinks.table_writer import TableWriter
from ..sources.stream import (
    Page,
    RETENTION_MARGIN,
    RETENTION_SECONDS,
    StreamReader,
    approx_time,
    check_stream_view,
    fix_image,
    stream_client,
)
from ..sources.table_scan import default_segments
from ..core.transform import Transform, TransformContext, load_transform

Confirm = Callable[[str], bool]
# Records older than (start - this) are skipped on the first replay of a shard: the backfill,
# which began after the start, saw their effect. Covers DynamoDB's minute-rounded
# ApproximateCreationDateTime and clock skew between this machine and DynamoDB.
SKEW_MARGIN = 5 * 60.0
# Without a backfill (both sides known equal, e.g. a rollback replication started at cutover),
# only changes from the start on matter; re-applying the last minutes' full images is harmless.
NO_BACKFILL_MARGIN = 120.0
# An ENABLED stream whose shards are all closed has children coming; after this long, it ended.
STREAM_END_GRACE = 120.0
UNIT = "stream"


# --------------------------------------------------------------------------- change mapping


class ChangeMapper:
    """Stream records of one page -> write operations (see the module docstring, invariant 2)."""

    def __init__(self, transform: Optional[Transform], source_keys: KeySchema, target_keys: KeySchema, *,
                 on_error: str = "fail", context: Optional[TransformContext] = None) -> None:
        self.tf = transform
        self.skeys = source_keys
        self.tkeys = target_keys
        self.on_error = on_error
        self.ctx = context or TransformContext()
        # Without a transform and with the same key, a record's Keys are the target key.
        self.simple = transform is None and source_keys == target_keys
        self.counts: Dict[str, int] = {"records": 0, "inserts": 0, "modifies": 0, "removes": 0,
                                       "skipped_before_start": 0, "collapsed_records": 0}

    @property
    def needs_old_images(self) -> bool:
        return not self.simple

    def _apply(self, image: WireItem) -> List[WireItem]:
        if self.tf is None:
            return [image]
        return self.tf(image, self.ctx)

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


class StreamChangeSource:
    """The pipeline Source of the replay/tail phase: one unit, shards read round by round.

    Position of the unit: ``{"shards": {shard: position}, "alive_at": epoch s}``. Each page is one
    chunk; before the next round the source waits until the pipeline acknowledged every chunk
    it yielded (invariants 2 and 3).
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
        return {"lag_s": self.lag_seconds(), "status": "caught up" if self.caught_up else "replaying"}

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


# --------------------------------------------------------------------------- status file


def status_path_for(source: TableRef, target: TableRef, checkpoint: Optional[str] = None) -> str:
    """Default status file: next to the replication checkpoint."""
    meta = checkpoint or default_path("replicate", _where_identity(source, target))
    base = meta[:-len(".checkpoint.json")] if meta.endswith(".checkpoint.json") else meta
    return base + ".status.json"


def _where_identity(source: TableRef, target: TableRef) -> Dict[str, Any]:
    return {"job": "replicate", "names": [source.table, target.table], "source": source.identity(),
            "target": target.identity()}


class StatusWriter:
    """Writes the status file every ``every`` seconds from its own thread (atomic replace)."""

    def __init__(self, path: Optional[str], base: Dict[str, Any], every: float = 1.0) -> None:
        self.path = path
        self.base = base
        self.every = every
        self.state = "starting"
        self.error: Optional[str] = None
        self.fields: Callable[[], Dict[str, Any]] = lambda: {}
        self.state_fn: Optional[Callable[[], str]] = None  # live state while running
        self._final = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self.path is None:
            return
        self.write()
        self._thread = threading.Thread(target=self._loop, name="replicate-status", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.write()
            except Exception:  # a status problem must never stop a replication
                pass

    def set(self, state: str, fields: Optional[Callable[[], Dict[str, Any]]] = None,
            state_fn: Optional[Callable[[], str]] = None) -> None:
        self.state = state
        if fields is not None:
            self.fields = fields
        if state_fn is not None:
            self.state_fn = state_fn
        try:
            self.write()
        except OSError:
            pass

    def write(self) -> None:
        if self.path is None:
            return
        doc = dict(self.base)
        try:
            doc.update(self.fields())
        except Exception:  # a torn read of live metrics: the next write has them
            pass
        state = self.state_fn() if self.state_fn is not None and not self._final else self.state
        doc.update({"state": state, "updated_at": time.time(), "updated": utcnow(), "pid": os.getpid()})
        if self.error:
            doc["error"] = self.error
        atomic_write(self.path, orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str))

    def stop(self, state: str) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._final = True
        self.set(state)


def read_status(path: str) -> Dict[str, Any]:
    """The status a running (or stopped) replicator last wrote; ``alive`` tells whether it still runs."""
    try:
        with open(path, "rb") as fh:
            doc = orjson.loads(fh.read())
    except FileNotFoundError:
        raise UsageError(f"no replication status at {path}: is `ddbmigrate replicate` running in this folder? "
                         "(or pass --status-file)") from None
    except (OSError, orjson.JSONDecodeError) as e:
        raise UsageError(f"replication status {path} is unreadable: {e}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"replication status {path} is not a JSON object")
    age = time.time() - float(doc.get("updated_at") or 0)
    doc["age_seconds"] = round(age, 1)
    running = doc.get("state") in ("starting", "backfill", "replaying", "tailing")
    doc["alive"] = running and age < max(10.0, 5 * float(doc.get("status_every") or 1.0)) and _pid_alive(doc.get("pid"))
    return doc


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True


# --------------------------------------------------------------------------- replicate


def _paths(meta: str) -> Tuple[str, str]:
    base = meta[:-len(".checkpoint.json")] if meta.endswith(".checkpoint.json") else meta
    return base + ".backfill.checkpoint.json", base + ".stream.checkpoint.json"


def ensure_stream(client: DynamoClient, desc: Dict[str, Any], *, needs_old: bool,
                  confirm: Optional[Confirm]) -> Dict[str, Any]:
    """The source's description with an enabled stream of a usable view type (enable it if agreed)."""
    table = desc["TableName"]
    spec = desc.get("StreamSpecification") or {}
    if spec.get("StreamEnabled") and desc.get("LatestStreamArn"):
        check_stream_view(spec.get("StreamViewType"), needs_old=needs_old, table=table)
        return desc
    msg = (f"Table {table} has no stream. Enable a NEW_AND_OLD_IMAGES stream on it now? (It records every "
           "change for 24 h; the application is not affected.)")
    if confirm is None or not confirm(msg):
        raise UsageError(
            f"the source table {table} has no stream; replication needs one with NEW_AND_OLD_IMAGES: rerun "
            f"with --yes to enable it, or run: aws dynamodb update-table --table-name {table} "
            "--stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES", table=table)
    try:
        client.control.update_table(TableName=table, StreamSpecification={
            "StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    except Exception as e:
        raise FatalError(f"cannot enable the stream of {table}: {e}", table=table) from None
    desc = wait_active(client, table)
    if not desc.get("LatestStreamArn"):
        raise FatalError(f"enabled the stream of {table} but DescribeTable shows no stream ARN", table=table)
    return desc


def replicate(
    source: TableRef,
    target: TableRef,
    *,
    transform: Union[str, Transform, None] = None,
    options: Optional[RunOptions] = None,
    enable_stream_confirm: Optional[Confirm] = None,
    stop_event: Optional[threading.Event] = None,
    status_path: Optional[str] = None,
    max_runtime: Optional[float] = None,
    stop_after_idle: Optional[float] = None,
    backfill: bool = True,
    create_target: bool = False,
    target_spec: Optional[str] = None,
    clean_target: bool = False,
    confirm: Optional[Confirm] = None,
    poll_interval: float = 0.5,
    page_limit: int = 1000,
    status_every: float = 1.0,
    source_client: Optional[DynamoClient] = None,
    target_client: Optional[DynamoClient] = None,
    clock: Callable[[], float] = time.time,
) -> Report:
    """Keep ``target`` equal to transform(``source``): backfill, then replay and tail the stream.

    Runs until ``stop_event`` is set, ``max_runtime`` seconds pass, the stream is quiet for
    ``stop_after_idle`` seconds, or SIGTERM / Ctrl-C (which raises InterruptedError_ after saving
    the checkpoint). ``options.resume`` continues a stopped or crashed replication from its
    checkpoint; ``options.restart`` starts over (new positions, new backfill). ``backfill=False``
    skips the copy (both sides are known to be equal, e.g. a reverse replication right after a
    verified cutover). Returns the report of the stream phase (``report.extra`` holds the
    replication counts and the final lag).
    """
    opts = options or RunOptions()
    if opts.resume and opts.restart:
        raise UsageError("--resume and --restart are mutually exclusive")
    if opts.dry_run:
        raise UsageError("replicate has no --dry-run; use `ddbmigrate copy --dry-run` to check a transform")
    if opts.mode != "overwrite":
        raise UsageError("replicate writes full images (--mode overwrite); other modes would break convergence")
    if max_runtime is not None and max_runtime <= 0:
        raise UsageError("--max-runtime must be > 0 seconds")
    if stop_after_idle is not None and stop_after_idle < 0:
        raise UsageError("--stop-after-idle must be >= 0 seconds")
    tf = load_transform(transform) if isinstance(transform, str) else transform
    if tf is None and opts.transform:
        tf = load_transform(opts.transform)
    deadline = time.monotonic() + max_runtime if max_runtime else None
    writers = opts.writers or default_writers("overwrite")
    src = source_client or DynamoClient(source, pool_size=pool_size(32, 0), retry=opts.retry, stats=RetryStats())
    dst = target_client or DynamoClient(target, pool_size=pool_size(0, writers), retry=opts.retry, stats=RetryStats())
    if (source.table == target.table and src.endpoint == dst.endpoint and src.region == dst.region
            and source.role_arn == target.role_arn and source.profile == target.profile):
        raise UsageError("source and target are the same table")
    sdesc = src.describe_table()
    skeys = KeySchema.from_table_description(sdesc)
    tkeys_known: Optional[KeySchema] = None
    try:
        tkeys_known = KeySchema.from_table_description(dst.describe_table())
    except DdbMigrateError:
        tkeys_known = None  # created by the backfill (--create-target / --target-spec)
    needs_old = tf is not None or target_spec is not None or (tkeys_known is not None and tkeys_known != skeys)
    sdesc = ensure_stream(src, sdesc, needs_old=needs_old, confirm=enable_stream_confirm)
    arn = str(sdesc["LatestStreamArn"])

    identity = {**_where_identity(source, target), "transform": tf.name if tf else None,
                "transform_hash": tf.code_hash if tf else None, "mode": "overwrite"}
    meta_path = opts.checkpoint or default_path("replicate", _where_identity(source, target))
    bf_path, st_path = _paths(meta_path)
    status_file = status_path or status_path_for(source, target, opts.checkpoint)
    status = StatusWriter(status_file, {"source": source.describe(), "target": target.describe(),
                                        "stream_arn": arn, "checkpoint": meta_path, "status_every": status_every},
                          every=status_every)
    _refuse_second_replicator(status_file)
    store, state = open_checkpoint(meta_path, identity, resume=opts.resume, restart=opts.restart, force=opts.force)
    sc = stream_client(source, src, retry=opts.retry)
    reader = StreamReader(sc, arn, page_limit=page_limit, clock=clock)
    fp = fingerprint(identity)

    if state is None:
        for p in (bf_path, st_path):
            CheckpointStore(p).remove()
        start = reader.start_positions()  # invariant 1: before the backfill scans anything
        started_at = clock()
        meta: Dict[str, Any] = {
            "phase": "backfill" if backfill else "stream", "stream_arn": arn, "started_at": started_at,
            "skip_before": started_at - (SKEW_MARGIN if backfill else NO_BACKFILL_MARGIN),
            "start": {"shards": start, "alive_at": started_at},
            "segments": opts.segments or default_segments(sdesc),
        }
        store.save(CheckpointState(fingerprint=fp, job=identity, extra=meta))
        fresh = True
    else:
        meta = dict(state.extra)
        fresh = False
        if meta.get("stream_arn") != arn:
            hint = _resync_hint(source, target)
            raise ResyncNeededError(
                f"resync needed: the stream of {source.table} changed since the checkpoint (it was disabled and "
                f"enabled again), so changes in between were not recorded; {hint}", table=source.table,
                code="StreamChanged", hint=hint)
    status.start()
    try:
        if meta["phase"] == "backfill":
            status.set("backfill")
            brep = _backfill(source, target, opts, meta, bf_path, tf, fresh, create_target, target_spec,
                             clean_target, confirm, src, dst, stop_event, deadline, status)
            meta["phase"] = "stream"
            meta["backfill"] = {"read": brep.read, "written": brep.written, "dead_lettered": brep.dead_lettered,
                                "seconds": brep.duration_seconds}
            store.save(CheckpointState(fingerprint=fp, job=identity, extra=meta))
        report = _stream_phase(source, target, opts, meta, st_path, identity, tf, fresh, src, dst, sc, reader,
                               skeys, status, stop_event, deadline, stop_after_idle, poll_interval, clock, writers)
    except ResyncNeededError as e:
        e.hint = e.hint or _resync_hint(source, target)
        e.message = f"{e.message}; {e.hint}"
        status.error = e.one_line()
        status.stop("failed")
        raise
    except DdbMigrateError as e:
        status.error = e.one_line()
        status.stop("interrupted" if e.exit_code == 130 else "failed")
        raise
    except BaseException:
        status.stop("failed")
        raise
    status.stop("stopped")
    return report


def _refuse_second_replicator(status_file: str) -> None:
    """Two replicators on one checkpoint would fight over it: refuse while another one is alive."""
    if not os.path.exists(status_file):
        return
    try:
        st = read_status(status_file)
    except UsageError:
        return
    if st.get("alive") and int(st.get("pid") or 0) != os.getpid():
        raise UsageError(f"another replicator (pid {st.get('pid')}) is running for these tables (status "
                         f"{status_file}); stop it first")


def _resync_hint(source: TableRef, target: TableRef) -> str:
    return (f"resync with: ddbmigrate replicate {source.table} {target.table} --restart --clean-target "
            "(same options; backfills again from a fresh stream position)")


def _backfill(source: TableRef, target: TableRef, opts: RunOptions, meta: Dict[str, Any], path: str,
              tf: Optional[Transform], fresh: bool, create_target: bool, target_spec: Optional[str],
              clean_target: bool, confirm: Optional[Confirm], src: DynamoClient, dst: DynamoClient,
              stop_event: Optional[threading.Event], deadline: Optional[float], status: StatusWriter) -> Report:
    """Phase 3: the parallel copy, resumable from its own checkpoint."""
    bopts = replace(opts, checkpoint=path, resume=not fresh, restart=fresh, force=False, report=None,
                    segments=int(meta["segments"]), transform=None)
    interrupts: List[Callable[[], None]] = []
    done = threading.Event()

    def hook(job: str, snapshot: Callable[[], Dict[str, Any]], interrupt: Callable[[], None]) -> Callable[[], None]:
        interrupts.append(interrupt)

        def fields() -> Dict[str, Any]:
            snap = snapshot()
            return {"phase": "backfill", "backfill_done": snap.get("done"), "backfill_total": snap.get("total")}

        status.fields = fields
        return lambda: None

    def watch() -> None:
        # The library's stop_event and --max-runtime also stop a backfill (checkpoint kept).
        while not done.wait(0.2):
            if (stop_event is not None and stop_event.is_set()) or (deadline is not None and time.monotonic() >= deadline):
                for i in interrupts:
                    i()
                return

    watcher = threading.Thread(target=watch, name="backfill-watch", daemon=True)
    watcher.start()
    try:
        with progress_hook_context(hook):
            return copy_table(source, target, bopts, create_target=create_target, target_spec=target_spec,
                              clean_target=clean_target and fresh, confirm=confirm, transform=tf,
                              source_client=src, target_client=dst)
    finally:
        done.set()
        watcher.join()


def _stream_phase(source: TableRef, target: TableRef, opts: RunOptions, meta: Dict[str, Any], path: str,
                  identity: Dict[str, Any], tf: Optional[Transform], fresh: bool, src: DynamoClient,
                  dst: DynamoClient, sc: DynamoClient, reader: StreamReader, skeys: KeySchema,
                  status: StatusWriter, stop_event: Optional[threading.Event], deadline: Optional[float],
                  stop_after_idle: Optional[float], poll_interval: float, clock: Callable[[], float],
                  writers: int) -> Report:
    """Phases 4 and 5: replay from the recorded positions, then tail, through the pipeline."""
    tdesc = dst.describe_table()
    tkeys = KeySchema.from_table_description(tdesc)
    mapper = ChangeMapper(tf, skeys, tkeys, on_error=opts.on_error,
                          context=TransformContext(source_table=source.table, target_table=target.table))
    if mapper.needs_old_images:
        spec = src.describe_table().get("StreamSpecification") or {}
        check_stream_view(spec.get("StreamViewType"), needs_old=True, table=source.table)
    sopts = replace(opts, checkpoint=path, resume=not fresh, restart=fresh, force=False)
    stream_ckpt = CheckpointStore(path)
    _reopen(stream_ckpt)
    scs = StreamChangeSource(reader, mapper, start=meta["start"], skip_before=meta.get("skip_before"),
                             stop_event=stop_event, deadline=deadline, stop_after_idle=stop_after_idle,
                             poll_interval=poll_interval, clock=clock, table=source.table)
    write_rate = capacity_limit(tdesc, opts.max_write_units, opts.write_percent, "write")
    wlim = make_limiter(write_rate)
    sink = TableWriter(dst, dst.ref.table, tkeys, mode="overwrite", limiter=wlim)
    proc = Processing(key_schema=tkeys, transform=None, on_error=opts.on_error, max_errors=opts.max_errors,
                      trusted=tf is None and tkeys == skeys, source_key_schema=skeys)
    pipeline_box: List[Pipeline] = []

    def attach(p: Pipeline) -> None:
        pipeline_box.append(p)
        scs.attach(p)

    def fields() -> Dict[str, Any]:
        out: Dict[str, Any] = {"phase": "stream", **scs.metrics()}
        if pipeline_box:
            c = pipeline_box[0].counters.snapshot(committed=True)
            out["counts"] = {k: c.get(k, 0) for k in ("written", "deleted", "dead_lettered", "collapsed")}
        return out

    status.set("replaying", fields, lambda: "tailing" if scs.caught_up else "replaying")
    spec = JobSpec(
        job="replicate", source=scs, sink=sink, processing=proc, options=sopts,
        identity={**identity, "phase": "stream", "stream_arn": meta["stream_arn"]},
        source_label=source.describe(), target_label=target.describe(), readers=1, writers=writers,
        stats=[dst.stats, sc.stats], limiters=[wlim], progress_done=lambda c: scs.records_acked,
        extra={"transform": tf.name if tf else None}, on_pipeline=attach, progress_extra=scs.progress_fields,
    )
    try:
        report = run_job(spec)
    finally:
        _reopen(stream_ckpt)
    report.extra.update({k: v for k, v in scs.metrics().items() if v is not None})
    report.extra["stopped_by"] = scs.stopped_by
    for k, v in (meta.get("backfill") or {}).items():
        report.extra[f"backfill_{k}"] = v
    report.extra = {k: v for k, v in report.extra.items() if v is not None}
    return report


def _reopen(store: CheckpointStore) -> None:
    """A replication is never "done": a stopped one resumes where it stopped (run_job marks it done)."""
    st = store.load()
    if st is not None and st.state == "done":
        st.state = "running"
        store.save(st)


# --------------------------------------------------------------------------- cutover gate


@dataclass
class CutoverReport:
    """Go / no-go with the numbers behind it. ``exit_code``: 0 go, 4 differences, 1 lag never reached 0."""

    source: str
    target: str
    go: bool = False
    reason: str = ""
    waited_seconds: float = 0.0
    lag_seconds: Optional[float] = None
    pending_records: Optional[int] = None
    quiet_seconds: Optional[float] = None
    replicator_state: Optional[str] = None
    counts: Dict[str, Any] = field(default_factory=dict)
    verify: Optional[Dict[str, Any]] = None
    differences: Optional[int] = None
    exit_code: int = EXIT_FATAL

    def to_dict(self) -> Dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    def render(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.table import Table

        console = console or Console(stderr=True)
        t = Table(title=f"ddbmigrate cutover: {'GO' if self.go else 'NO-GO'}", show_header=False, title_justify="left")
        t.add_column("what", style="bold")
        t.add_column("value", justify="right")
        t.add_row("source", self.source)
        t.add_row("target", self.target)
        t.add_row("replicator", str(self.replicator_state))
        t.add_row("lag", "-" if self.lag_seconds is None else f"{self.lag_seconds:.1f} s")
        t.add_row("pending records", "-" if self.pending_records is None else str(self.pending_records))
        t.add_row("quiet for", "-" if self.quiet_seconds is None else f"{self.quiet_seconds:.1f} s")
        for k, v in self.counts.items():
            t.add_row(k.replace("_", " "), str(v))
        if self.verify is not None:
            for k in ("equal", "missing", "unexpected", "mismatched", "invalid"):
                if k in self.verify:
                    t.add_row(f"verify {k}", str(self.verify[k]))
        t.add_row("waited", f"{self.waited_seconds:.1f} s")
        t.add_row("decision", ("[green]GO[/green]: " if self.go else "[red]NO-GO[/red]: ") + self.reason)
        console.print(t)


def cutover(
    source: TableRef,
    target: TableRef,
    *,
    transform: Union[str, Transform, None] = None,
    status_path: Optional[str] = None,
    checkpoint: Optional[str] = None,
    quiet_period: float = 10.0,
    timeout: float = 600.0,
    verify: bool = True,
    progress: str = "auto",
    verify_fn: Optional[Callable[..., Any]] = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> CutoverReport:
    """The cutover gate: wait for lag 0 after source writes stopped, then verify; go or no-go.

    Reads the status file of the running replicator. "Lag 0" means: the replicator is alive (or
    stopped cleanly), caught up on every shard, nothing pending, and no new stream record for
    ``quiet_period`` seconds. Then ``verify`` compares the target with transform(source).
    """
    path = status_path or status_path_for(source, target, checkpoint)
    rep = CutoverReport(source=source.describe(), target=target.describe())
    t0 = clock()
    while True:
        st = read_status(path)
        rep.replicator_state = st.get("state")
        rep.lag_seconds = st.get("lag_seconds")
        rep.pending_records = st.get("pending_records")
        rep.counts = dict(st.get("counts") or {})
        rep.waited_seconds = round(clock() - t0, 1)
        if st.get("state") == "failed":
            rep.reason = f"the replicator failed: {st.get('error', 'see its output')}"
            rep.exit_code = EXIT_FATAL
            return rep
        alive = bool(st.get("alive"))
        stopped_clean = st.get("state") == "stopped"
        caught = bool(st.get("caught_up")) and not st.get("pending_records") and float(st.get("lag_seconds") or 0) == 0
        quiet = float(st.get("idle_seconds") or 0)
        rep.quiet_seconds = quiet
        if caught and (alive or stopped_clean) and (quiet >= quiet_period or stopped_clean):
            break
        if not alive and not stopped_clean:
            rep.reason = (f"the replicator is not running (state {st.get('state')}, last update "
                          f"{st.get('age_seconds')} s ago); restart it with --resume")
            rep.exit_code = EXIT_FATAL
            return rep
        if clock() - t0 >= timeout:
            rep.reason = (f"lag did not reach zero with {quiet_period:.0f} s of quiet within {timeout:.0f} s "
                          f"(lag {rep.lag_seconds} s, pending {rep.pending_records}); are writes to the source stopped?")
            rep.exit_code = EXIT_FATAL
            return rep
        sleep(0.5)
    rep.waited_seconds = round(clock() - t0, 1)
    if not verify:
        rep.go, rep.exit_code = True, EXIT_OK
        rep.reason = "lag is zero and the source is quiet (verify skipped)"
        return rep
    vf: Callable[..., Any]
    if verify_fn is not None:
        vf = verify_fn
    else:
        from ..verify.job import verify_tables

        vf = verify_tables
    vrep: Any = vf(source, target, transform=transform, progress=progress)
    d: Dict[str, Any] = vrep.to_dict()
    rep.verify = {k: d.get(k) for k in ("equal", "missing", "unexpected", "mismatched", "invalid", "differences")}
    rep.differences = int(d.get("differences") or 0)
    if int(getattr(vrep, "exit_code", 0)) == 0 and rep.differences == 0:
        rep.go, rep.exit_code = True, EXIT_OK
        rep.reason = "lag is zero, the source is quiet and the target equals transform(source)"
    else:
        rep.go, rep.exit_code = False, EXIT_DIFFERENCES
        rep.reason = f"verify found {rep.differences} differences; do not switch traffic"
    return rep


__all__ = [
    "ChangeMapper",
    "CutoverReport",
    "StreamChangeSource",
    "cutover",
    "read_status",
    "replicate",
    "status_path_for",
]
