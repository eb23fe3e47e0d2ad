"""``verify_tables``: prove the target equals transform(source), item by item, with bounded memory.

    source side ─Job: scan/read ─▶ transform, validate (a copy's processing) ─▶ compare sink ─┐ hash-partitioned
    target side ─Job: scan/read ─▶ key checks ─────────────────────────────────▶ compare sink ─┴▶ spill files
                                      (threads or processes)      partition by partition ─▶ differences

Each side (:mod:`ddbmigrate.verify.sides`) is a table (parallel segmented Scan) or an export
folder / S3 prefix (the file source). Each is read by a :class:`~ddbmigrate.engine.job.Job`
(:mod:`ddbmigrate.verify.side_jobs`) on the engine verify is given, one side after the other,
into a :class:`~ddbmigrate.sinks.compare_spill.CompareSpillSpec`; the jobs' dead letters become
the ``invalid`` and ``unreadable`` differences. Items are matched by the target's primary key;
the comparison runs in :mod:`ddbmigrate.verify.compare`, whose memory is bounded by
``memory_mb`` whatever the table size. The categories and the report are in
:mod:`ddbmigrate.verify.report`; ``repair`` in :mod:`ddbmigrate.verify.repair`. Spark keeps its
own scan and shuffle (:mod:`ddbmigrate.verify.spark`).

Invariants:
1. Counts add up (:meth:`VerifyReport.balanced`): every record read on either side ends in
   exactly one outcome (compared, sampled out, dropped by the transform, invalid, unreadable).
2. Nothing is written unless ``repair`` is asked for; deletes additionally need ``confirm``.
   Repairs are full-image puts and deletes (replay-safe) of what the source holds when the key
   is repaired (read again, not the scan's copy), and every repaired key is read back with a
   strongly consistent read before the report calls it fixed.
3. No item body reaches the terminal or the JSON report; bodies go only to the ``diff_path``
   file the user asked for.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from typing import (
    Any,
    Dict,
    List,
    Optional,
    Tuple,
    Union,
)

from ..aws.client import DynamoClient
from ..config import RetryPolicy, TableRef
from ..core.items import KeySchema
from ..core.specs import ProcessingSpec, TransformRef
from ..core.transform import Transform, TransformContext, load_transform
from ..engine.pipeline import Counters
from ..engine.run import Engine
from ..engine.threads import ThreadsEngine
from ..errors import DdbMigrateError, InterruptedError_, UsageError
from ..reporting import metrics
from ..reporting.progress import Progress
from ..reporting.report import finish, merge_stats
from ..sinks.compare_spill import CompareSpillSpec, spill_buffer
from ..sources.table_scan import TableScanSpec, default_segments
from ..state import leftovers
from .compare import ACTUAL, DEFAULT_BUDGET, EXPECTED, Comparer, partitions_for
from .repair import Confirm, no_repairs, repair_differences
from .report import DifferencesFile, VerifyReport, sample_confidence
from .scan import check_verify_options
from .side_jobs import ReadObserver, SideRun, run_side, side_job, side_outcomes, spills, stats_of
from .sides import Side, SideRef, open_side

# A verify's work folder, named for its process (state/leftovers.py).
WORK_PREFIX = "verify-"

DEFAULT_READERS = 8
# Ops per batch handed to a compare sink: it has no 25-item limit, and each write takes the
# spill's lock once, so larger batches cost less CPU (the queue holds a few of them).
SPILL_BATCH = 500
log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the job


def verify_tables(
    source: SideRef,
    target: SideRef,
    *,
    transform: Union[str, Transform, None] = None,
    sample: Optional[float] = None,
    keys_only: bool = False,
    diff_path: Optional[str] = None,
    report_path: Optional[str] = None,
    repair: bool = False,
    confirm: Optional[Confirm] = None,
    segments: Optional[int] = None,
    source_segments: Optional[int] = None,
    target_segments: Optional[int] = None,
    consistent_read: bool = False,
    memory_mb: Optional[float] = None,
    work_dir: Optional[str] = None,
    progress: str = "off",
    on_error: str = "fail",
    key_schema: Optional[KeySchema] = None,
    retry: Optional[RetryPolicy] = None,
    max_read_units: Optional[float] = None,
    readers: Optional[int] = None,
    source_client: Optional[DynamoClient] = None,
    target_client: Optional[DynamoClient] = None,
    source_side: Optional[Side] = None,
    target_side: Optional[Side] = None,
    s3: Any = None,
    input_format: str = "auto",
    follow_symlinks: bool = False,
    engine: Any = None,
    metrics_port: Optional[int] = None,
    metrics_host: str = "127.0.0.1",
    metrics_job: Optional[str] = None,
    cancel: Optional[threading.Event] = None,
    observer: Any = None,
) -> VerifyReport:
    """Compare ``target`` with ``transform(source)`` by primary key and report every difference.

    Each side is a :class:`TableRef` (or a table name) or a files location (export folder, file,
    glob or ``s3://`` prefix; ``s3`` is its :class:`~ddbmigrate.storage.stores.S3Settings`);
    ``source_side`` / ``target_side`` accept any prepared :class:`Side`.
    Items are matched by the target's key schema (``key_schema`` when the target is files and
    no table says it). ``sample`` (0 < rate <= 1) checks a deterministic key-hash fraction of the
    keys on both sides; ``keys_only`` compares presence only. ``memory_mb`` bounds the
    comparison's memory (default 256). ``repair`` rewrites missing and mismatched items, and deletes
    unexpected ones when ``confirm(message)`` agrees, to what a table source holds when the key
    is repaired (read again: it may have changed since the scan), then re-reads the repaired keys
    consistently. Returns the report; ``report.exit_code`` is 0 or 4.

    ``engine``: each side is read by a job on this engine (``ddbmigrate.engine.engine_for``):
    threads by default, or the processes engine's worker processes, which spill their own files;
    the comparison then runs here. A Spark engine spreads the scans and the comparison over
    Spark (two tables).
    """
    if engine is not None and engine.name == "spark":
        from .spark import verify_tables_spark

        return verify_tables_spark(  # type: ignore[no-any-return]
            source if isinstance(source, TableRef) else TableRef(str(source)),
            target if isinstance(target, TableRef) else TableRef(str(target)),
            spark=engine.settings, transform=transform if isinstance(transform, str) or transform is None
            else transform.name, sample=sample, keys_only=keys_only, diff_path=diff_path, report_path=report_path,
            repair=repair, confirm=confirm, segments=segments, source_segments=source_segments,
            target_segments=target_segments, consistent_read=consistent_read, memory_mb=memory_mb,
            progress=progress, on_error=on_error, retry=retry, max_read_units=max_read_units)
    check_verify_options(sample, on_error, repair, keys_only, max_read_units=max_read_units, report_path=report_path,
                         diff_path=diff_path)
    if memory_mb is not None and memory_mb <= 0:
        raise UsageError("--memory must be a positive number of MB")
    budget = int(memory_mb * 1024 * 1024) if memory_mb is not None else DEFAULT_BUDGET
    tf = load_transform(transform) if isinstance(transform, str) else transform
    retry = retry or RetryPolicy()
    # Each reader holds one page (about 1 MB); more threads add no speed under the GIL.
    nreaders = readers or DEFAULT_READERS
    run_on: Engine = engine if engine is not None else ThreadsEngine()

    # ---- open both sides (describe tables; decide the key schema and projections)
    src_desc: Optional[Dict[str, Any]] = None
    tgt_desc: Optional[Dict[str, Any]] = None
    if source_side is None:
        source_side, src_desc = open_side(source, source_client, s3, input_format, retry, nreaders,
                                              follow_symlinks)
    if target_side is None:
        target_side, tgt_desc = open_side(target, target_client, s3, input_format, retry, nreaders,
                                              follow_symlinks)
    keys = key_schema or target_side.key_schema or (source_side.key_schema if tf is None else None)
    if keys is None:
        raise UsageError("cannot tell the target's primary key: give --key-schema HASH:TYPE[,RANGE:TYPE]")
    if repair and target_side.client is None:
        raise UsageError("--repair needs a table as the target")

    # The sides are read one after the other, each at the whole read limit.
    if src_desc is not None:
        assert source_side.client is not None and source_side.key_schema is not None
        proj = None
        if keys_only and tf is None:
            proj = tuple(sorted(set(source_side.key_schema.names) | set(keys.names)))
        source_side.spec = TableScanSpec(
            source_side.client.ref, source_segments or segments or default_segments(src_desc), retry=retry,
            consistent_read=consistent_read, read_rate=max_read_units, projection=proj, raw=True)
    if tgt_desc is not None:
        assert target_side.client is not None
        target_side.spec = TableScanSpec(
            target_side.client.ref, target_segments or segments or default_segments(tgt_desc), retry=retry,
            consistent_read=consistent_read, read_rate=max_read_units,
            projection=tuple(keys.names) if keys_only else None, raw=True)
    # Items from the source table need key checks only when a transform or another key shape
    # could make them unfit for the target.
    trusted_expected = source_side.trusted and source_side.key_schema == keys
    trusted_actual = target_side.trusted and target_side.key_schema == keys

    # ---- work folder (absolute: worker processes write their spill files there), differences file
    base = work_dir or os.path.join(".ddbmigrate")
    os.makedirs(base, exist_ok=True)
    # A verify killed midway (kill -9) left its spill, as large as both tables: the next one deletes it.
    folder = os.path.abspath(tempfile.mkdtemp(prefix=leftovers.claim(base, WORK_PREFIX), dir=base))
    estimate = (source_side.estimate or 0) + (target_side.estimate or 0)
    if sample is not None:
        estimate = int(estimate * sample) + 1
    spill_dir = os.path.join(folder, "spill")
    comparer = Comparer(keys, spill_dir, partitions=partitions_for(estimate, budget), budget=budget,
                        keys_only=keys_only, sample=sample)
    report = VerifyReport(source=source_side.label, target=target_side.label, keys_only=keys_only,
                          sample_rate=sample, memory_budget_bytes=budget, partitions=comparer.partitions)
    report.extra = {k: v for k, v in {"transform": tf.name if tf else None}.items() if v}
    diffs = DifferencesFile(diff_path or os.path.join(folder, "differences.jsonl"))
    report.diff_path = diff_path
    src_table = source_side.client.ref.table if source_side.client else None
    tgt_table = target_side.client.ref.table if target_side.client else None

    def sink(side: int) -> CompareSpillSpec:
        return CompareSpillSpec(side, spill_dir, keys, comparer.partitions,
                                buffer_bytes=spill_buffer(budget, comparer.partitions), keys_only=keys_only,
                                sample=sample)

    # The expected side is literally what a copy would write (duplicates kept for the comparer;
    # ctx.segment None: verify's segments are not the copy's); the actual side only needs its
    # keys checked.
    runs = [
        side_job(EXPECTED, source_side.job_source(), ProcessingSpec(
            key_schema=keys, transform=TransformRef.of(tf), on_error=on_error, trusted=trusted_expected,
            source_key_schema=source_side.key_schema, source_table=src_table, target_table=tgt_table,
            dedupe=False, unit_segment=False, max_batch_ops=SPILL_BATCH, loaded=tf), sink(EXPECTED), label=source_side.label,
            estimate=source_side.estimate, readers=nreaders,
            dead_path=os.path.join(folder, "expected.deadletter.jsonl"), on_error=on_error,
            metrics=(metrics_host, metrics_port), metrics_job=metrics_job),
        side_job(ACTUAL, target_side.job_source(), ProcessingSpec(
            key_schema=keys, trusted=trusted_actual, source_key_schema=target_side.key_schema,
            source_table=tgt_table, target_table=tgt_table, dedupe=False, max_batch_ops=SPILL_BATCH), sink(ACTUAL),
            label=target_side.label, estimate=target_side.estimate, readers=nreaders,
            dead_path=os.path.join(folder, "actual.deadletter.jsonl"), on_error="fail",
            metrics=(metrics_host, metrics_port), metrics_job=metrics_job),
    ]
    counters = Counters()
    phase = {"status": "scan"}
    total = (source_side.estimate or 0) + (target_side.estimate or 0)
    reads = ReadObserver(observer)

    def snapshot() -> Dict[str, Any]:
        return {"done": reads.read(), "total": total or None, "status": phase["status"]}

    started = time.monotonic()
    display = Progress("verify", snapshot, mode=progress)
    # --metrics-port: one server for the whole verify, which each side job's driver serves through.
    server = metrics.acquire(metrics_host, metrics_port) if metrics_port is not None else None
    display.start()
    try:
        for run in runs:
            try:
                run_side(run, run_on, reads, cancel)
            except BaseException:
                counters.bump(run.counters)  # what a side that stopped had read
                raise
            side_outcomes(run, diffs, source_side.key_schema, tf is not None)
            counters.bump(run.counters)
        exp, act = spills(runs)
        report.spilled_bytes = exp.bytes + act.bytes
        counters.bump({"sampled_out_expected": exp.sampled_out, "sampled_out_actual": act.sampled_out})
        phase["status"] = "compare"
        cc = comparer.compare(diffs, sides=(exp, act))
        diffs.close()
        counters.bump({k: v for k, v in cc.as_dict().items()
                       if k not in ("equal", "missing", "unexpected", "mismatched")})
        report.equal, report.missing, report.unexpected, report.mismatched = cc.equal, cc.missing, cc.unexpected, cc.mismatched
        snap = counters.snapshot()
        report.invalid = snap.get("invalid", 0)
        report.unreadable = snap.get("unreadable_source", 0) + snap.get("unreadable_target", 0)
        report.preview = diffs.preview
        report.remaining = report.differences
        if sample is not None:
            report.confidence = sample_confidence(sample, report.differences)
        if repair and (report.missing or report.mismatched or report.unexpected):
            phase["status"] = "repair"
            assert target_side.client is not None
            # The source table is read again key by key before each repair: it may have been
            # written since it was scanned (a live replicate), and its old image must not win.
            report.repair = repair_differences(
                diffs.path, target_side.client, keys, confirm=confirm, source=source_side.client,
                source_keys=source_side.key_schema, transform=tf,
                context=TransformContext(source_table=src_table, target_table=tgt_table))
            r = report.repair
            report.remaining = (report.invalid + report.unreadable + r["still_different"] + r["rejected"]
                                + r["delete_skipped"])
        elif repair:
            report.repair = no_repairs()
    except KeyboardInterrupt:
        err = InterruptedError_("verify interrupted; nothing was changed unless --repair had started "
                                "(repairs are full-image writes: rerun to finish)")
        _unfinished(report, err, counters, runs, (source_side, target_side), time.monotonic() - started)
        raise err from None
    except DdbMigrateError as e:
        _unfinished(report, e, counters, runs, (source_side, target_side), time.monotonic() - started)
        raise
    finally:
        display.stop()
        if server is not None:
            metrics.release(server)
        diffs.close()
        shutil.rmtree(folder, ignore_errors=True)
    c = counters.snapshot()
    c["read"] = c.get("source_read", 0) + c.get("target_read", 0)
    stats = [s.client.stats.snapshot() for s in (source_side, target_side) if s.client is not None]
    finish(report, {k: v for k, v in c.items() if v}, merge_stats(*stats, *stats_of(runs)),
           time.monotonic() - started)
    report.timeline = display.timeline
    report.status = "done"
    if report_path:
        try:
            report.write_json(report_path)
        except OSError as e:
            # The path was checked before reading; if it fails now (a full disk, a folder removed
            # meanwhile) the comparison's verdict still stands: said, not replaced by an error.
            log.warning("could not write the report %s: %s", report_path, e.strerror or e)
    return report


def _unfinished(report: VerifyReport, error: DdbMigrateError, counters: Counters, runs: List[SideRun],
               sides: Tuple[Any, Any], elapsed: float) -> None:
    """A verify that stopped before its end carries its own report as ``error.report``: both sides
    named, what each read before it stopped, the units it consumed, the error and its exit code,
    and no verdict (see :attr:`VerifyReport.compared`)."""
    stats = [s.client.stats.snapshot() for s in sides if s.client is not None]
    c = counters.snapshot()
    c["read"] = c.get("source_read", 0) + c.get("target_read", 0)
    finish(report, {k: v for k, v in c.items() if v}, merge_stats(*stats, *stats_of(runs)), elapsed)
    report.status = "interrupted" if isinstance(error, InterruptedError_) else "failed"
    report.error = error.one_line()
    report.error_exit_code = error.exit_code
    setattr(error, "report", report)


__all__ = ["DEFAULT_READERS", "verify_tables"]
