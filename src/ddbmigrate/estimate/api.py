"""``estimate_copy``, ``estimate_replicate``, ``estimate_import``, ``estimate_export``: the inputs.

Each reads what the estimate needs and nothing more: DescribeTable of both ends (a missing
target is planned from ``target_spec``, else from the source's schema), and a sample of source
items (a parallel Scan of a few segments, or the first items of the input files), run through
the transform. Then :func:`~ddbmigrate.estimate.model.estimate_job` does the arithmetic.

Invariant: an estimate never writes (DescribeTable, Scan and S3 reads only), so it is safe to
run against production tables and before any ``--max-cost`` check lets a job start.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..aws.client import DynamoClient
from ..config import RetryPolicy, RunOptions, TableRef
from ..core.transform import Transform, TransformContext, load_transform
from ..errors import DdbMigrateError, TableNotFoundError, UsageError
from .lanes import estimate_job
from .model import BULK_PUT, ENGINE, IMPORT_TABLE, NATIVE_EXPORT, Estimate, Job, Side
from .prices import load_prices
from .sample import DEFAULT_SAMPLE, SampleStats, index_shapes, sample_table


def _region(*sides: Tuple[Any, Optional[TableRef]]) -> Optional[str]:
    """The region whose prices apply: the first side's (client, ref) that has one - the ref's own
    region, else the one its client's session resolved (a profile's region, AWS_REGION, ...: where
    the requests really go); else the environment's; None: the prices file's default."""
    for client, ref in sides:
        if ref is not None and ref.region:
            return ref.region
        session = getattr(client, "session", None)
        resolved = getattr(session, "region_name", None) if session is not None else None
        if isinstance(resolved, str) and resolved:
            return resolved
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def _describe(client: DynamoClient) -> Optional[Dict[str, Any]]:
    try:
        return client.describe_table()
    except TableNotFoundError:
        return None


def _planned_target(name: str, target_spec: Optional[str], source_desc: Optional[Dict[str, Any]],
                    notes: List[str]) -> Dict[str, Any]:
    from ..aws.tables import clone_request, load_spec, request_from_spec

    if target_spec:
        req, _ttl = request_from_spec(load_spec(target_spec), target_spec, name)
        notes.append(f"target {name} does not exist: planned from {target_spec}")
        return req
    if source_desc is not None:
        notes.append(f"target {name} does not exist: planned with the source's schema (give --target-spec "
                     "for another one)")
        return clone_request(source_desc, name)
    raise UsageError(f"target {name} does not exist: give --target-spec FILE (its keys and indexes are needed)",
                     table=name)


def _transform(options: RunOptions, transform: Optional[Transform]) -> Optional[Transform]:
    if transform is None and options.transform:
        return load_transform(options.transform)
    return transform


def _side_counts(desc: Dict[str, Any], stats: SampleStats, notes: List[str]) -> Tuple[int, int]:
    """(items, bytes) of a source table: exact when the sample saw it all, else DescribeTable's."""
    if stats.complete:
        return stats.source_items, stats.source_bytes
    count = int(desc.get("ItemCount") or 0)
    size = int(desc.get("TableSizeBytes") or 0)
    mean = stats.source_bytes / stats.source_items if stats.source_items else 0.0
    if count < stats.source_items:
        # DescribeTable's counts lag (updated about every 6 hours): its size still tells how many.
        by_size = int(size / mean) if size > 0 and mean > 0 else 0
        notes.append(f"DescribeTable reports {count:,} items (it is updated about every 6 hours); "
                     + (f"{by_size:,} items assumed from its size and the sample's mean item size" if by_size
                        > stats.source_items else f"at least the {stats.source_items:,} sampled items are assumed"))
        count = max(stats.source_items, by_size)
    if size <= 0 and stats.source_items:
        size = int(mean * count)
    return count, size


def _run_sample(client: DynamoClient, table: str, stats: SampleStats, sample: int, consistent: bool) -> None:
    items, complete, units = sample_table(client, table, sample, consistent=consistent)
    for it in items:
        stats.add(it)
    stats.complete = complete
    stats.read_units = units


def _table_job(kind: str, source: TableRef, target: TableRef, options: Optional[RunOptions], *,
               transform: Optional[Transform], create_target: bool, target_spec: Optional[str], sample: int,
               prices: Optional[str], tier: str, client_items_per_second: Optional[float],
               clients: Optional[Tuple[Any, Any]]) -> Estimate:
    opts = options or RunOptions()
    tr = _transform(opts, transform)
    notes: List[str] = []
    src, dst = clients or (DynamoClient(source, pool_size=4, retry=RetryPolicy(max_attempts=3)),
                           DynamoClient(target, pool_size=2, retry=RetryPolicy(max_attempts=3)))
    try:
        sdesc = src.describe_table()
        tdesc = _describe(dst)
        exists = tdesc is not None
        if tdesc is None:
            tdesc = _planned_target(target.table, target_spec, sdesc, notes)
        stats = SampleStats(index_shapes(tdesc), tr,
                            TransformContext(source_table=source.table, target_table=target.table))
        _run_sample(src, source.table, stats, sample, opts.consistent_read)
    finally:
        if clients is None:
            src.close()
            dst.close()
    items, nbytes = _side_counts(sdesc, stats, notes)
    si, ti = source.identity(), target.identity()
    cross = si["region"] != ti["region"] or source.role_arn != target.role_arn or source.profile != target.profile
    # Reads are billed in the source's region, writes in the target's: each side its own prices.
    write_region = _region((dst, target), (src, source))
    read_region = _region((src, source), (dst, target))
    write_prices = load_prices(write_region, prices)
    read_prices = load_prices(read_region, prices) if read_region != write_region else None
    job = Job(kind=kind, stats=stats, source_items=items, source_bytes=nbytes,
              prices=write_prices, source_prices=read_prices,
              source=Side(sdesc, True, source.table), target=Side(tdesc, exists, target.table),
              transform=tr.name if tr else None, consistent_read=opts.consistent_read,
              max_read_units=opts.max_read_units, max_write_units=opts.max_write_units,
              read_percent=opts.read_percent, write_percent=opts.write_percent, segments=opts.segments,
              processes=opts.processes, tier=tier, cross_region_or_account=cross,
              client_items_per_second=client_items_per_second, assumptions=notes)
    return estimate_job(job, source_label=source.describe(), target_label=target.describe())


def estimate_copy(source: TableRef, target: TableRef, options: Optional[RunOptions] = None, *,
                  transform: Optional[Transform] = None, create_target: bool = False,
                  target_spec: Optional[str] = None, sample: int = DEFAULT_SAMPLE, prices: Optional[str] = None,
                  tier: str = "STANDARD", client_items_per_second: Optional[float] = None,
                  clients: Optional[Tuple[Any, Any]] = None) -> Estimate:
    """Units, cost and time of ``copy source target`` for every lane (the engine's is ``chosen``)."""
    return _table_job("copy", source, target, options, transform=transform, create_target=create_target,
                      target_spec=target_spec, sample=sample, prices=prices, tier=tier,
                      client_items_per_second=client_items_per_second, clients=clients)


def estimate_replicate(source: TableRef, target: TableRef, options: Optional[RunOptions] = None, *,
                       transform: Optional[Transform] = None, create_target: bool = False,
                       target_spec: Optional[str] = None, sample: int = DEFAULT_SAMPLE,
                       prices: Optional[str] = None, client_items_per_second: Optional[float] = None,
                       clients: Optional[Tuple[Any, Any]] = None) -> Estimate:
    """The backfill of ``replicate source target`` (the stream's cost per change is a note)."""
    return _table_job("replicate", source, target, options, transform=transform, create_target=create_target,
                      target_spec=target_spec, sample=sample, prices=prices, tier="STANDARD",
                      client_items_per_second=client_items_per_second, clients=clients)


def estimate_export(source: TableRef, dest: str, options: Optional[RunOptions] = None, *,
                    transform: Optional[Transform] = None, native: bool = False, sample: int = DEFAULT_SAMPLE,
                    prices: Optional[str] = None, client_items_per_second: Optional[float] = None,
                    client: Optional[Any] = None) -> Estimate:
    """``export source dest``: our scan to files, and DynamoDB's native export."""
    opts = options or RunOptions()
    tr = _transform(opts, transform)
    notes: List[str] = []
    src = client or DynamoClient(source, pool_size=4, retry=RetryPolicy(max_attempts=3))
    try:
        sdesc = src.describe_table()
        stats = SampleStats(index_shapes(sdesc), tr, TransformContext(source_table=source.table))
        _run_sample(src, source.table, stats, sample, opts.consistent_read)
    finally:
        if client is None:
            src.close()
    items, nbytes = _side_counts(sdesc, stats, notes)
    job = Job(kind="export", stats=stats, source_items=items, source_bytes=nbytes,
              prices=load_prices(_region((src, source)), prices), source=Side(sdesc, True, source.table),
              transform=tr.name if tr else None, consistent_read=opts.consistent_read,
              max_read_units=opts.max_read_units, read_percent=opts.read_percent, segments=opts.segments,
              processes=opts.processes, files_in_s3=dest.startswith("s3://"),
              client_items_per_second=client_items_per_second, assumptions=notes)
    est = estimate_job(job, source_label=source.describe(), target_label=dest)
    if native:
        est.chosen = NATIVE_EXPORT
    return est


def estimate_import(source: str, table: TableRef, options: Optional[RunOptions] = None, *,
                    transform: Optional[Transform] = None, spec: Optional[str] = None, native: bool = False,
                    bulk_put: bool = False, tier: str = "STANDARD", sample: int = DEFAULT_SAMPLE,
                    prices: Optional[str] = None, input_format: str = "auto", s3: Any = None,
                    follow_symlinks: bool = False, client_items_per_second: Optional[float] = None,
                    client: Optional[Any] = None, condition: bool = False,
                    csv_header: Optional[Sequence[str]] = None, csv_delimiter: str = ",") -> Estimate:
    """``import source table``: our engine, ImportTable (new table), bulk put (existing table;
    ``condition``: with ``--condition``, so a staged copy of the input first). ``input_format``,
    ``csv_header`` and ``csv_delimiter`` are the import's, checked as it checks them."""
    from ..jobs.import_files import check_file_input
    from ..storage.export_layout import discover
    from ..storage.stores import S3Settings, normalize, storage_for

    if (native or bulk_put) and not str(source).startswith("s3://"):
        raise UsageError("--native imports read S3: SOURCE must be s3://bucket/prefix (an export folder)")
    header = check_file_input(input_format, csv_header, csv_delimiter)
    opts = options or RunOptions()
    tr = _transform(opts, transform)
    notes: List[str] = []
    dst = client or DynamoClient(table, pool_size=2, retry=RetryPolicy(max_attempts=3))
    try:
        tdesc = _describe(dst)
    finally:
        if client is None:
            dst.close()
    exists = tdesc is not None
    if tdesc is None:
        if not spec:
            raise UsageError(f"table {table.table} does not exist: give --spec FILE (its keys and indexes are "
                             "needed)", table=table.table)
        tdesc = _planned_target(table.table, spec, None, notes)
    src = normalize(source) if "://" in source or not any(ch in source for ch in "*?[") else source
    s3 = s3 or S3Settings(region=table.region, profile=table.profile, role_arn=table.role_arn)
    storage = storage_for(src, s3)
    plan = discover(src, storage, any_name=input_format != "auto", table=table.table, follow_symlinks=follow_symlinks)
    if plan.kind == "incremental":
        raise UsageError("estimate: an incremental export holds changes, not items; estimate the full export "
                         "instead")
    from ..sources.detection import assign_formats

    plan = assign_formats(plan, storage, input_format)  # each file sampled in the format the import reads
    stats = SampleStats(index_shapes(tdesc), tr, TransformContext(target_table=table.table))
    # CSV values of the attributes the table defines get their type, as the import gives them.
    key_types = {a["AttributeName"]: a["AttributeType"] for a in tdesc.get("AttributeDefinitions") or []}
    read_files, read_bytes = _sample_files(src, plan, s3, input_format, stats, sample, key_types=key_types,
                                           csv_header=header, csv_delimiter=csv_delimiter)
    total_bytes = sum(f.size for f in plan.files)
    # ImportTable bills the input's uncompressed size: the files' own when none is compressed;
    # else None, and the lane estimates it from the sample as DynamoDB JSON lines.
    compressed = any(f.path.lower().endswith((".gz", ".zst", ".zstd")) for f in plan.files)
    counts = [f.item_count for f in plan.files]
    if stats.complete:
        items = stats.source_items
        nbytes = stats.source_bytes
    else:
        if all(c is not None for c in counts):
            items = int(sum(c or 0 for c in counts))
        elif read_bytes > 0:
            items = int(total_bytes * (stats.source_items / read_bytes))
            notes.append(f"item count scaled from the first {read_files} file(s) by file size")
        else:
            items = stats.source_items
        items = max(items, stats.source_items)
        nbytes = int(stats.source_bytes / stats.source_items * items) if stats.source_items else 0
    job = Job(kind="import", stats=stats, source_items=items, source_bytes=nbytes,
              prices=load_prices(_region((dst, table)), prices), target=Side(tdesc, exists, table.table),
              transform=tr.name if tr else None, max_write_units=opts.max_write_units,
              write_percent=opts.write_percent, processes=opts.processes, files=len(plan.files),
              files_in_s3=str(src).startswith("s3://"), tier=tier, staged_condition=condition,
              import_source_bytes=None if compressed else float(total_bytes),
              client_items_per_second=client_items_per_second, assumptions=notes)
    est = estimate_job(job, source_label=str(source), target_label=table.describe())
    est.chosen = BULK_PUT if bulk_put else IMPORT_TABLE if native else ENGINE
    return est


def _sample_files(location: str, plan: Any, s3: Any, input_format: str, stats: SampleStats,
                  n: int, *, key_types: Optional[Dict[str, str]] = None, csv_header: Optional[List[str]] = None,
                  csv_delimiter: str = ",") -> Tuple[int, int]:
    """Feed up to ``n`` items of the input files to ``stats``; (files read whole, their bytes)."""
    from ..core.specs import Resources
    from ..sources.files import FilesSpec

    spec = FilesSpec(location, plan, s3, validate=False, input_format=input_format, key_types=key_types,
                     csv_header=csv_header, csv_delimiter=csv_delimiter)
    stop = threading.Event()
    whole = whole_bytes = 0
    sizes = {f.unit: f.size for f in plan.files}
    for unit in spec.units():
        src = replace(spec, validate=False).build(Resources(units=[unit]))
        finished = True
        try:
            for chunk in src.read(unit, None, stop):
                for item in chunk.items or [img for _kind, img in (chunk.ops or [])]:
                    if stats.source_items >= n:
                        finished = False
                        break
                    stats.add(item)
                if not finished:
                    break
        except DdbMigrateError:
            finished = False  # a bad file: the import reports it; the estimate uses what it read
        finally:
            src.close()
        failed = src.failures()
        if failed:
            # A file that is not what its name says (garbage after a zstd header, a gzip cut
            # short): counted as read whole, it made "0 items, the whole source" an estimate.
            from ..errors import FatalError

            raise FatalError(f"{failed[0].one_line()} (the import would stop on it too; fix or remove the file)")
        if not finished:
            stats.complete = False
            return whole, whole_bytes
        whole += 1
        whole_bytes += sizes.get(unit, 0)
    stats.complete = True
    return whole, whole_bytes
