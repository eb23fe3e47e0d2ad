"""``verify_tables_spark``: verify on Spark, the scans and the comparison spread over tasks.

    map tasks (one per source segment and per target segment)      reduce tasks (by key hash)
    scan -> transform -> key checks (verify.job.scan_sides)     ──▶  compare.Comparer (bounded
    emit (key bytes, side, item)  + per-unit counters           ─┘   memory, spills to disk)
                                                                     -> differences part file

Spark's shuffle does what the local engine's spill files do: it brings both sides of a key
together. Each map task reads its segment through the local engine's own scan
(:func:`ddbmigrate.verify.job.scan_sides`) and each reduce task compares with the local
engine's :class:`~ddbmigrate.verify.compare.Comparer`, so both engines find the same
categories and counts and return the same :class:`~ddbmigrate.verify.report.VerifyReport`.

Invariants:
1. Counts travel through the shuffle with the items, so a retried task (whose output Spark
   discards) never counts twice, and the report adds up (``VerifyReport.balanced``).
2. Nothing is written unless ``repair`` is asked for; repair replays the joined local
   differences file on the driver, as the local engine does.
3. The core never imports pyspark: it is imported lazily, inside the task and driver functions.
"""

from __future__ import annotations

import functools
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import orjson

from ..aws.capacity import limiter_for
from ..aws.client import DynamoClient
from ..config import RetryPolicy, TableRef
from ..core.items import KeySchema
from ..core.transform import TransformContext, load_transform
from ..engine.pipeline import Counters
from ..engine.run import pool_size
from ..engine.spark import (
    FAIL_ONCE_ENV,
    SparkSettings,
    check_s3_key_url,
    divide_rate,
    driver_s3_settings,
    java_error_line,
    load_task_transform,
    parse_fail_once,
    segment_file,
    spark_context,
    upload,
)
from ..errors import (
    DdbMigrateError,
    FatalError,
    InterruptedError_,
    UsageError,
    from_wire,
    to_wire,
)
from ..reporting.progress import Progress
from ..reporting.report import finish, merge_stats
from ..sources.table_scan import TableScanSource, default_segments
from .compare import (
    ACTUAL,
    DEFAULT_BUDGET,
    EXPECTED,
    Comparer,
    key_hash,
    partitions_for,
)
from .repair import no_repairs, repair_differences
from .report import PREVIEW, VerifyReport, preview_entry, sample_confidence
from .scan import check_verify_options, scan_sides
from .sides import EMPTY_SOURCE, Side

_SIDE_ITEM = (0, 1)  # compare.EXPECTED, compare.ACTUAL
_DIFF, _COUNTS, _ERROR = 2, 3, 4


@dataclass(frozen=True)
class VerifyTask:
    source: TableRef
    target: TableRef
    source_keys: KeySchema
    target_keys: KeySchema
    keys: KeySchema  # what both sides are matched by (the target's key)
    source_segments: int
    target_segments: int
    retry: Any = None
    transform: Optional[str] = None
    transform_hash: Optional[str] = None
    on_error: str = "fail"
    keys_only: bool = False
    sample: Optional[float] = None
    consistent_read: bool = False
    read_rate: Optional[float] = None
    budget: int = 256 * 1024 * 1024
    partition_estimate: int = 0
    diff_path: Optional[str] = None
    digits: int = 5
    fault: Optional[Tuple[int, int, str]] = None
    output_s3: Any = None


class TaskOutput:
    """A task's own output file: local (started afresh per attempt) or S3 (uploaded at the end)."""

    def __init__(self, target: Optional[str], s3: Any = None) -> None:
        self.target = target
        self.s3 = s3
        self.lines = 0
        self._tmpdir: Optional[str] = None
        self._fh: Any = None
        if target is None:
            return
        if target.startswith("s3://"):
            check_s3_key_url(target)
            self._tmpdir = tempfile.mkdtemp(prefix="ddbmigrate-out-")
            self.local = os.path.join(self._tmpdir, os.path.basename(target))
        else:
            self.local = target
            os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        self._fh = open(self.local, "wb")

    def write(self, line: bytes) -> None:
        self.lines += 1
        if self._fh is not None:
            self._fh.write(line)

    def publish(self) -> Optional[str]:
        if self._fh is None:
            return None
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        try:
            if self.lines == 0:
                if self._tmpdir is None:
                    os.unlink(self.local)
                return None
            if self._tmpdir is not None and self.target is not None:
                upload(self.local, self.target, self.s3)
            return self.target
        finally:
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)


class _ShuffleFeed:
    """Stands in for the Comparer inside verify.job.scan_sides: hands the items to the map task's output."""

    def __init__(self, out: Any) -> None:
        self.out = out

    def add(self, side: int, items: Iterable[Any]) -> None:
        # Consumed here, in the scan thread: verify may pass a generator that counts (drops,
        # invalid items) as it is iterated, and counts it must be before scan_sides bumps them.
        batch: List[Any] = []
        for it in items:
            batch.append(it)
            if len(batch) >= 500:
                self.out.put(("items", side, batch))
                batch = []
        if batch:
            self.out.put(("items", side, batch))


def verify_partition(kb: bytes) -> int:
    """Partition of a key (the same hash compare.Comparer partitions by); deterministic everywhere."""
    return key_hash(kb)[0]


def _verify_map(task: VerifyTask, units: Iterable[int]) -> Iterator[Tuple[bytes, Tuple[int, bytes]]]:
    attempt = _attempt()
    for u in units:
        u = int(u)
        side, seg = (0, u) if u < task.source_segments else (1, u - task.source_segments)
        yield from _verify_unit(task, side, seg, attempt)


def _attempt() -> int:
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        return int(ctx.attemptNumber()) if ctx is not None else 0
    except ImportError:
        return 0


def _verify_unit(task: VerifyTask, side: int, seg: int, attempt: int) -> Iterator[Tuple[bytes, Tuple[int, bytes]]]:
    """Read one segment of one side through verify's own scan logic; stream what it produces."""
    ref = task.source if side == 0 else task.target
    total = task.source_segments if side == 0 else task.target_segments
    client = DynamoClient(ref, pool_size=pool_size(1, 0), retry=task.retry)
    tf = load_task_transform(task.transform, task.transform_hash) if side == 0 else None
    proj = None
    if task.keys_only and side == 1:
        proj = list(task.keys.names)
    elif task.keys_only and tf is None:
        proj = sorted(set(task.source_keys.names) | set(task.keys.names))
    scan = TableScanSource(client, ref.table, total, consistent_read=task.consistent_read,
                           limiter=limiter_for(task.read_rate), segments=[seg], projection=proj)
    me = Side(ref.describe(), scan, task.source_keys if side == 0 else task.target_keys, None, client, trusted=True)
    other = Side("", EMPTY_SOURCE, None, None, None)
    src, tgt = (me, other) if side == 0 else (other, me)
    check_expected = not (tf is None and task.source_keys == task.keys)
    check_actual = task.target_keys != task.keys
    counters = Counters()
    q: "queue.Queue[Any]" = queue.Queue(maxsize=8)  # bounded: the scan waits for the shuffle writer

    def diffs(d: Dict[str, Any]) -> None:
        q.put(("diff", d))

    def run() -> None:
        try:
            # The same context as a local verify (no segment), so both engines expect the same items.
            ctx = TransformContext(source_table=task.source.table, target_table=task.target.table)
            # The feed stands in for the Comparer, ``diffs`` for the differences file.
            scan_sides(src, tgt, _ShuffleFeed(q), task.keys, tf, ctx, check_expected, check_actual, task.on_error,
                       counters, diffs, 1)
            q.put(("end", None))
        except BaseException as e:  # handed to the generator, which decides what Spark sees
            q.put(("end", e))

    t = threading.Thread(target=run, name=f"verify-scan-{side}-{seg}", daemon=True)
    t.start()
    ks = task.keys
    fault = task.fault if (task.fault is not None and side == 0 and task.fault[0] == seg) else None
    batches = 0
    tag = f"{side}:{seg}".encode()
    n = 0
    try:
        while True:
            msg = q.get()
            if msg[0] == "items":
                for it in msg[2]:
                    kb = orjson.dumps(ks.key(it))
                    body = orjson.dumps(ks.project(it) if task.keys_only else it)
                    yield kb, (msg[1], body)
                batches += 1
                if fault is not None and batches == fault[1] and not os.path.exists(fault[2]):
                    with open(fault[2], "w") as fh:
                        fh.write(f"verify segment {seg} failed once on purpose\n")
                    raise RuntimeError(f"injected task failure in verify segment {seg} ({FAIL_ONCE_ENV})")
            elif msg[0] == "diff":
                n += 1
                yield b"\x00d" + tag + b":" + str(n).encode(), (_DIFF, orjson.dumps(msg[1]))
            else:
                err = msg[1]
                if err is not None and not isinstance(err, DdbMigrateError):
                    raise err
                payload = {"counters": counters.snapshot(), "stats": client.stats.snapshot(), "attempt": attempt}
                yield b"\x00c" + tag, (_COUNTS, orjson.dumps(payload))
                if err is not None:
                    yield b"\x00e" + tag, (_ERROR, orjson.dumps({"segment": seg, "side": side,
                                                                   "error": to_wire(err)}))
                return
    finally:
        client.close()


def _verify_reduce(task: VerifyTask, records: Iterable[Tuple[bytes, Tuple[int, bytes]]]) -> Iterator[Dict[str, Any]]:
    """Compare one hash partition with the local engine's Comparer (bounded memory, spills)."""
    pid = 0
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        pid = int(ctx.partitionId()) if ctx is not None else 0
    except ImportError:
        pass
    out = TaskOutput(segment_file(task.diff_path, pid, task.digits).replace(".segment-", ".part-")
                     if task.diff_path else None, task.output_s3)
    preview: List[Dict[str, Any]] = []
    folder = tempfile.mkdtemp(prefix="ddbmigrate-verify-")
    counters: Dict[str, int] = {}
    stats: List[Dict[str, Any]] = []
    errors: List[Dict[str, Any]] = []
    attempts = 0

    def emit(d: Dict[str, Any]) -> None:
        out.write(orjson.dumps(d) + b"\n")
        if len(preview) < PREVIEW:
            preview.append(preview_entry(d))

    try:
        comparer = Comparer(task.keys, os.path.join(folder, "spill"),
                            partitions=partitions_for(task.partition_estimate, task.budget), budget=task.budget,
                            keys_only=task.keys_only, sample=task.sample)
        bufs: Dict[int, List[Any]] = {0: [], 1: []}
        for _kb, (kind, body) in records:
            if kind in _SIDE_ITEM:
                bufs[kind].append(orjson.loads(body))
                if len(bufs[kind]) >= 1000:
                    comparer.add(kind, bufs[kind])
                    bufs[kind] = []
            elif kind == _DIFF:
                emit(orjson.loads(body))
            elif kind == _COUNTS:
                c = orjson.loads(body)
                for k, v in c["counters"].items():
                    counters[k] = counters.get(k, 0) + int(v)
                stats.append(c["stats"])
                attempts += int(c.get("attempt", 0))
            elif kind == _ERROR:
                errors.append(orjson.loads(body))
        for side, items in bufs.items():
            if items:
                comparer.add(side, items)
        comparer.close()
        spilled = sum(sp.bytes for sp in comparer.spills)
        cc = comparer.compare(emit)
        result = {"partition": pid, "compare": cc.as_dict(), "counters": counters, "stats": stats,
                  "sampled_out": list(comparer.sampled_out), "preview": preview, "spilled": spilled,
                  "errors": errors, "attempts": attempts, "reduce_attempt": _attempt()}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result["diff_file"] = out.publish()
    yield result


def verify_tables_spark(
    source: TableRef,
    target: TableRef,
    *,
    spark: Optional[SparkSettings] = None,
    transform: Optional[str] = None,
    sample: Optional[float] = None,
    keys_only: bool = False,
    diff_path: Optional[str] = None,
    report_path: Optional[str] = None,
    repair: bool = False,
    confirm: Optional[Callable[[str], bool]] = None,
    segments: Optional[int] = None,
    source_segments: Optional[int] = None,
    target_segments: Optional[int] = None,
    consistent_read: bool = False,
    memory_mb: Optional[float] = None,
    progress: str = "off",
    on_error: str = "fail",
    retry: Any = None,
    max_read_units: Optional[float] = None,
) -> Any:
    """``verify_tables`` for two tables with the scans and the comparison spread over Spark.

    Same categories, counts and report (``verify.VerifyReport``) as the local engine. With a
    local ``diff_path`` the per-partition difference files are joined into it on the driver
    (which ``repair`` then replays); with ``s3://`` they stay as ``<diff>.part-NNNNN.jsonl``.
    """
    if not isinstance(source, TableRef) or not isinstance(target, TableRef):
        raise UsageError("verify --engine spark compares two tables; verify files with the local engine")
    check_verify_options(sample, on_error, repair, keys_only, max_read_units=max_read_units, report_path=report_path,
                         diff_path=diff_path)
    if repair and diff_path is not None and diff_path.startswith("s3://"):
        raise UsageError("--repair with --engine spark needs a local --diff file")
    budget = int(memory_mb * 1024 * 1024) if memory_mb is not None else DEFAULT_BUDGET
    settings = spark or SparkSettings()
    retry = retry or RetryPolicy()
    tf = load_transform(transform) if transform else None
    sc_, dc_ = DynamoClient(source, pool_size=4, retry=retry), DynamoClient(target, pool_size=4, retry=retry)
    try:
        sdesc, tdesc = sc_.describe_table(), dc_.describe_table()
    finally:
        sc_.close()
    skeys, tkeys = KeySchema.from_table_description(sdesc), KeySchema.from_table_description(tdesc)
    ss = source_segments or segments or default_segments(sdesc)
    ts = target_segments or segments or default_segments(tdesc)
    estimate = int(sdesc.get("ItemCount") or 0) + int(tdesc.get("ItemCount") or 0)
    sc, created = spark_context(settings)
    work_diff = diff_path
    tmp_diff_dir: Optional[str] = None
    if repair and diff_path is None:
        tmp_diff_dir = tempfile.mkdtemp(prefix="ddbmigrate-diff-", dir=os.path.abspath("."))
        work_diff = os.path.join(tmp_diff_dir, "differences.jsonl")
    try:
        slots = max(1, min(ss + ts, settings.max_tasks or int(sc.defaultParallelism or 1)))
        reducers = max(int(sc.defaultParallelism or 1), min(10_000, estimate // 1_000_000 + 1))
        task = VerifyTask(
            source=source, target=target, source_keys=skeys, target_keys=tkeys, keys=tkeys, source_segments=ss,
            target_segments=ts, retry=retry, transform=tf.name if tf else None,
            transform_hash=tf.code_hash if tf else None, on_error=on_error, keys_only=keys_only, sample=sample,
            consistent_read=consistent_read, read_rate=divide_rate(max_read_units, slots), budget=budget,
            partition_estimate=estimate // reducers + 1,
            diff_path=os.path.abspath(work_diff) if work_diff and not work_diff.startswith("s3://") else work_diff,
            digits=max(5, len(str(reducers - 1))), fault=parse_fail_once(os.environ.get(FAIL_ONCE_ENV)),
            output_s3=driver_s3_settings(target),
        )
        report = VerifyReport(source=source.describe(), target=target.describe(), keys_only=keys_only,
                              sample_rate=sample, memory_budget_bytes=budget, partitions=reducers)
        report.extra = {k: v for k, v in {"transform": tf.name if tf else None}.items() if v}
        started = time.monotonic()
        display = Progress("verify", lambda: {"done": 0, "total": None, "status": "spark"}, mode=progress)
        display.start()
        try:
            rdd = sc.parallelize(range(ss + ts), ss + ts).mapPartitions(functools.partial(_verify_map, task))
            group = f"ddbmigrate-verify-{uuid.uuid4().hex[:8]}"
            sc.setJobGroup(group, "ddbmigrate verify", interruptOnCancel=True)
            try:
                results = rdd.partitionBy(reducers, verify_partition) \
                    .mapPartitions(functools.partial(_verify_reduce, task)).collect()
            except KeyboardInterrupt:
                sc.cancelJobGroup(group)
                raise InterruptedError_("verify interrupted; nothing was changed") from None
            except Exception as e:
                if isinstance(e, DdbMigrateError):
                    raise
                raise FatalError(f"verify: Spark job failed (after Spark's task retries): {java_error_line(e)}") \
                    from None
        finally:
            display.stop()
        counters: Dict[str, int] = {}
        stats_snaps: List[Dict[str, Any]] = []
        preview: List[Dict[str, Any]] = []
        errors: List[Dict[str, Any]] = []
        parts: List[str] = []
        compare_totals: Dict[str, int] = {}
        sampled_out = [0, 0]
        retries = 0
        for r in sorted(results, key=lambda r: r["partition"]):
            for k, v in r["counters"].items():
                counters[k] = counters.get(k, 0) + v
            for k, v in r["compare"].items():
                compare_totals[k] = max(compare_totals.get(k, 0), v) if k == "max_partition_records" \
                    else compare_totals.get(k, 0) + v
            stats_snaps.extend(r["stats"])
            preview.extend(r["preview"])
            errors.extend(r["errors"])
            sampled_out[EXPECTED] += r["sampled_out"][EXPECTED]
            sampled_out[ACTUAL] += r["sampled_out"][ACTUAL]
            report.spilled_bytes += int(r["spilled"])
            retries += int(r["attempts"]) + int(r["reduce_attempt"])
            if r["diff_file"]:
                parts.append(r["diff_file"])
        if errors:
            first = sorted(errors, key=lambda x: (x["side"], x["segment"]))[0]
            raise from_wire(first["error"], f"segment {first['segment']}: ")
        counters["sampled_out_expected"] = sampled_out[EXPECTED]
        counters["sampled_out_actual"] = sampled_out[ACTUAL]
        for k, v in compare_totals.items():
            if k not in ("equal", "missing", "unexpected", "mismatched"):
                counters[k] = counters.get(k, 0) + v
        report.equal = compare_totals.get("equal", 0)
        report.missing = compare_totals.get("missing", 0)
        report.unexpected = compare_totals.get("unexpected", 0)
        report.mismatched = compare_totals.get("mismatched", 0)
        report.invalid = counters.get("invalid", 0)
        report.unreadable = counters.get("unreadable_source", 0) + counters.get("unreadable_target", 0)
        report.preview = preview[:20]
        report.remaining = report.differences
        if sample is not None:
            report.confidence = sample_confidence(sample, report.differences)
        # Local differences: join the part files into the one file the user named.
        if work_diff and not work_diff.startswith("s3://"):
            with open(work_diff, "wb") as fh:
                for part in sorted(parts):
                    with open(part, "rb") as pf:
                        shutil.copyfileobj(pf, fh)
                    os.unlink(part)
            report.diff_path = diff_path
        elif work_diff:
            report.diff_path = segment_file(work_diff, 0, task.digits).replace(
                ".segment-" + "0" * task.digits, ".part-*")
            report.extra["diff_files"] = sorted(parts)
        if repair and (report.missing or report.mismatched or report.unexpected):
            assert work_diff is not None
            # As the local engine repairs: each key read again from the source first.
            report.repair = repair_differences(
                work_diff, dc_, tkeys, confirm=confirm, source=sc_, source_keys=skeys, transform=tf,
                context=TransformContext(source_table=source.table, target_table=target.table))
            rr = report.repair
            report.remaining = (report.invalid + report.unreadable + rr["still_different"] + rr["rejected"]
                                + rr["delete_skipped"])
            stats_snaps.append(dc_.stats.snapshot())
        elif repair:
            report.repair = no_repairs()
        counters["read"] = counters.get("source_read", 0) + counters.get("target_read", 0)
        stats = merge_stats(*stats_snaps)
        if retries:
            stats["retries"]["spark_task"] = stats["retries"].get("spark_task", 0) + retries
        finish(report, {k: v for k, v in counters.items() if v}, stats, time.monotonic() - started)
        report.timeline = display.timeline
        report.extra.update({"engine": "spark", "spark_master": sc.master, "segments": [ss, ts]})
        report.status = "done"
        if report_path:
            report.write_json(report_path)
        return report
    finally:
        dc_.close()
        if tmp_diff_dir is not None:
            shutil.rmtree(tmp_diff_dir, ignore_errors=True)
        if created:
            try:
                sc.stop()
            except Exception:
                pass



__all__ = ["TaskOutput", "VerifyTask", "verify_partition", "verify_tables_spark"]
