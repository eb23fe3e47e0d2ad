"""``copy_table``: table -> (transform) -> table, with parallel scan and concurrent batch writes.

Also home of the shared steps other jobs reuse: preparing the target table (create from the
source or from a spec, clean it after confirmation) and building the writer sink.
"""

from __future__ import annotations

import dataclasses

import os
from typing import Any, Callable, Dict, List, Optional

from ..aws.client import DynamoClient, RetryStats
from ..config import RunOptions, TableRef
from ..errors import TableNotFoundError, UsageError
from ..core.items import KeySchema
from ..engine.pipeline import BatchResult, Op, Processing, default_readers
from ..aws.capacity import RateLimiter, TokenBucket
from ..reporting.report import Report
from ..engine.run import JobSpec, pool_size, run_job
from ..aws.tables import clone_request, create_table, load_spec, request_from_spec, time_to_live
from ..sinks.table_writer import TableWriter
from ..sources.table_scan import TableScanSource, default_segments
from ..core.transform import Transform, TransformContext, load_transform

Confirm = Callable[[str], bool]
ON_DEMAND_DEFAULT_UNITS = 40_000.0


class DryRunSink:
    """Counts what would be written; writes nothing."""

    def write(self, ops: List[Op]) -> BatchResult:
        return BatchResult(written=sum(1 for o in ops if o.kind == 0), deleted=sum(1 for o in ops if o.kind == 1))

    def close(self) -> None:
        return None


def default_writers(mode: str) -> int:
    # A BatchWriteItem of 25 takes ~5-10 ms against DynamoDB, so 16 writers keep up with an
    # on-demand table's default 40,000 writes/s; 8 would cap a copy near 20-25k items/s.
    # Conditional modes send one PutItem per item, so they need more requests in flight.
    return 16 if mode == "overwrite" else 32


def capacity_limit(desc: Dict[str, Any], units: Optional[float], percent: Optional[float], kind: str) -> Optional[float]:
    """Units/s from --max-*-units, or --*-percent of provisioned (on-demand: max/warm or 40,000)."""
    if units:
        return float(units)
    if not percent:
        return None
    if not 0 < percent <= 100:
        raise UsageError(f"--{kind}-percent must be in (0, 100]")
    field = "ReadCapacityUnits" if kind == "read" else "WriteCapacityUnits"
    prov = float((desc.get("ProvisionedThroughput") or {}).get(field) or 0)
    if prov <= 0:
        odt = desc.get("OnDemandThroughput") or {}
        warm = desc.get("WarmThroughput") or {}
        odt_key = "MaxReadRequestUnits" if kind == "read" else "MaxWriteRequestUnits"
        warm_key = "ReadUnitsPerSecond" if kind == "read" else "WriteUnitsPerSecond"
        prov = float(odt.get(odt_key) or 0) if float(odt.get(odt_key) or 0) > 0 else float(warm.get(warm_key) or 0)
        if prov <= 0:
            prov = ON_DEMAND_DEFAULT_UNITS
    return max(1.0, prov * percent / 100.0)


def resumed_segments(opts: RunOptions, kind: str, identity: Dict[str, Any]) -> Optional[int]:
    """On --resume without --segments: the segment count the job's checkpoint was made with.

    Its positions are per segment of that count, while the default (from DescribeTable's size)
    drifts as a live source grows or a clean shrinks the table; recomputing it would refuse the
    resume as "a different job". The default checkpoint path does not depend on the segments.
    """
    if not opts.resume or opts.restart or opts.segments:
        return None
    from ..state.checkpoint import CheckpointStore, default_path

    try:
        st = CheckpointStore(opts.checkpoint or default_path(kind, identity)).load()
    except UsageError:
        return None  # unreadable: open_checkpoint reports it with its own message
    seg = st.job.get("segments") if st is not None else None
    return seg if isinstance(seg, int) and not isinstance(seg, bool) and seg > 0 else None


def make_limiter(rate: Optional[float], name: str = "") -> RateLimiter:
    return TokenBucket(rate, name=name) if rate else RateLimiter()


def prepare_target(
    client: DynamoClient,
    *,
    source_desc: Optional[Dict[str, Any]] = None,
    source_client: Optional[DynamoClient] = None,
    create: bool = False,
    spec_path: Optional[str] = None,
) -> Dict[str, Any]:
    """Describe the target, creating it (from a spec or as a clone of the source) when asked."""
    name = client.ref.table
    try:
        return client.describe_table()
    except TableNotFoundError:
        if not create and not spec_path:
            raise TableNotFoundError(
                f"target table {name!r} does not exist at {client.endpoint}; add --create-target to "
                "create it from the source's schema (or --target-spec FILE)", table=name,
            ) from None
    if spec_path:
        req, ttl = request_from_spec(load_spec(spec_path), spec_path, name)
    elif source_desc is not None:
        req = clone_request(source_desc, name)
        ttl = time_to_live(source_client, source_desc["TableName"]) if source_client is not None else None
    else:
        raise UsageError(f"cannot create {name}: give --spec FILE")
    return create_table(client, req, ttl_attribute=ttl)


def copy_table(
    source: TableRef,
    target: TableRef,
    options: Optional[RunOptions] = None,
    *,
    create_target: bool = False,
    target_spec: Optional[str] = None,
    clean_target: bool = False,
    confirm: Optional[Confirm] = None,
    transform: Optional[Transform] = None,
    source_client: Optional[DynamoClient] = None,
    target_client: Optional[DynamoClient] = None,
) -> Report:
    """Copy every item of ``source`` into ``target`` and return the report.

    ``confirm`` is asked before ``clean_target`` empties the target (pass ``lambda m: True`` for
    --yes). ``transform`` (or ``options.transform``) re-models each item on the way.
    """
    opts = options or RunOptions()
    if opts.resume and opts.restart:
        raise UsageError("--resume and --restart are mutually exclusive")
    if transform is None and opts.transform:
        transform = load_transform(opts.transform)
    writers = opts.writers or default_writers(opts.mode)
    src_stats, dst_stats = RetryStats(), RetryStats()
    # Pool sized for the segment readers and writers sharing one client per side.
    src = source_client or DynamoClient(source, pool_size=pool_size(32, 0), retry=opts.retry, stats=src_stats)
    dst = target_client or DynamoClient(target, pool_size=pool_size(0, writers), retry=opts.retry, stats=dst_stats)
    sdesc = src.describe_table()
    tdesc = _copy_target(source, target, src, dst, sdesc, opts.dry_run, create_target, target_spec)
    src_keys = KeySchema.from_table_description(sdesc)
    dst_keys = KeySchema.from_table_description(tdesc)

    names = [src.ref.table, dst.ref.table]
    segments = (opts.segments or resumed_segments(opts, "copy", copy_identity(source, target, names, 0, transform, opts))
                or default_segments(sdesc))
    identity = copy_identity(source, target, names, segments, transform, opts)

    if clean_target and not opts.dry_run:
        from ..state.checkpoint import default_path, open_checkpoint
        from .clean import clean_table

        # Refuse before deleting anything when the copy itself would be refused afterwards
        # (an unfinished copy checkpoint without --resume/--restart).
        open_checkpoint(opts.checkpoint or default_path("copy", identity), identity, resume=opts.resume,
                        restart=opts.restart, force=opts.force)

        # Crash-safe two-phase job: once the copy phase has a checkpoint the clean is over (its
        # own checkpoint says done); before that, --resume continues an interrupted clean.
        copy_started = opts.resume and os.path.exists(opts.checkpoint or default_path("copy", identity))
        if not copy_started:
            clean_opts = RunOptions(progress=opts.progress, retry=opts.retry, resume=opts.resume,
                                    restart=not opts.resume, drain_timeout=opts.drain_timeout,
                                    checkpoint=f"{opts.checkpoint}.clean" if opts.checkpoint else None,
                                    max_write_units=opts.max_write_units, write_percent=opts.write_percent)
            clean_table(target, options=clean_opts, confirm=confirm, client=dst)

    readers = default_readers(segments)
    read_rate = capacity_limit(sdesc, opts.max_read_units, opts.read_percent, "read")
    write_rate = capacity_limit(tdesc, opts.max_write_units, opts.write_percent, "write")
    rlim, wlim = make_limiter(read_rate, "read"), make_limiter(write_rate, "write")
    trusted = src_keys == dst_keys
    if opts.processes > 1:
        from ..engine.processes import run_copy_processes

        popts = dataclasses.replace(opts, transform=transform.name) if transform is not None else opts
        return run_copy_processes(
            processes=opts.processes, source=source, target=target, options=popts, total_segments=segments,
            identity=identity, source_keys=src_keys, target_keys=dst_keys, read_rate=read_rate,
            write_rate=write_rate, page_limit=_page_limit(read_rate), writers=writers,
            raw=True, total_estimate=int(sdesc.get("ItemCount") or 0) or None,
            extra={"mode": opts.mode, **({"transform": transform.name} if transform else {})},
        )
    scan = TableScanSource(src, src.ref.table, segments, consistent_read=opts.consistent_read, limiter=rlim,
                           page_limit=_page_limit(read_rate), raw=True)
    sink = DryRunSink() if opts.dry_run else TableWriter(dst, dst.ref.table, dst_keys, mode=opts.mode, limiter=wlim)
    proc = Processing(
        key_schema=dst_keys, transform=transform, on_error=opts.on_error, max_errors=opts.max_errors,
        trusted=(src_keys == dst_keys), source_key_schema=src_keys,
        context=TransformContext(source_table=src.ref.table, target_table=dst.ref.table), sample=opts.sample,
    )
    spec = JobSpec(
        job="copy", source=scan, sink=sink, processing=proc, options=opts, identity=identity,
        source_label=source.describe(), target_label=target.describe(),
        total_estimate=int(sdesc.get("ItemCount") or 0) or None, readers=readers, writers=writers,
        stats=[src.stats, dst.stats] if src.stats is not dst.stats else [src.stats], limiters=[wlim, rlim],
        progress_done=lambda c: c.get("read", 0),
        extra={"mode": opts.mode, "transform": transform.name if transform else None},
    )
    report = run_job(spec)
    report.extra = {k: v for k, v in report.extra.items() if v is not None}
    return report


def copy_identity(source: TableRef, target: TableRef, names: List[str], segments: int,
                  transform: Optional[Transform], opts: RunOptions) -> Dict[str, Any]:
    """What makes two copy runs the same job: the checkpoint's fingerprint is taken over this."""
    return {
        "job": "copy",
        "names": names,
        "source": source.identity(),
        "target": target.identity(),
        "segments": segments,
        "transform": transform.name if transform else None,
        "transform_hash": transform.code_hash if transform else None,
        **opts.fingerprint_fields(),
    }


def _copy_target(source: TableRef, target: TableRef, src: DynamoClient, dst: DynamoClient, sdesc: Dict[str, Any],
                 dry_run: bool, create: bool, spec_path: Optional[str]) -> Dict[str, Any]:
    """The target's description; refuses a copy onto the source. A dry run creates nothing."""
    if _same_table(source, target, src, dst):
        raise UsageError("source and target are the same table")
    if dry_run:
        return _describe_or_planned(dst, sdesc, create, spec_path)
    return prepare_target(dst, source_desc=sdesc, source_client=src, create=create, spec_path=spec_path)


def _describe_or_planned(dst: DynamoClient, sdesc: Dict[str, Any], create: bool, spec_path: Optional[str]) -> Dict[str, Any]:
    """A dry run validates against the target's schema, or the one it would be created with."""
    try:
        return dst.describe_table()
    except TableNotFoundError:
        if spec_path:
            return request_from_spec(load_spec(spec_path), spec_path, dst.ref.table)[0]
        if create:
            return sdesc
        raise


def _page_limit(read_rate: Optional[float]) -> Optional[int]:
    # Under a read limit, smaller pages keep each request's cost near the bucket's size.
    if not read_rate:
        return None
    return int(max(10, min(1000, read_rate * 4)))


def _same_table(a: TableRef, b: TableRef, ca: DynamoClient, cb: DynamoClient) -> bool:
    return a.table == b.table and ca.endpoint == cb.endpoint and ca.region == cb.region and a.role_arn == b.role_arn \
        and a.profile == b.profile
