"""Zero-downtime live migration of any size: backfill + a change journal of the stream, lag, rollback.

    1. check the source stream (NEW_AND_OLD_IMAGES; offer to enable it)
    2. record the position of every shard                ──▶ checkpoint (phase "backfill")
    3. from then on, in every phase, the journal writer reads every shard (parallel lineages) and
       appends the records durably to the journal        ──▶ segments + journal state
    4. backfill: copy_table (parallel scan + writers)     ──▶ its own checkpoint
    5. apply the journal in order, then keep applying it as the writer tails the stream
                                                          ──▶ checkpoint (segment, offset)
    6. a status file and --metrics-port show phase, backfill progress, journal backlog and lag

This module composes the job: the journal (:mod:`ddbmigrate.state.journal`), its writer and the
apply Source (:mod:`ddbmigrate.sources.journal`), the change mapping (full images only, so any
replay is harmless, :mod:`ddbmigrate.sources.changes`), the status file
(:mod:`ddbmigrate.state.status`) and the cutover gate (:mod:`ddbmigrate.jobs.cutover`).

Invariants:
1. Snapshot + log: shard positions are recorded before the backfill scans a single item, and
   every change from them on is journaled and applied after the backfill, so the target
   converges to transform(source) under concurrent writes — however long the backfill takes,
   because the stream is read continuously and its 24 h retention only has to cover the time
   between two journal seals.
2. Per-key order and acknowledged checkpoints: the journal holds each shard's records in order,
   parents before children; the applier's checkpoint only moves past records the target
   acknowledged; segments are deleted once the saved checkpoint is past them.
3. A stream that can no longer serve the journal's positions (trimmed, disabled, older than the
   retention because the replicator was down that long) stops the replication with
   ResyncNeededError and the command to resync; nothing is skipped silently.

The transform must give each source item its own target keys (no two source items may derive
the same target key), as for any replicated re-modelling.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Dict, Optional, Tuple, Union

from ..aws.capacity import capacity_limit, declared_write_capacity
from ..aws.client import DynamoClient, RetryStats
from ..aws.tables import wait_active
from ..config import RetryPolicy, RunOptions, TableRef
from ..core.items import KeySchema
from ..core.specs import LiveSourceSpec, ProcessingSpec
from ..core.transform import Transform, TransformContext, load_transform
from ..engine.job import Job
from ..engine.run import job_checkpoint_path, pool_size
from ..engine.threads import ThreadsEngine
from ..errors import (
    EXIT_INTERRUPTED,
    DdbMigrateError,
    FatalError,
    InterruptedError_,
    ResyncNeededError,
    TableNotFoundError,
    UsageError,
)
from ..reporting import metrics
from ..reporting.report import Report
from ..sinks.table_writer import TableWriterSpec
from ..sources.changes import ChangeMapper
from ..sources.journal import (
    DEFAULT_SHARD_READERS,
    JournalSource,
    JournalWriter,
    run_guarded,
)
from ..sources.stream import (
    RETENTION_SECONDS,
    StreamReader,
    check_stream_view,
    stream_client,
)
from ..sources.table_scan import default_segments
from ..state.checkpoint import (
    CheckpointState,
    CheckpointStore,
    fingerprint,
    open_checkpoint,
)
from ..state.journal import DEFAULT_SEGMENT_BYTES, Journal, journal_paths
from ..state.status import (
    RunLock,
    StatusWriter,
    check_status_path,
    clear_stop_request,
    lock_path_for,
    note_refusal,
    pair_lock,
    refuse_second_replicator,
    replication_identity,
    status_path_for,
    stop_requested,
)
from ..storage.stores import S3Settings, is_s3, normalize, split_s3
from .common import default_writers, same_table
from .copy import copy_table
from .fit import check_fits_target, sample_table

log = logging.getLogger("ddbmigrate")

Confirm = Callable[[str], bool]
# Records older than (start - this) are skipped on the first replay of a shard: the backfill,
# which began after the start, saw their effect. Covers DynamoDB's minute-rounded
# ApproximateCreationDateTime and clock skew between this machine and DynamoDB.
SKEW_MARGIN = 5 * 60.0
# Without a backfill (both sides known equal, e.g. a rollback replication started at cutover),
# only changes from the start on matter; re-applying the last minutes' full images is harmless.
NO_BACKFILL_MARGIN = 120.0
# What one attempt of a write request may take at most (the transport's connect and read
# timeouts): the ceiling of the wait for requests under way when --max-runtime cuts a chunk.
REQUEST_SECONDS = 40.0


# --------------------------------------------------------------------------- replicate


def _paths(meta: str) -> Tuple[str, str]:
    base = meta.removesuffix(".checkpoint.json")
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
    journal: Optional[str] = None,
    journal_s3: Optional[S3Settings] = None,
    shard_readers: int = DEFAULT_SHARD_READERS,
    skip_ttl_deletes: bool = False,
    max_lag: Optional[float] = None,
    stream_retention: float = RETENTION_SECONDS,
    journal_segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    journal_during_backfill: bool = True,
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
    # (not x > 0, not x <= 0: nan passes every comparison, and a nan limit never ends the run)
    if max_runtime is not None and not max_runtime > 0:
        raise UsageError("--max-runtime must be > 0 seconds")
    if stop_after_idle is not None and not stop_after_idle >= 0:
        raise UsageError("--stop-after-idle must be >= 0 seconds")
    if not 1 <= shard_readers <= 1000:
        raise UsageError("--shard-readers must be between 1 and 1000")
    if max_lag is not None and not max_lag >= 0:
        raise UsageError("--max-lag must be >= 0 seconds")
    if not poll_interval > 0:  # 0 or less would poll a quiet stream (and the journal) in a busy loop
        raise UsageError("--poll-interval must be > 0 seconds")
    if clean_target and not backfill:
        # The clean is the backfill's first step: without one, the target was kept as it was, silently.
        raise UsageError("--clean-target empties the target before the backfill, and --no-backfill skips it: "
                         "drop one of the two")
    if journal and is_s3(journal):
        try:  # refused now: the first seal, after the checkpoint and the stream were set up, found it
            split_s3(journal)
        except UsageError:
            raise UsageError(f"--journal {journal}: expected s3://bucket/prefix, or a folder") from None
    status_file = status_path or status_path_for(source, target, opts.checkpoint)
    check_status_path(status_file, given=status_path is not None)
    # A run refused before it started (its status writer never wrote: a --resume whose checkpoint
    # or stream no longer matches, a target that changed, ...) leaves the last real run's state in
    # the status file, and says there that this one was refused and why: `replicate status` showed
    # the earlier run as if nothing had happened.
    status: Optional[StatusWriter] = None
    try:
        tf = load_transform(transform) if isinstance(transform, str) else transform
        if tf is None and opts.transform:
            tf = load_transform(opts.transform)
        deadline = time.monotonic() + max_runtime if max_runtime else None
        writers = opts.writers or default_writers("overwrite")
        src = source_client or DynamoClient(source, pool_size=pool_size(32, 0), retry=opts.retry, stats=RetryStats())
        dst = target_client or DynamoClient(target, pool_size=pool_size(0, writers), retry=opts.retry,
                                            stats=RetryStats())
        if target_kms_key and not (create_target or target_spec):
            raise UsageError("--target-kms-key applies to a table ddbmigrate creates: add --create-target or "
                             "--target-spec")
        sdesc = src.describe_table()
        skeys = KeySchema.from_table_description(sdesc)
        tkeys_known: Optional[KeySchema] = None
        tdesc: Optional[Dict[str, Any]] = None
        target_missing = False
        try:
            tdesc = dst.describe_table()
            tkeys_known = KeySchema.from_table_description(tdesc)
        except TableNotFoundError:
            # Refused here, before the stream is enabled and before any checkpoint or journal exists,
            # so the fix the message names (rerun with --create-target) just works.
            _check_missing_target(dst, backfill=backfill, create_target=create_target, target_spec=target_spec)
            target_missing = True
        except DdbMigrateError:
            tkeys_known = None  # not describable now (permissions, ...): the backfill's copy says why
        else:
            if same_table(source, target, src, dst, sdesc, tdesc):
                raise UsageError("source and target are the same table")
            # Before the stream is set up or anything read: do the items fit the target at all?
            check_fits_target(target.table, tdesc, source_desc=sdesc, sample=sample_table(src, source.table),
                              transform=tf,
                              context=TransformContext(source_table=source.table, target_table=target.table))
        needs_old = tf is not None or target_spec is not None or (tkeys_known is not None and tkeys_known != skeys)
        sdesc = ensure_stream(src, sdesc, needs_old=needs_old, confirm=enable_stream_confirm)
        arn = str(sdesc["LatestStreamArn"])

        identity = {**replication_identity(source, target), "transform": tf.name if tf else None,
                    "transform_hash": tf.code_hash if tf else None, "mode": "overwrite"}
        meta_path = job_checkpoint_path("replicate", replication_identity(source, target), opts)
        bf_path, st_path = _paths(meta_path)
        status = StatusWriter(status_file, {"source": source.describe(), "target": target.describe(),
                                            "stream_arn": arn, "checkpoint": meta_path, "status_every": status_every,
                                            "transform": _absolute_ref(tf)},
                              every=status_every)
        # The checkpoint and the journal are what two replicators would fight over (whatever status
        # file each was given): the lock guards them, for as long as this one runs.
        lock = RunLock(lock_path_for(meta_path))
        lock.acquire()
        pair = pair_lock(source, target)
        try:
            if pair is not None:
                pair.acquire()
            refuse_second_replicator(status_file)
            clear_stop_request(status_file)  # an old request must not stop this run
            stop = _StopWatch(stop_event, status_file)
            store, state = open_checkpoint(meta_path, identity, resume=opts.resume, restart=opts.restart,
                                           force=opts.force)
            if clean_target and backfill and state is None and (tdesc is not None or target_missing):
                # A fresh run empties the target in its backfill: ask now, before the checkpoint and the
                # journal exist (a refusal after them would leave a run whose --resume skips the clean).
                confirm = _confirm_clean(dst, tdesc, confirm)
            sc = stream_client(source, src, retry=opts.retry)
            reader = StreamReader(sc, arn, page_limit=page_limit, clock=clock, retention=stream_retention)
            fp = fingerprint(identity)
            default_journal, journal_state = journal_paths(meta_path)

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
                    "journal": _journal_location(journal, default_journal),
                }
                # The journal starts (at the recorded positions) before the checkpoint names it, so a
                # crash in between leaves no checkpoint pointing to a journal that does not exist.
                _journal(meta, journal_state, journal_segment_bytes, clock, journal_s3, source).open(
                    fresh=True, positions=meta["start"]["shards"])
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
                if "journal" not in meta or not os.path.exists(journal_state):
                    raise UsageError(f"the checkpoint {meta_path} has no journal state beside it (written by an older "
                                     "ddbmigrate, or the .journal.json file was removed): --restart to start over")
                if journal and _journal_location(journal, default_journal) != meta["journal"]:
                    raise UsageError(f"this replication journals to {meta['journal']}; resume it with that --journal "
                                     "(or --restart)")
            jr = _journal(meta, journal_state, journal_segment_bytes, clock, journal_s3, source)
            jr.open(fresh=False, positions=meta["start"]["shards"])
            writer = JournalWriter(reader, jr, readers=shard_readers, poll_interval=poll_interval, clock=clock,
                                   table=source.table, retention=stream_retention)
            live = _Live(jr, writer, clock, max_lag)
            status.fields = live.fields
            server: Optional[metrics.MetricsServer] = None
            remove_metrics: Callable[[], None] = lambda: None
            if opts.metrics_port is not None:
                server = metrics.acquire(opts.metrics_host, opts.metrics_port)
                remove_metrics = server.add(live.samples, live.health)
            status.start()
            stop.start()
            report: Optional[Report] = None
            try:
                if meta["phase"] == "backfill":
                    status.set("backfill", live.fields)

                    def run_backfill() -> Report:
                        return _backfill(source, target, opts, meta, bf_path, tf, fresh, create_target, target_spec,
                                         clean_target, confirm, stop.event, deadline, live, cancel,
                                         target_kms_key=target_kms_key)

                    cancel = threading.Event()
                    try:
                        if journal_during_backfill:
                            writer.start()
                            brep = run_guarded(run_backfill, writer, cancel)
                        else:
                            brep = run_backfill()
                    except InterruptedError_ as e:
                        if not stop.requested:
                            raise  # Ctrl-C / SIGTERM, the caller's stop_event, --max-runtime: interrupted
                        # `replicate stop` ends the replication on purpose in any phase: stopped, not
                        # interrupted. The backfill's checkpoint is saved and --resume continues it.
                        report = _stopped_backfill_report(e, source, target, _journal_now(live))
                    else:
                        meta["phase"] = "stream"
                        meta["backfill"] = {"read": brep.read, "written": brep.written,
                                            "dead_lettered": brep.dead_lettered, "seconds": brep.duration_seconds}
                        store.save(CheckpointState(fingerprint=fp, job=identity, extra=meta))
                if report is None:
                    if not writer.running:
                        writer.start()
                    report = _apply_phase(source, target, opts, meta, st_path, identity, tf, fresh, src, dst, sc, jr,
                                          writer, live, skeys, status, stop.event, deadline, stop_after_idle, poll_interval,
                                          clock, writers, skip_ttl_deletes, page_limit, max_runtime=max_runtime)
            except ResyncNeededError as e:
                e.hint = e.hint or _resync_hint(source, target)
                e.message = f"{e.message}; {e.hint}"
                if getattr(e, "report", None) is not None:
                    e.report.error = e.one_line()  # type: ignore[attr-defined]  # (the engine's, without the resync)
                live.failed = e.one_line()
                status.error = e.one_line()
                status.stop("failed")
                _write_failure_report(e, opts.report, source, target, _journal_now(live))
                raise
            except DdbMigrateError as e:
                live.failed = e.one_line()
                status.error = e.one_line()
                status.stop("interrupted" if e.exit_code == 130 else "failed")
                _write_failure_report(e, opts.report, source, target, _journal_now(live))
                raise
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM outside a job's own handling (cli/render.py)
                status.stop("interrupted")
                raise
            except BaseException:
                status.stop("failed")
                raise
            finally:
                writer.stop()
                remove_metrics()
                if server is not None:
                    metrics.release(server)
                stop.close()
                sc.close()
                if source_client is None:
                    src.close()
                if target_client is None:
                    dst.close()
            if isinstance(writer.error, DdbMigrateError):
                # The applier stopped on its own (stop, idle, max runtime) as the writer failed, or its
                # last seal failed: nothing is lost (no position passed an unsealed record), but say so.
                status.error = writer.error.one_line()
                status.stop("failed")
                if getattr(writer.error, "report", None) is None:
                    writer.error.report = report  # type: ignore[attr-defined]
                _write_failure_report(writer.error, opts.report, source, target, _journal_now(live))
                raise writer.error
            if stop.requested:
                report.status = "stopped"  # `replicate stop`: the replication was ended on purpose
                clear_stop_request(status_file)
            if opts.report:
                report.write_json(opts.report)
            status.stop("stopped")
            return report
        finally:
            if pair is not None:
                pair.release()
            lock.release()
    except DdbMigrateError as e:
        if (status is None or not status.started) and e.exit_code != EXIT_INTERRUPTED:
            note_refusal(status_file, e.one_line(), resume=opts.resume)
        raise


class _Live:
    """What a running replication shows: status fields, metrics samples and health, in every phase."""

    def __init__(self, journal: Journal, writer: JournalWriter, clock: Callable[[], float],
                 max_lag: Optional[float]) -> None:
        self.journal = journal
        self.writer = writer
        self.clock = clock
        self.max_lag = max_lag
        self.phase = "backfill"
        self.backfill: Callable[[], Dict[str, Any]] = dict
        self.source: Optional[JournalSource] = None
        self.pipeline_counts: Callable[[], Dict[str, int]] = dict
        self.failed: Optional[str] = None

    def fields(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"phase": self.phase, **self.backfill()}
        src = self.source
        if src is not None:
            out.update(src.metrics())
            c = self.pipeline_counts()
            out["counts"] = {k: c.get(k, 0) for k in ("written", "deleted", "dead_lettered", "collapsed")}
        else:
            b = self.journal.backlog(self.journal.first, 0)
            oldest = self.journal.oldest_time(self.journal.first)
            out.update({"lag_seconds": round(max(0.0, self.clock() - oldest), 1) if oldest is not None else 0.0,
                        "pending_records": b["records"], "caught_up": False,
                        "journal": {"location": self.journal.location, "backlog_records": b["records"],
                                    "bytes": b["bytes"], "segments": b["segments"]},
                        **self.writer.shard_counts()})
        out["journal"]["shard_readers"] = self.writer.readers
        out["stream_records_read"] = dict(self.writer.records_read)
        return out

    def samples(self) -> list[metrics.Sample]:
        f = self.fields()
        j = f.get("journal") or {}
        out = [
            metrics.Sample("replication_lag_seconds", float(f.get("lag_seconds") or 0.0),
                           help="seconds the oldest change not yet applied to the target is behind now"),
            metrics.Sample("journal_bytes", float(j.get("bytes") or 0), help="bytes of journal segments on disk"),
            metrics.Sample("journal_backlog_records", float(j.get("backlog_records") or 0),
                           help="stream records read but not yet applied to the target"),
            metrics.Sample("journal_segments", float(j.get("segments") or 0), help="journal segments kept"),
            metrics.Sample("stream_shards_reading", float(f.get("shards_reading") or 0),
                           help="shards being read right now (at most --shard-readers)"),
        ]
        for ph in ("backfill", "replaying", "tailing"):
            cur = self.phase if self.phase == "backfill" else ("tailing" if f.get("caught_up") else "replaying")
            out.append(metrics.Sample("replication_phase", 1.0 if cur == ph else 0.0, {"phase": ph},
                                      help="the replication's phase (1 for the current one)"))
        for kind, n in sorted((f.get("stream_records_read") or {}).items()):
            out.append(metrics.Sample("stream_records_read", float(n), {"kind": kind}, "counter",
                                      "stream records read into the journal, by kind (this run)"))
        applied = {"put": (f.get("counts") or {}).get("written", 0), "delete": (f.get("counts") or {}).get("deleted", 0)}
        for kind, n in applied.items():
            out.append(metrics.Sample("stream_records_applied", float(n), {"kind": kind}, "counter",
                                      "target writes made from the journal, by kind"))
        out.append(metrics.Sample("stream_records_dead_lettered", float((f.get("counts") or {}).get("dead_lettered", 0)),
                                  {"kind": "transform"}, "counter", "stream records dead-lettered"))
        for action, key in (("replicated", "ttl_deletes"), ("skipped", "ttl_deletes_skipped")):
            out.append(metrics.Sample("ttl_deletes", float(f.get(key) or 0), {"action": action}, "counter",
                                      "TTL expiries seen in the stream"))
        if self.phase == "backfill":
            out.append(metrics.Sample("backfill_items_done", float(f.get("backfill_done") or 0),
                                      help="items the backfill settled"))
        return out

    def health(self) -> Optional[str]:
        if self.failed:
            return f"failed: {self.failed}"
        if self.writer.error is not None:
            return f"failing: the journal writer stopped: {self.writer.error}"
        if self.max_lag is not None and self.phase != "backfill":
            lag = float(self.fields().get("lag_seconds") or 0.0)
            if lag > self.max_lag:
                return f"lag {lag:.1f} s is above --max-lag {self.max_lag:g} s"
        return None


def _journal(meta: Dict[str, Any], state_path: str, segment_bytes: int, clock: Callable[[], float],
             s3: Optional[S3Settings], source: TableRef) -> Journal:
    where = str(meta["journal"])
    return Journal(where, state_path, segment_bytes=segment_bytes, clock=clock,
                   s3=(s3 or S3Settings(region=source.region, profile=source.profile)) if is_s3(where) else None)


def _journal_location(given: Optional[str], default: str) -> str:
    """Where this replication's segments go: its own folder, also inside a --journal DIR or S3
    prefix that other replications share (a fresh start empties only its own)."""
    if not given:
        return normalize(default)
    base = normalize(given)
    name = os.path.basename(default)
    return f"{base}/{name}" if is_s3(base) else os.path.join(base, name)


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


def _check_missing_target(client: DynamoClient, *, backfill: bool, create_target: bool,
                          target_spec: Optional[str]) -> None:
    """The target does not exist: refuse up front unless the backfill creates it (the same message
    as copy's), and check the spec it would be created from."""
    name = client.ref.table
    if not backfill:
        raise TableNotFoundError(
            f"target table {name!r} does not exist at {client.endpoint}; --no-backfill replays changes onto "
            "an existing copy of the source: drop --no-backfill to create and fill it first", table=name)
    if not create_target and not target_spec:
        raise TableNotFoundError(
            f"target table {name!r} does not exist at {client.endpoint}; add --create-target to create it from "
            "the source's schema (or --target-spec FILE)", table=name)
    if target_spec:
        from ..schema.spec import load_definition

        load_definition(target_spec, name)  # a bad spec is refused now, not after the journal started


def _confirm_clean(client: DynamoClient, tdesc: Optional[Dict[str, Any]], confirm: Optional[Confirm]) -> Confirm:
    """--clean-target of a fresh run, asked before anything is written: the confirm the backfill's
    clean then gets (it says yes: the question was asked). A target the backfill creates
    (``tdesc`` None: it does not exist yet) is new and empty: nothing to ask."""
    if tdesc is not None:
        name = client.ref.table
        count = int(tdesc.get("ItemCount") or 0)
        msg = (f"Delete ALL items of table {name!r} at {client.endpoint} ({client.region}), about {count:,} items "
               "(item count is refreshed by DynamoDB every ~6 hours)?")
        if confirm is None or not confirm(msg):
            raise UsageError(f"not emptying {name}: not confirmed (pass --yes to skip the prompt)")
    return lambda _message: True


def _resync_hint(source: TableRef, target: TableRef) -> str:
    return (f"resync with: ddbmigrate replicate {source.table} {target.table} --restart --clean-target "
            "(same options; backfills again from a fresh stream position)")


def _backfill(source: TableRef, target: TableRef, opts: RunOptions, meta: Dict[str, Any], path: str,
              tf: Optional[Transform], fresh: bool, create_target: bool, target_spec: Optional[str],
              clean_target: bool, confirm: Optional[Confirm], stop_event: Optional[threading.Event],
              deadline: Optional[float], live: _Live, cancel: threading.Event, *,
              target_kms_key: Optional[str] = None) -> Report:
    """Phase 4: the parallel copy, resumable from its own checkpoint (the journal runs meanwhile)."""
    bopts = replace(opts, checkpoint=path, resume=not fresh, restart=fresh, force=False, report=None,
                    segments=int(meta["segments"]), transform=None)
    done = threading.Event()

    class _Status:
        def attach(self, job: str, snapshot: Callable[[], Dict[str, Any]]) -> Callable[[], None]:
            def fields() -> Dict[str, Any]:
                snap = snapshot()
                return {"backfill_done": snap.get("done"), "backfill_total": snap.get("total")}

            live.backfill = fields
            return lambda: None

        def fields(self) -> Dict[str, Any]:
            # The journal fills while the backfill runs: its backlog belongs on the same line.
            b = live.journal.backlog(live.journal.first, 0)
            return {"journal_backlog": b["records"], "journal_bytes": b["bytes"]}

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


def _apply_phase(source: TableRef, target: TableRef, opts: RunOptions, meta: Dict[str, Any], path: str,
                 identity: Dict[str, Any], tf: Optional[Transform], fresh: bool, src: DynamoClient,
                 dst: DynamoClient, sc: DynamoClient, jr: Journal, writer: JournalWriter, live: _Live,
                 skeys: KeySchema, status: StatusWriter, stop_event: Optional[threading.Event],
                 deadline: Optional[float], stop_after_idle: Optional[float], poll_interval: float,
                 clock: Callable[[], float], writers: int, skip_ttl_deletes: bool, page_limit: int, *,
                 max_runtime: Optional[float] = None) -> Report:
    """Phase 5: apply the journal in order, then keep applying it as the writer tails the stream."""
    tdesc = dst.describe_table()
    tkeys = KeySchema.from_table_description(tdesc)
    mapper = ChangeMapper(tf, skeys, tkeys, on_error=opts.on_error, skip_ttl_deletes=skip_ttl_deletes,
                          context=TransformContext(source_table=source.table, target_table=target.table))
    if mapper.needs_old_images:
        spec = src.describe_table().get("StreamSpecification") or {}
        check_stream_view(spec.get("StreamViewType"), needs_old=True, table=source.table)
    # The report is written once, by the caller at the end (report=None: not by the driver too;
    # a FIFO or /dev/stderr got two documents, and a FIFO whose reader left hung the second).
    sopts = replace(opts, checkpoint=path, resume=not fresh, restart=fresh, force=False, report=None)
    stream_ckpt = CheckpointStore(path)
    _reopen(stream_ckpt)

    def persisted() -> Optional[Dict[str, Any]]:
        st = stream_ckpt.load()
        pos = (st.positions.get("journal") if st is not None else None)
        if st is not None and st.state == "done" and pos is None:
            return None
        return dict(pos) if isinstance(pos, dict) else None

    jsrc = JournalSource(jr, writer, mapper, skip_before=meta.get("skip_before"), persisted=persisted,
                         stop_event=stop_event, deadline=deadline, stop_after_idle=stop_after_idle,
                         poll_interval=poll_interval, chunk_records=max(1, page_limit), clock=clock)
    write_rate = capacity_limit(tdesc, opts.max_write_units, opts.write_percent, "write")

    def counts() -> Dict[str, int]:
        return jsrc.pipeline.counters.snapshot(committed=True) if jsrc.pipeline is not None else {}

    live.phase = "stream"
    live.backfill = dict
    live.pipeline_counts = counts
    live.source = jsrc
    status.set("replaying", live.fields, lambda: "tailing" if jsrc.caught_up else "replaying")
    job = Job(
        kind="replicate", identity={**identity, "phase": "stream", "stream_arn": meta["stream_arn"],
                                    "journal": meta["journal"]}, options=sopts,
        # The journal and its writer live in this process: the threads engine runs it.
        source=LiveSourceSpec(jsrc, watched=[sc]),
        sink=TableWriterSpec(target, tkeys, retry=opts.retry, mode="overwrite", write_rate=write_rate,
                             writers=writers, declared=declared_write_capacity(tdesc, dst.endpoint)),
        processing=ProcessingSpec(key_schema=tkeys, on_error=opts.on_error, trusted=tf is None and tkeys == skeys,
                                  source_key_schema=skeys),
        source_label=source.describe(), target_label=target.describe(), readers=1, writers=writers,
        extra={"transform": tf.name if tf else None},
    )
    view = _ApplyView(jsrc)
    ended = threading.Event()
    cutter = threading.Thread(target=_cut_when_stopped, args=(jsrc, deadline, stop_event, ended, view, max_runtime,
                                                              _request_bound(opts.retry)),
                              name="replicate-cut", daemon=True)
    cutter.start()
    try:
        report = ThreadsEngine().run(job, observer=view)
    finally:
        ended.set()
        cutter.join()
        _reopen(stream_ckpt)
        try:
            jsrc.prune(force=True)  # the final checkpoint is saved: what it covers can go
        except Exception:  # noqa: BLE001 - a segment left behind is deleted by the next run
            pass
    m = jsrc.metrics()
    report.extra.update({k: v for k, v in m.items() if v is not None and k != "journal"})
    report.extra["journal"] = {**m["journal"], "records_journaled": jr.records_total,
                               "max_shards_read_at_once": writer.max_concurrent}
    report.extra["stream_records_read"] = dict(writer.records_read)
    report.extra["stopped_by"] = jsrc.stopped_by
    for k, v in (meta.get("backfill") or {}).items():
        report.extra[f"backfill_{k}"] = v
    if jsrc.stopped_by == "max runtime" and deadline is not None:
        # Ended by the limit, not done: the report and the output say so, and by how much it ran
        # past it (a chunk in flight is cut at the limit, see _cut_when_stopped).
        report.status = "stopped"
        ran = time.monotonic() - deadline + (max_runtime or 0.0)
        report.extra["max_runtime"] = {"limit_s": max_runtime, "ran_s": round(ran, 1),
                                       "cut_records": jsrc.in_flight}
        log.warning("--max-runtime %g s reached: stopped after %.1f s%s; checkpoint kept, --resume continues",
                    max_runtime or 0.0, ran, f" (a chunk of {jsrc.in_flight:,} records was cut: --resume applies "
                                             "it again)" if jsrc.in_flight else "")
    elif jsrc.stopped_by == "stop requested" and view.cut:
        report.status = "stopped"  # (the caller's stop_event too: not all it read is applied)
        report.extra["cut_records"] = view.cut
        log.warning("stopped on request, cutting a chunk of %s records in flight: --resume applies it again",
                    f"{view.cut:,}")
    report.extra = {k: v for k, v in report.extra.items() if v is not None}
    return report


class _ApplyView:
    """The apply job's progress, as an observer of its driver (engine/run.py) adds to it.

    ``done`` is the records applied by this run, from 0 from the start: the driver's own count at
    the start is the checkpoint's, and a rate from that to this run's count read negative.
    ``acked`` counts the target writes acknowledged so far, settled or not: a chunk (up to 1,000
    records) settles only once its last write is acknowledged, a minute apart at 20 WCU/s, and
    its writes landing meanwhile are progress all the same (reporting/progress.py).
    """

    def __init__(self, source: JournalSource) -> None:
        self.source = source
        self.status: Optional[str] = None
        self.cut = 0  # records of the chunk in flight cut by a stop (applied again on --resume)

    def attach(self, job: str, snapshot: Callable[[], Dict[str, Any]]) -> Callable[[], None]:
        return lambda: None

    def fields(self) -> Dict[str, Any]:
        p = self.source.pipeline
        c = p.counters.snapshot() if p is not None else {}
        out: Dict[str, Any] = {"done": self.source.records_applied,
                               "acked": sum(int(c.get(k, 0)) for k in ("written", "deleted", "skipped_existing"))}
        if self.status:
            out["status"] = self.status
        return out


def _request_bound(retry: RetryPolicy) -> float:
    """Seconds one write request can take, its retries included (at worst)."""
    return retry.max_attempts * (retry.max_delay + REQUEST_SECONDS)


def _cut_when_stopped(source: JournalSource, deadline: Optional[float], stop_event: Optional[threading.Event],
                      ended: threading.Event, view: _ApplyView, max_runtime: Optional[float],
                      request_bound: float) -> None:
    """--max-runtime, `replicate stop` or the caller's stop_event in the apply phase: the source
    checks them between chunks only, and one chunk under a write limit (1,000 records at 20
    WCU/s) takes most of a minute. Then the chunk in flight is cut: its queued batches are
    dropped (an abort, not an error). No record of it counts as applied, so the checkpoint stays
    before it and --resume applies it again — full images, so its writes that did land are
    written again harmlessly, and nothing after it was started. Requests already under way are
    waited for, not abandoned as a second Ctrl-C's are: one landing after this run returned
    could land after a resumed run's newer image of its key (the library's caller, or another
    process during --metrics-linger)."""
    while True:
        wait = 0.1 if deadline is None else min(0.1, max(0.0, deadline - time.monotonic()))
        if ended.wait(wait):
            return
        if deadline is not None and time.monotonic() >= deadline:
            why = "max runtime"
            say = f"--max-runtime {max_runtime or 0:g} s reached"
            break
        if stop_event is not None and stop_event.is_set():
            why, say = "stop requested", "stop requested"
            break
    # Between chunks the source stops on its own; one it had started reading as the stop came is
    # cut when it is handed on.
    while source.pipeline is None or not source.in_flight:
        if ended.wait(0.05):
            return
    p = source.pipeline
    source.stopped_by = why
    if why == "stop requested":
        view.cut = source.in_flight
    view.status = (f"stopping: {say}; cutting the chunk in flight "
                   f"({source.in_flight:,} records, applied again on --resume)")
    p.abandon_grace = max(p.abandon_grace, request_bound)
    p.abort.set()


def _journal_now(live: "_Live") -> Optional[Dict[str, Any]]:
    """The journal's figures for the report of a replication that ends early (what it holds is
    still to be applied by a resume), or None if they cannot be read."""
    try:
        fields = live.fields()
    except Exception:  # (a report of a failure must not fail on its figures)
        return None
    journal = fields.get("journal")
    return {"phase": fields.get("phase"), **journal} if isinstance(journal, dict) else None


def _as_replicate(rep: Report, journal: Optional[Dict[str, Any]]) -> None:
    """The backfill's own report (a copy's) made the replication's: its job, phase and journal."""
    rep.job = "replicate"
    if journal is not None:
        rep.extra.setdefault("phase", journal.pop("phase", None))
        rep.extra.setdefault("journal", journal)


def _stopped_backfill_report(e: InterruptedError_, source: TableRef, target: TableRef,
                             journal: Optional[Dict[str, Any]] = None) -> Report:
    """The report of a replication `replicate stop` ended during its backfill: the backfill's
    counts, no error (the caller marks it stopped)."""
    rep: Optional[Report] = getattr(e, "report", None)
    if rep is None:
        rep = Report(job="replicate", source=source.describe(), target=target.describe())
    _as_replicate(rep, journal)
    rep.error = None
    rep.error_exit_code = None
    rep.extra["phase"] = "backfill"
    rep.extra["stopped_by"] = "stop requested"
    return rep


def _write_failure_report(e: DdbMigrateError, path: Optional[str], source: TableRef, target: TableRef,
                          journal: Optional[Dict[str, Any]] = None) -> None:
    """--report of a replication that failed in any phase: its real exit code, the counts of the
    phase that failed (the backfill's own report when it was the backfill: filed as the
    replication's, with the journal it leaves, not as a copy), and the error."""
    rep = getattr(e, "report", None)
    if rep is None:
        rep = Report(job="replicate", source=source.describe(), target=target.describe())
        e.report = rep  # type: ignore[attr-defined]
    _as_replicate(rep, journal)
    rep.status = "interrupted" if e.exit_code == 130 else "failed"
    rep.error = rep.error or e.one_line()
    rep.error_exit_code = e.exit_code
    if path:
        rep.write_json(path)


def _reopen(store: CheckpointStore) -> None:
    """A replication is never "done": a stopped one resumes where it stopped (run_job marks it done)."""
    st = store.load()
    if st is not None and st.state == "done":
        st.state = "running"
        store.save(st)


__all__ = ["ensure_stream", "replicate"]
