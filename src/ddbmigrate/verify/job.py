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
import threading
import time
from collections import deque
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    Union,
)

import orjson

from ..aws.capacity import RateLimiter, TokenBucket
from ..aws.client import DynamoClient
from ..config import RetryPolicy
from ..core.items import KeySchema, WireItem
from ..core.processing import Processing, Processor
from ..core.records import DELETE, Chunk
from ..core.transform import Transform, TransformContext, load_transform
from ..engine.pipeline import Counters
from ..errors import InterruptedError_, TransformError, UsageError
from ..reporting.progress import Progress
from ..reporting.report import finish, merge_stats
from ..sources.table_scan import TableScanSource, default_segments
from .compare import ACTUAL, DEFAULT_BUDGET, EXPECTED, Comparer, partitions_for
from .repair import Confirm, repair_differences
from .report import DifferencesFile, VerifyReport, sample_confidence
from .sides import Side, SideRef, check_file_failures, open_side

DEFAULT_READERS = 8


def check_verify_options(sample: Optional[float], on_error: str, repair: bool, keys_only: bool) -> None:
    """The usage checks every verify engine (local, Spark) makes before reading anything."""
    if sample is not None and not (0 < sample <= 1):
        raise UsageError(f"--sample must be a rate in (0, 1], not {sample}")
    if on_error not in ("fail", "skip"):
        raise UsageError(f"--on-error must be fail or skip, not {on_error!r}")
    if repair and keys_only:
        raise UsageError("--repair needs full items; it cannot be combined with --keys-only")


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
    """
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


# --------------------------------------------------------------------------- scan phase


class ItemFeed(Protocol):
    """Where :func:`scan_sides` hands each side's items: the Comparer locally, the shuffle on Spark."""

    def add(self, side: int, items: Iterable[WireItem]) -> None: ...


DiffWriter = Callable[[Dict[str, Any]], None]


def scan_sides(src: Side, tgt: Side, comparer: ItemFeed, keys: KeySchema, tf: Optional[Transform],
               ctx: TransformContext, check_expected: bool, check_actual: bool, on_error: str, counters: Counters,
               diffs: DiffWriter, readers: int) -> None:
    """Read both sides with one pool of threads, units interleaved so both sides advance together.

    Shared by both engines (a Spark verify task runs it on one segment of one side), so a table
    read on Spark is checked and counted exactly as it is locally.
    """
    su = [(EXPECTED, u) for u in src.source.units()]
    tu = [(ACTUAL, u) for u in tgt.source.units()]
    work: Deque[Tuple[int, str]] = deque()
    for i in range(max(len(su), len(tu))):
        if i < len(su):
            work.append(su[i])
        if i < len(tu):
            work.append(tu[i])
    stop = threading.Event()
    errors: List[BaseException] = []
    sides = {EXPECTED: src, ACTUAL: tgt}
    # The pipeline's own processing step: the target must hold exactly what a copy would write.
    step = Processor(Processing(key_schema=keys, transform=tf, context=ctx, source_key_schema=src.key_schema))

    def handle(side: int, chunk: Chunk, unit: str) -> None:
        # Items are parsed, transformed and spilled one at a time (generators below), so a
        # reader holds one page (raw bytes) plus one item, never a whole parsed page.
        items: Sequence[Any] = chunk.items
        parse = chunk.raw is not None
        if chunk.raw is not None:
            items = chunk.raw
        elif chunk.ops is not None:
            if any(kind == DELETE for kind, _ in chunk.ops):
                raise UsageError(f"{sides[side].label}: an incremental export (with deletes) cannot be verified; "
                                 "verify a full export or the table")
            items = [img for _kind, img in chunk.ops]
        name = "source" if side == EXPECTED else "target"
        counts: Dict[str, int] = {f"{name}_read": len(items) + len(chunk.rejects)}
        extra = chunk.counts or {}
        if extra.get("read"):
            # Records the source resolved itself (superseded versions of a key in an
            # incremental export): read, and collapsed into the version we compare.
            counts[f"{name}_read"] += int(extra["read"])
            counts[f"{name}_collapsed"] = int(extra["read"])
        for raw, reason, origin in chunk.rejects:
            counts[f"unreadable_{name}"] = counts.get(f"unreadable_{name}", 0) + 1
            diffs({"category": "unreadable", "side": name, "origin": origin, "reason": reason, "raw": raw[:10_000]})

        def actual() -> Iterator[WireItem]:
            for i, it in enumerate(items):
                if parse:
                    it = orjson.loads(it)
                if check_actual:
                    p = keys.problem(it)
                    if p:
                        counts["unreadable_target"] = counts.get("unreadable_target", 0) + 1
                        diffs({"category": "unreadable", "side": name, "reason": f"target record: {p}",
                               "origin": _origin(chunk, i)})
                        continue
                yield it

        def expected() -> Iterator[WireItem]:
            for i, item in enumerate(items):
                if parse:
                    item = orjson.loads(item)
                if tf is not None:
                    try:
                        outs = step.apply(item, ctx)
                    except TransformError as e:
                        skey = step.source_key(item)
                        if on_error == "fail":
                            raise TransformError(f"{e.message} (source key {orjson.dumps(skey).decode()})",
                                                 code=e.code) from e
                        counts["transform_errors"] = counts.get("transform_errors", 0) + 1
                        continue
                    if not outs:
                        counts["dropped"] = counts.get("dropped", 0) + 1
                        continue
                    if len(outs) > 1:
                        counts["fanout_extra"] = counts.get("fanout_extra", 0) + len(outs) - 1
                else:
                    outs = [item]
                for o in outs:
                    if check_expected:
                        p = step.problem(o)
                        if p:
                            counts["invalid"] = counts.get("invalid", 0) + 1
                            diffs({"category": "invalid", "reason": p, "source_key": step.source_key(item),
                                   "origin": _origin(chunk, i), "expected": o})
                            continue
                    yield o

        comparer.add(side, actual() if side == ACTUAL else expected())
        counters.bump(counts)

    def worker() -> None:
        try:
            while not stop.is_set():
                try:
                    side, unit = work.popleft()
                except IndexError:
                    return
                for chunk in sides[side].source.read(unit, None, stop):
                    handle(side, chunk, unit)
                    if stop.is_set():
                        return
        except BaseException as e:  # the first failure stops every reader
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=worker, name=f"verify-reader-{i}", daemon=True)
               for i in range(max(1, min(readers, len(work))))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:
        stop.set()
        for t in threads:
            t.join()
        raise
    if errors:
        raise errors[0]


def _origin(chunk: Chunk, i: int) -> Optional[str]:
    if chunk.origins is not None and i < len(chunk.origins):
        return chunk.origins[i]
    return None


__all__ = ["DEFAULT_READERS", "DiffWriter", "ItemFeed", "check_verify_options", "scan_sides", "verify_tables"]
