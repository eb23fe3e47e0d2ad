"""``verify_tables``: prove the target equals transform(source), item by item, with bounded memory.

    source side ──scan/read──▶ transform (fan-out, drops) ──▶ expected ─┐   hash-partitioned
    target side ──scan/read──────────────────────────────────▶ actual  ─┴─▶ spill files (disk)
                                                         partition by partition ─▶ differences

Each side is a table (parallel segmented Scan) or an export folder / S3 prefix (the file
source); both are read at the same time by one pool of reader threads. Items are matched by the
target's primary key; the comparison runs in :mod:`ddbmigrate.verify.compare`, whose memory is bounded
by ``memory_mb`` whatever the table size. Differences come in categories — ``missing``
(expected, not in the target), ``unexpected`` (in the target, not expected), ``mismatched``
(same key, different content, with the differing attribute paths and both values) — plus
``invalid`` (an expected item that cannot exist in the target: bad key, over 400 KB) and
``unreadable`` (a file record that could not be parsed).

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

import math
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import orjson

from ..aws.client import DynamoClient, RetryStats
from .compare import ACTUAL, DEFAULT_BUDGET, EXPECTED, Comparer, partitions_for
from ..config import RetryPolicy, TableRef
from ..errors import (
    EXIT_DIFFERENCES,
    EXIT_OK,
    FatalError,
    InterruptedError_,
    RetriesExhaustedError,
    TransformError,
    UsageError,
)
from ..core.items import MAX_ITEM_BYTES, KeySchema, WireItem, canonical_item, oversize
from ..engine.pipeline import DELETE, MAX_BATCH_OPS, PUT, Chunk, Counters, Op, Source
from ..reporting.progress import Progress
from ..aws.capacity import RateLimiter, TokenBucket
from ..reporting.report import Report, finish, merge_stats
from ..sinks.table_writer import TableWriter
from ..sources.table_scan import TableScanSource, default_segments
from ..core.transform import Transform, TransformContext, load_transform

Confirm = Callable[[str], bool]
SideRef = Union[TableRef, str]

CATEGORIES = ("missing", "unexpected", "mismatched", "invalid", "unreadable")
PREVIEW = 20
DEFAULT_READERS = 8
_BATCH_GET = 100


# --------------------------------------------------------------------------- sides


@dataclass
class Side:
    """One side of a verification: something that yields wire items, and what we know of it.

    ``source`` follows the pipeline's Source protocol (units, read(unit, position, stop)), so a
    table scan and a file source plug in the same way. ``client`` is set for table sides.
    """

    label: str
    source: Source
    key_schema: Optional[KeySchema] = None
    estimate: Optional[int] = None
    client: Optional[DynamoClient] = None
    trusted: bool = False  # items come from DynamoDB itself: valid, sized, keyed by key_schema


def is_files_location(arg: str) -> bool:
    """A side argument names files (not a table) when it is an S3 URL, a path, a glob or exists."""
    if arg.startswith("arn:"):
        return False
    return arg.startswith("s3://") or "/" in arg or os.sep in arg or any(c in arg for c in "*?[") \
        or os.path.exists(arg)


def _open_table(ref: TableRef, client: Optional[DynamoClient], retry: RetryPolicy, readers: int) -> Tuple[DynamoClient, Dict[str, Any]]:
    c = client or DynamoClient(ref, pool_size=readers + 8, retry=retry, stats=RetryStats())
    return c, c.describe_table()


def _open_side(arg: SideRef, client: Optional[DynamoClient], s3: Any, input_format: str, retry: RetryPolicy,
               readers: int) -> Tuple[Side, Optional[Dict[str, Any]]]:
    """A files location, or a table with its key schema and item count (and its description)."""
    if isinstance(arg, str) and is_files_location(arg):
        return files_side(arg, s3=s3, input_format=input_format), None
    ref = arg if isinstance(arg, TableRef) else TableRef(str(arg))
    c, desc = _open_table(ref, client, retry, readers)
    side = Side(ref.describe(), _placeholder, KeySchema.from_table_description(desc),
                int(desc.get("ItemCount") or 0) or None, c, trusted=True)
    return side, desc


def files_side(location: str, *, s3: Any = None, input_format: str = "auto", validate: bool = True) -> Side:
    """An export folder, file, folder of files, glob or ``s3://`` prefix, read by the file source.

    Files carry no key schema: it comes from the other side's table or ``key_schema``.
    Incremental exports hold changes, not a full image, so they cannot be a verify side.
    """
    from ..sources.files import FileSource, discover
    from ..storage.stores import normalize, storage_for

    src = normalize(location) if "://" in location or not any(c in location for c in "*?[") else location
    storage = storage_for(src, s3)
    plan = discover(src, storage)
    if plan.kind == "incremental":
        raise UsageError(f"{location} is an incremental export (changes, not a full image): it cannot be "
                         "verified; verify the table it was applied to, or a full export")
    fs = FileSource(storage, plan, validate=validate, input_format=input_format)
    estimate = sum(f.item_count or 0 for f in plan.files) or None
    return Side(label=src, source=fs, key_schema=None, estimate=estimate)


def _check_file_failures(side: Side) -> None:
    failures = list((getattr(side.source, "failures", None) or {}).values())
    if failures:
        raise FatalError(
            f"{len(failures)} file(s) of {side.label} failed their checks, so the comparison would be "
            "incomplete: " + "; ".join(f.one_line() for f in failures[:5]) + (" ..." if len(failures) > 5 else ""),
            file=failures[0].path, line=failures[0].line, code="BadFile")


# --------------------------------------------------------------------------- report


@dataclass
class VerifyReport(Report):
    """What ``verify`` found. ``exit_code`` is 0 when nothing differs (after repair), else 4."""

    job: str = "verify"
    equal: int = 0
    missing: int = 0
    unexpected: int = 0
    mismatched: int = 0
    invalid: int = 0
    unreadable: int = 0
    keys_only: bool = False
    sample_rate: Optional[float] = None
    confidence: Dict[str, Any] = field(default_factory=dict)
    diff_path: Optional[str] = None
    preview: List[Dict[str, Any]] = field(default_factory=list)
    partitions: int = 0
    spilled_bytes: int = 0
    memory_budget_bytes: int = 0
    repair: Optional[Dict[str, Any]] = None
    remaining: int = 0

    @property
    def differences(self) -> int:
        return self.missing + self.unexpected + self.mismatched + self.invalid + self.unreadable

    @property
    def equal_sides(self) -> bool:
        return self.differences == 0

    @property
    def exit_code(self) -> int:
        return EXIT_DIFFERENCES if self.remaining else EXIT_OK

    def balanced(self) -> bool:
        c = self.count
        source_ok = (c("source_read") + c("fanout_extra") == c("expected") + c("sampled_out_expected") + c("dropped")
                     + c("transform_errors") + c("invalid") + c("unreadable_source") + c("source_collapsed"))
        target_ok = c("target_read") == (c("actual") + c("sampled_out_actual") + c("unreadable_target")
                                         + c("target_collapsed"))
        compare_ok = (c("expected") == self.equal + self.missing + self.mismatched + c("expected_duplicates")
                      and c("actual") == self.equal + self.unexpected + self.mismatched + c("actual_duplicates"))
        return source_ok and target_ok and compare_ok

    def to_dict(self) -> Dict[str, Any]:
        d = super().to_dict()
        d["differences"] = self.differences
        d["equal_sides"] = self.equal_sides
        return d

    def render(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.table import Table

        console = console or Console(stderr=True)
        verdict = "EQUAL" if self.equal_sides else f"DIFFERENT ({self.differences:,})"
        if self.repair is not None and self.differences:
            verdict += " - repaired" if not self.remaining else f" - {self.remaining:,} remain after repair"
        t = Table(title=f"ddbmigrate verify: {self.status}: {verdict}", show_header=False, title_justify="left")
        t.add_column("what", style="bold")
        t.add_column("value", justify="right")
        t.add_row("source", self.source)
        t.add_row("target", self.target)
        mode = "keys only" if self.keys_only else "full items"
        if self.sample_rate is not None:
            mode += f", sample {self.sample_rate * 100:.4g}% of keys"
        t.add_row("compared", mode)
        c = self.count
        t.add_row("source read", f"{c('source_read'):,}")
        if self.extra.get("transform"):
            t.add_row("expected after transform", f"{c('expected') + c('sampled_out_expected'):,}")
            for k in ("dropped", "fanout_extra", "transform_errors"):
                if c(k):
                    t.add_row(k.replace("_", " "), f"{c(k):,}")
        t.add_row("target read", f"{c('target_read'):,}")
        if self.sample_rate is not None:
            t.add_row("not in the sample", f"{c('sampled_out_expected'):,} expected / {c('sampled_out_actual'):,} target")
        t.add_row("equal", f"{self.equal:,}")
        for k in CATEGORIES:
            v = getattr(self, k)
            if v or k in ("missing", "unexpected", "mismatched"):
                t.add_row(f"[red]{k}[/red]" if v else k, f"{v:,}")
        for k in ("expected_duplicates", "actual_duplicates"):
            if c(k):
                t.add_row(k.replace("_", " "), f"{c(k):,}")
        t.add_row("partitions / spilled", f"{self.partitions} / {self.spilled_bytes / 1e6:,.1f} MB")
        t.add_row("consumed RCU", f"{self.consumed_read_units:,.1f}")
        if self.consumed_write_units:
            t.add_row("consumed WCU (repair)", f"{self.consumed_write_units:,.1f}")
        t.add_row("duration", f"{self.duration_seconds:,.1f} s")
        t.add_row("items/s", f"{self.items_per_second:,.0f}")
        if self.diff_path:
            t.add_row("differences file", self.diff_path)
        if not self.balanced():
            t.add_row("[red]counts[/red]", "[red]do not add up[/red]")
        console.print(t)
        for d in self.preview[:10]:
            paths = ", ".join(d.get("paths", [])[:5])
            console.print(f"  {d['category']:<11} {orjson.dumps(d['key']).decode()}" + (f"  ({paths})" if paths else "")
                          + (f"  {d['reason']}" if d.get("reason") else ""))
        if self.differences > len(self.preview[:10]):
            console.print(f"  ... {self.differences - len(self.preview[:10]):,} more"
                          + (f" in {self.diff_path}" if self.diff_path else " (use --diff FILE to list them all)"))
        if self.confidence.get("statement"):
            console.print(f"sample: {self.confidence['statement']}")
        if self.repair is not None:
            r = self.repair
            console.print(f"repair: {r.get('put', 0):,} put, {r.get('deleted', 0):,} deleted"
                          + (f", {r['delete_skipped']:,} unexpected kept (not confirmed)" if r.get("delete_skipped") else "")
                          + (f", {r['rejected']:,} rejected" if r.get("rejected") else "")
                          + f"; re-checked {r.get('rechecked', 0):,} keys with consistent reads: "
                          + f"{r.get('still_different', 0):,} still different")
        if self.error:
            console.print(f"[red]error:[/red] {self.error}")


def sample_confidence(rate: float, found: int) -> Dict[str, Any]:
    """What a key-hash sample at ``rate`` that found ``found`` differences says about the whole.

    Each key is in the sample independently with probability ``rate``, so k differences all
    escape the sample with probability (1 - rate)^k.
    """
    catch = {str(k): round(1 - (1 - rate) ** k, 6) for k in (1, 10, 100, 1000)}
    out: Dict[str, Any] = {"rate": rate, "found": found, "estimated_total": round(found / rate, 1),
                           "catch_probability": catch}
    if found == 0:
        bound = math.inf if rate <= 0 else (1 if rate >= 1 else math.ceil(math.log(0.05) / math.log1p(-rate)))
        out["max_differences_95"] = bound
        out["statement"] = (f"no difference in the sample; with 95% confidence the full comparison would find "
                            f"fewer than {bound:,} differences (one given difference is caught with probability "
                            f"{rate:.2%}, 100 differences with probability {catch['100']:.2%})")
    else:
        out["statement"] = (f"{found:,} differences in the sample; about {found / rate:,.0f} expected in a full "
                            "comparison")
    return out


# --------------------------------------------------------------------------- differences file


def preview_entry(d: Dict[str, Any]) -> Dict[str, Any]:
    """A difference line without the item bodies: category, key, differing paths, reason."""
    p: Dict[str, Any] = {"category": d["category"], "key": d.get("key") or d.get("source_key")}
    if "differences" in d:
        p["paths"] = [x["path"] for x in d["differences"]]
    if "reason" in d:
        p["reason"] = d["reason"]
    return p


def check_verify_options(sample: Optional[float], on_error: str, repair: bool, keys_only: bool) -> None:
    """The usage checks every verify engine (local, Spark) makes before reading anything."""
    if sample is not None and not (0 < sample <= 1):
        raise UsageError(f"--sample must be a rate in (0, 1], not {sample}")
    if on_error not in ("fail", "skip"):
        raise UsageError(f"--on-error must be fail or skip, not {on_error!r}")
    if repair and keys_only:
        raise UsageError("--repair needs full items; it cannot be combined with --keys-only")


class _DiffSink:
    """Writes difference lines (JSONL) and counts them; keeps a bodiless preview for the summary."""

    def __init__(self, path: str) -> None:
        self.path = path
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        self._fh = open(path, "wb")
        self._lock = threading.Lock()
        self.counts: Dict[str, int] = {c: 0 for c in CATEGORIES}
        self.preview: List[Dict[str, Any]] = []

    def __call__(self, d: Dict[str, Any]) -> None:
        line = orjson.dumps(d) + b"\n"
        with self._lock:
            self._fh.write(line)
            self.counts[d["category"]] = self.counts.get(d["category"], 0) + 1
            if len(self.preview) < PREVIEW:
                self.preview.append(preview_entry(d))

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()


def iter_diffs(path: str) -> Iterator[Dict[str, Any]]:
    """Read a differences file back (one JSON object per line)."""
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield orjson.loads(line)


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
    progress: str = "auto",
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
        source_side, src_desc = _open_side(source, source_client, s3, input_format, retry, nreaders)
    if target_side is None:
        target_side, tgt_desc = _open_side(target, target_client, s3, input_format, retry, nreaders)
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
    diffs = _DiffSink(diff_path or os.path.join(folder, "differences.jsonl"))
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
        _scan(source_side, target_side, comparer, keys, tf, ctx, check_expected, check_actual, on_error,
              counters, diffs, nreaders)
        for side in (source_side, target_side):
            _check_file_failures(side)
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


class _Placeholder:
    """Stands in for a table side's scan until the projection is known."""

    def units(self) -> List[str]:
        return []

    def read(self, unit: str, position: Any, stop: threading.Event) -> Iterator[Chunk]:
        return iter(())


_placeholder = _Placeholder()


# --------------------------------------------------------------------------- scan phase


def _scan(src: Side, tgt: Side, comparer: Comparer, keys: KeySchema, tf: Optional[Transform],
          ctx: TransformContext, check_expected: bool, check_actual: bool, on_error: str, counters: Counters,
          diffs: _DiffSink, readers: int) -> None:
    """Read both sides with one pool of threads, units interleaved so both sides advance together."""
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
        extra = getattr(chunk, "counts", None) or {}
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
                        outs = tf(item, ctx)
                    except TransformError as e:
                        skey = src.key_schema.project_or_none(item) if src.key_schema else None
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
                        p = keys.problem(o)
                        if p is None:
                            size = oversize(o, len(orjson.dumps(o)))
                            if size is not None:
                                p = f"item is {size} bytes; DynamoDB's limit is {MAX_ITEM_BYTES}"
                        if p:
                            counts["invalid"] = counts.get("invalid", 0) + 1
                            diffs({"category": "invalid", "reason": p, "source_key": (src.key_schema.project_or_none(item) if src.key_schema else None),
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


# --------------------------------------------------------------------------- repair


def repair_differences(diff_file: str, client: DynamoClient, keys: KeySchema, *,
                       confirm: Optional[Confirm] = None, writers: int = 8) -> Dict[str, Any]:
    """Put missing and mismatched items, delete unexpected ones (if confirmed), then re-check.

    Streams the differences file twice (write, then re-check) so memory stays bounded by the
    batches in flight. The re-check reads every repaired key with BatchGetItem(ConsistentRead)
    and compares it canonically with the expected item (or expects it gone).
    """
    table = client.ref.table
    to_delete = sum(1 for d in iter_diffs(diff_file) if d["category"] == "unexpected")
    delete_ok = False
    if to_delete:
        msg = (f"Delete {to_delete:,} unexpected items (in the target, not in transform(source)) from table "
               f"{table!r} at {client.endpoint}?")
        delete_ok = bool(confirm is not None and confirm(msg))
    writer = TableWriter(client, table, keys)
    result: Dict[str, int] = {"put": 0, "deleted": 0, "delete_skipped": 0 if delete_ok else to_delete,
                              "rejected": 0, "rechecked": 0, "still_different": 0}
    still_keys: List[Dict[str, Any]] = []
    lock = threading.Lock()
    pending: Deque["Future[None]"] = deque()

    def write(ops: List[Op]) -> None:
        res = writer.write(ops)
        with lock:
            result["put"] += res.written
            result["deleted"] += res.deleted
            result["rejected"] += len(res.rejected)

    with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="verify-repair") as pool:
        batch: List[Op] = []
        for d in iter_diffs(diff_file):
            cat = d["category"]
            if cat in ("missing", "mismatched"):
                item = d["expected"]
                batch.append(Op(PUT, item, orjson.dumps(item), keys.key(item)))
            elif cat == "unexpected" and delete_ok:
                k = keys.project(d["key"])
                batch.append(Op(DELETE, k, orjson.dumps(k), keys.key(k)))
            else:
                continue
            if len(batch) >= MAX_BATCH_OPS:
                pending.append(pool.submit(write, batch))
                batch = []
                while len(pending) > writers * 2:  # bounded in-flight batches
                    pending.popleft().result()
        if batch:
            pending.append(pool.submit(write, batch))
        while pending:
            pending.popleft().result()

    # Re-check with strongly consistent reads.
    group: List[Tuple[Dict[str, Any], Optional[WireItem]]] = []

    def recheck(group: List[Tuple[Dict[str, Any], Optional[WireItem]]]) -> None:
        got = batch_get(client, table, [k for k, _ in group], keys)
        for k, expected in group:
            actual = got.get(orjson.dumps(keys.key(k)))
            ok = actual is None if expected is None else (actual is not None and
                                                          canonical_item(actual) == canonical_item(expected))
            result["rechecked"] += 1
            if not ok:
                result["still_different"] += 1
                if len(still_keys) < PREVIEW:
                    still_keys.append(k)

    for d in iter_diffs(diff_file):
        cat = d["category"]
        if cat in ("missing", "mismatched"):
            group.append((keys.project(d["expected"]), d["expected"]))
        elif cat == "unexpected" and delete_ok:
            group.append((keys.project(d["key"]), None))
        else:
            continue
        if len(group) >= _BATCH_GET:
            recheck(group)
            group = []
    if group:
        recheck(group)
    return {**result, "still_different_keys": still_keys}


def batch_get(client: DynamoClient, table: str, keys_list: List[Dict[str, Any]], keys: KeySchema,
              consistent: bool = True) -> Dict[bytes, WireItem]:
    """BatchGetItem of up to 100 keys (retrying UnprocessedKeys); returns key bytes -> item."""
    out: Dict[bytes, WireItem] = {}
    request: Dict[str, Any] = {table: {"Keys": keys_list, "ConsistentRead": consistent}}
    attempt = 0
    while request:
        resp = client.call("BatchGetItem", {"RequestItems": request, "ReturnConsumedCapacity": "TOTAL"}, table=table)
        for cc in resp.get("ConsumedCapacity") or []:
            client.stats.consumed(read=float(cc.get("CapacityUnits") or 0.0))
        for it in (resp.get("Responses") or {}).get(table) or []:
            out[orjson.dumps(keys.key(it))] = it
        request = resp.get("UnprocessedKeys") or {}
        if request:
            attempt += 1
            if attempt >= client.retry_policy.max_attempts:
                raise RetriesExhaustedError(f"BatchGetItem keys still unprocessed after {attempt} attempts",
                                            table=table, code="UnprocessedKeys")
            client.stats.retry("unprocessed")
            client.backoff.wait(attempt)
    return out


__all__ = ["Side", "VerifyReport", "batch_get", "files_side", "is_files_location", "iter_diffs", "repair_differences",
           "sample_confidence", "verify_tables"]
