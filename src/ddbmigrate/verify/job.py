"""``verify_tables``: prove the target equals transform(source), item by item, with bounded memory.

    source side ──scan/read──▶ transform (fan-out, drops) ──▶ expected ─┐   hash-partitioned
    target side ──scan/read──────────────────────────────────▶ actual  ─┴─▶ spill files (disk)
                                                         partition by partition ─▶ differences

Each side (:mod:`ddbmigrate.verify.sides`) is a table (parallel segmented Scan) or an export
folder / S3 prefix (the file source); both are read at the same time by one pool of reader
threads (:func:`scan_sides`, which the Spark engine runs per segment too). Items are matched by
the target's primary key; the comparison runs in :mod:`ddbmigrate.verify.compare`, whose memory
is bounded by ``memory_mb`` whatever the table size. The categories and the report are in
:mod:`ddbmigrate.verify.report`; ``repair`` in :mod:`ddbmigrate.verify.repair`.

Invariants:
1. Counts add up (:meth:`VerifyReport.balanced`): every record read on either side ends in
   exactly one outcome (compared, sampled out, dropped by the transform, invalid, unreadable).
2. Nothing is written unless ``repair`` is asked for; deletes additionally need ``confirm``.
   Repairs are full-image puts and deletes (replay-safe), and every repaired key is read back
   with a strongly consistent read before the report calls it fixed.
3. No item body reaches the terminal or the JSON report; bodies go only to the ``diff_path``
   file the user asked for.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import (
    Any,
    Dict,
    Optional,
    Union,
)

from ..aws.capacity import RateLimiter, TokenBucket
from ..aws.client import DynamoClient
from ..config import RetryPolicy, TableRef
from ..core.items import KeySchema
from ..core.transform import Transform, TransformContext, load_transform
from ..engine.pipeline import Counters
from ..errors import InterruptedError_, UsageError
from ..reporting.progress import Progress
from ..reporting.report import finish, merge_stats
from ..sources.table_scan import TableScanSource, default_segments
from .compare import ACTUAL, DEFAULT_BUDGET, EXPECTED, Comparer, partitions_for
from .repair import Confirm, repair_differences
from .report import DifferencesFile, VerifyReport, sample_confidence
from .scan import check_verify_options, scan_sides
from .sides import Side, SideRef, check_file_failures, open_side

DEFAULT_READERS = 8


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
    engine: Any = None,
) -> VerifyReport:
    """Compare ``target`` with ``transform(source)`` by primary key and report every difference.

    Each side is a :class:`TableRef` (or a table name) or a files location (export folder, file,
    glob or ``s3://`` prefix; ``s3`` is its :class:`~ddbmigrate.storage.stores.S3Settings`);
    ``source_side`` / ``target_side`` accept any prepared :class:`Side`.
    Items are matched by the target's key schema (``key_schema`` when the target is files and
    no table says it). ``sample`` (0 < rate <= 1) checks a deterministic key-hash fraction of the
    keys on both sides; ``keys_only`` compares presence only. ``memory_mb`` bounds the
    comparison's memory (default 256). ``repair`` rewrites missing and mismatched items from the
    expected side and deletes unexpected ones when ``confirm(message)`` agrees, then re-reads the
    repaired keys consistently. Returns the report; ``report.exit_code`` is 0 or 4.

    ``engine``: a Spark engine (``ddbmigrate.engine.engine_for("spark")``) spreads the scans and
    the comparison over Spark (two tables); otherwise both sides are read by threads of this
    process (on the processes engine too: a verify's memory is bounded by its disk spill).
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
    check_verify_options(sample, on_error, repair, keys_only)
    if memory_mb is not None and memory_mb <= 0:
        raise UsageError("--memory must be a positive number of MB")
    budget = int(memory_mb * 1024 * 1024) if memory_mb is not None else DEFAULT_BUDGET
    tf = load_transform(transform) if isinstance(transform, str) else transform
    retry = retry or RetryPolicy()
    # Each reader holds one page (about 1 MB); more threads add no speed under the GIL.
    nreaders = readers or DEFAULT_READERS

    # ---- open both sides (describe tables; decide the key schema and projections)
    src_desc: Optional[Dict[str, Any]] = None
    tgt_desc: Optional[Dict[str, Any]] = None
    if source_side is None:
        source_side, src_desc = open_side(source, source_client, s3, input_format, retry, nreaders)
    if target_side is None:
        target_side, tgt_desc = open_side(target, target_client, s3, input_format, retry, nreaders)
    keys = key_schema or target_side.key_schema or (source_side.key_schema if tf is None else None)
    if keys is None:
        raise UsageError("cannot tell the target's primary key: give --key-schema HASH:TYPE[,RANGE:TYPE]")
    if repair and target_side.client is None:
        raise UsageError("--repair needs a table as the target")

    limiter: RateLimiter = TokenBucket(max_read_units) if max_read_units else RateLimiter()
    if src_desc is not None:
        assert source_side.client is not None and source_side.key_schema is not None
        proj = None
        if keys_only and tf is None:
            proj = sorted(set(source_side.key_schema.names) | set(keys.names))
        source_side.source = TableScanSource(
            source_side.client, source_side.client.ref.table, source_segments or segments or default_segments(src_desc),
            consistent_read=consistent_read, limiter=limiter, projection=proj, raw=True)
    if tgt_desc is not None:
        assert target_side.client is not None
        target_side.source = TableScanSource(
            target_side.client, target_side.client.ref.table, target_segments or segments or default_segments(tgt_desc),
            consistent_read=consistent_read, limiter=limiter, projection=list(keys.names) if keys_only else None,
            raw=True)
    # Items from the source table need key checks only when a transform or another key shape
    # could make them unfit for the target.
    check_expected = not (source_side.trusted and tf is None and source_side.key_schema == keys)
    check_actual = not (target_side.trusted and target_side.key_schema == keys)

    # ---- work folder, comparer, differences file
    base = work_dir or os.path.join(".ddbmigrate")
    os.makedirs(base, exist_ok=True)
    folder = tempfile.mkdtemp(prefix="verify-", dir=base)
    estimate = (source_side.estimate or 0) + (target_side.estimate or 0)
    if sample is not None:
        estimate = int(estimate * sample) + 1
    comparer = Comparer(keys, os.path.join(folder, "spill"), partitions=partitions_for(estimate, budget),
                        budget=budget, keys_only=keys_only, sample=sample)
    report = VerifyReport(source=source_side.label, target=target_side.label, keys_only=keys_only,
                          sample_rate=sample, memory_budget_bytes=budget, partitions=comparer.partitions)
    report.extra = {k: v for k, v in {"transform": tf.name if tf else None}.items() if v}
    diffs = DifferencesFile(diff_path or os.path.join(folder, "differences.jsonl"))
    report.diff_path = diff_path
    counters = Counters()
    phase = {"status": "scan"}
    total = (source_side.estimate or 0) + (target_side.estimate or 0)

    def snapshot() -> Dict[str, Any]:
        c = counters.snapshot()
        return {"done": c.get("source_read", 0) + c.get("target_read", 0), "total": total or None,
                "status": phase["status"]}

    started = time.monotonic()
    display = Progress("verify", snapshot, mode=progress)
    display.start()
    stats_list = [s.client.stats for s in (source_side, target_side) if s.client is not None]
    try:
        ctx = TransformContext(source_table=source_side.client.ref.table if source_side.client else None,
                               target_table=target_side.client.ref.table if target_side.client else None)
        scan_sides(source_side, target_side, comparer, keys, tf, ctx, check_expected, check_actual, on_error,
              counters, diffs, nreaders)
        for side in (source_side, target_side):
            check_file_failures(side)
        comparer.close()
        report.spilled_bytes = sum(s.bytes for s in comparer.spills)
        counters.bump({"sampled_out_expected": comparer.sampled_out[EXPECTED],
                       "sampled_out_actual": comparer.sampled_out[ACTUAL]})
        phase["status"] = "compare"
        cc = comparer.compare(diffs)
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
            report.repair = repair_differences(diffs.path, target_side.client, keys, confirm=confirm)
            r = report.repair
            report.remaining = (report.invalid + report.unreadable + r["still_different"] + r["rejected"]
                                + r["delete_skipped"])
        elif repair:
            report.repair = {"put": 0, "deleted": 0, "delete_skipped": 0, "rejected": 0, "rechecked": 0,
                             "still_different": 0}
    except KeyboardInterrupt:
        raise InterruptedError_("verify interrupted; nothing was changed unless --repair had started "
                                "(repairs are full-image writes: rerun to finish)") from None
    finally:
        display.stop()
        diffs.close()
        shutil.rmtree(folder, ignore_errors=True)
    c = counters.snapshot()
    c["read"] = c.get("source_read", 0) + c.get("target_read", 0)
    finish(report, {k: v for k, v in c.items() if v}, merge_stats(*(s.snapshot() for s in stats_list)),
           time.monotonic() - started)
    report.timeline = display.timeline
    report.status = "done"
    if report_path:
        report.write_json(report_path)
    return report


__all__ = ["DEFAULT_READERS", "verify_tables"]
