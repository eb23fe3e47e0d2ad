"""Zero-downtime live migration: backfill + DynamoDB Streams replay, lag, rollback.

    1. check the source stream (NEW_AND_OLD_IMAGES; offer to enable it)
    2. record the position of every shard            ──▶ checkpoint (phase "backfill")
    3. backfill: copy_table (parallel scan + writers) ──▶ its own checkpoint
    4. replay the stream from the recorded positions  ──▶ checkpoint (phase "stream", per shard)
    5. keep tailing; a status file shows lag and counts; stop on signal / idle / max runtime

This module composes the job: the stream Source and its change mapping (full images only, so
any replay is harmless) live in :mod:`ddbmigrate.sources.changes`, the status file in
:mod:`ddbmigrate.state.status`, and the cutover gate in :mod:`ddbmigrate.jobs.cutover`.

Invariants:
1. Snapshot + log: shard positions are recorded before the backfill scans a single item, and the
   replay starts from them, so the target converges to transform(source) under concurrent writes.
2. Per-key order and acknowledged checkpoints: the stream phase runs through the pipeline, whose
   per-shard checkpoint only moves past a page when the target acknowledged its writes
   (:mod:`ddbmigrate.sources.changes`, invariants 1 and 2).
3. A stream that can no longer serve the checkpoint (trimmed, disabled, older than 24 h) stops the
   replication with ResyncNeededError and the command to resync; nothing is skipped silently.

The transform must give each source item its own target keys (no two source items may derive
the same target key), as for any replicated re-modelling.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Dict, Optional, Tuple, Union

from ..aws.capacity import capacity_limit
from ..aws.client import DynamoClient, RetryStats
from ..aws.tables import wait_active
from ..config import RunOptions, TableRef
from ..core.items import KeySchema
from ..core.specs import LiveSourceSpec, ProcessingSpec
from ..core.transform import Transform, TransformContext, load_transform
from ..engine.job import Job
from ..engine.run import pool_size
from ..engine.threads import ThreadsEngine
from ..errors import DdbMigrateError, FatalError, ResyncNeededError, UsageError
from ..reporting.report import Report
from ..sinks.table_writer import TableWriterSpec
from ..sources.changes import ChangeMapper, StreamChangeSource
from ..sources.stream import StreamReader, check_stream_view, stream_client
from ..sources.table_scan import default_segments
from ..state.checkpoint import (
    CheckpointState,
    CheckpointStore,
    default_path,
    fingerprint,
    open_checkpoint,
)
from ..state.status import (
    StatusWriter,
    clear_stop_request,
    refuse_second_replicator,
    replication_identity,
    status_path_for,
    stop_requested,
)
from .common import default_writers
from .copy import copy_table
from .fit import check_fits_target, sample_table

Confirm = Callable[[str], bool]
# Records older than (start - this) are skipped on the first replay of a shard: the backfill,
# which began after the start, saw their effect. Covers DynamoDB's minute-rounded
# ApproximateCreationDateTime and clock skew between this machine and DynamoDB.
SKEW_MARGIN = 5 * 60.0
# Without a backfill (both sides known equal, e.g. a rollback replication started at cutover),
# only changes from the start on matter; re-applying the last minutes' full images is harmless.
NO_BACKFILL_MARGIN = 120.0


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
    target_kms_key: Optional[str] = None,
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
        tdesc = dst.describe_table()
        tkeys_known = KeySchema.from_table_description(tdesc)
    except DdbMigrateError:
        tkeys_known = None  # created by the backfill (--create-target / --target-spec)
    else:
        # Before the stream is set up or anything read: do the items fit the target at all?
        check_fits_target(target.table, tdesc, source_desc=sdesc, sample=sample_table(src, source.table),
                          transform=tf, context=TransformContext(source_table=source.table, target_table=target.table))
    needs_old = tf is not None or target_spec is not None or (tkeys_known is not None and tkeys_known != skeys)
    sdesc = ensure_stream(src, sdesc, needs_old=needs_old, confirm=enable_stream_confirm)
    arn = str(sdesc["LatestStreamArn"])

    identity = {**replication_identity(source, target), "transform": tf.name if tf else None,
                "transform_hash": tf.code_hash if tf else None, "mode": "overwrite"}
    meta_path = opts.checkpoint or default_path("replicate", replication_identity(source, target))
    bf_path, st_path = _paths(meta_path)
    status_file = status_path or status_path_for(source, target, opts.checkpoint)
    status = StatusWriter(status_file, {"source": source.describe(), "target": target.describe(),
                                        "stream_arn": arn, "checkpoint": meta_path, "status_every": status_every,
                                        "transform": _absolute_ref(tf)},
                          every=status_every)
    refuse_second_replicator(status_file)
    clear_stop_request(status_file)  # an old request must not stop this run
    stop = _StopWatch(stop_event, status_file)
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
    stop.start()
    try:
        if meta["phase"] == "backfill":
            status.set("backfill")
            brep = _backfill(source, target, opts, meta, bf_path, tf, fresh, create_target, target_spec,
                             clean_target, confirm, stop.event, deadline, status, target_kms_key=target_kms_key)
            meta["phase"] = "stream"
            meta["backfill"] = {"read": brep.read, "written": brep.written, "dead_lettered": brep.dead_lettered,
                                "seconds": brep.duration_seconds}
            store.save(CheckpointState(fingerprint=fp, job=identity, extra=meta))
        report = _stream_phase(source, target, opts, meta, st_path, identity, tf, fresh, src, dst, sc, reader,
                               skeys, status, stop.event, deadline, stop_after_idle, poll_interval, clock, writers)
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
    finally:
        stop.close()
        sc.close()
        if source_client is None:
            src.close()
        if target_client is None:
            dst.close()
    if stop.requested:
        report.status = "stopped"  # `replicate stop`: the replication was ended on purpose
        clear_stop_request(status_file)
        if opts.report:
            report.write_json(opts.report)
    status.stop("stopped")
    return report


def _absolute_ref(tf: Optional[Transform]) -> Optional[str]:
    """The transform's reference as another process in another folder can load it (cutover)."""
    if tf is None:
        return None
    path, _, func = tf.name.rpartition(":")
    if path.endswith(".py"):
        return f"{os.path.abspath(path)}:{func}"
    return tf.name


class _StopWatch:
    """Stops the replication when the caller's ``stop_event`` is set or ``replicate stop`` asks."""

    def __init__(self, stop_event: Optional[threading.Event], status_file: str) -> None:
        self.event = threading.Event()
        self.requested = False
        self._caller = stop_event
        self._status_file = status_file
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="replicate-stop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.2):
            if self._caller is not None and self._caller.is_set():
                self.event.set()
                return
            if stop_requested(self._status_file):
                self.requested = True
                self.event.set()
                return

    def close(self) -> None:
        self._done.set()
        self._thread.join()


def _resync_hint(source: TableRef, target: TableRef) -> str:
    return (f"resync with: ddbmigrate replicate {source.table} {target.table} --restart --clean-target "
            "(same options; backfills again from a fresh stream position)")


def _backfill(source: TableRef, target: TableRef, opts: RunOptions, meta: Dict[str, Any], path: str,
              tf: Optional[Transform], fresh: bool, create_target: bool, target_spec: Optional[str],
              clean_target: bool, confirm: Optional[Confirm], stop_event: Optional[threading.Event],
              deadline: Optional[float], status: StatusWriter, *, target_kms_key: Optional[str] = None) -> Report:
    """Phase 3: the parallel copy, resumable from its own checkpoint."""
    bopts = replace(opts, checkpoint=path, resume=not fresh, restart=fresh, force=False, report=None,
                    segments=int(meta["segments"]), transform=None)
    cancel = threading.Event()
    done = threading.Event()

    class _Status:
        def attach(self, job: str, snapshot: Callable[[], Dict[str, Any]]) -> Callable[[], None]:
            def fields() -> Dict[str, Any]:
                snap = snapshot()
                return {"phase": "backfill", "backfill_done": snap.get("done"), "backfill_total": snap.get("total")}

            status.fields = fields
            return lambda: None

    def watch() -> None:
        # The library's stop_event and --max-runtime also stop a backfill (checkpoint kept).
        while not done.wait(0.2):
            if (stop_event is not None and stop_event.is_set()) or (deadline is not None and time.monotonic() >= deadline):
                cancel.set()
                return

    watcher = threading.Thread(target=watch, name="backfill-watch", daemon=True)
    watcher.start()
    try:
        return copy_table(source, target, bopts, create_target=create_target, target_spec=target_spec,
                          clean_target=clean_target and fresh, confirm=confirm, transform=tf,
                          cancel=cancel, observer=_Status(), target_kms_key=target_kms_key)
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

    def fields() -> Dict[str, Any]:
        out: Dict[str, Any] = {"phase": "stream", **scs.metrics()}
        if scs.pipeline is not None:
            c = scs.pipeline.counters.snapshot(committed=True)
            out["counts"] = {k: c.get(k, 0) for k in ("written", "deleted", "dead_lettered", "collapsed")}
        return out

    status.set("replaying", fields, lambda: "tailing" if scs.caught_up else "replaying")
    job = Job(
        kind="replicate", identity={**identity, "phase": "stream", "stream_arn": meta["stream_arn"]}, options=sopts,
        # The stream reader is shared with the phases before this one: it runs on the threads engine.
        source=LiveSourceSpec(scs, watched=[sc]),
        sink=TableWriterSpec(target, tkeys, retry=opts.retry, mode="overwrite", write_rate=write_rate,
                             writers=writers),
        processing=ProcessingSpec(key_schema=tkeys, on_error=opts.on_error, trusted=tf is None and tkeys == skeys,
                                  source_key_schema=skeys),
        source_label=source.describe(), target_label=target.describe(), readers=1, writers=writers,
        extra={"transform": tf.name if tf else None},
    )
    try:
        report = ThreadsEngine().run(job)
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


__all__ = ["ensure_stream", "replicate"]
