"""``export_table``: table -> (transform) -> files in DynamoDB's Export-to-S3 layout.

The export is a parallel scan (one pipeline unit per segment) into :class:`sinks.files.FileSink`.
It is resumable: the checkpoint carries the ExportId and the committed data files, and the sink
only lets a checkpoint be saved once every item it counts is in a finished file (see
sinks/files.py). The manifests are written after the last item is committed, the summary last,
so a folder without ``manifest-summary.json`` is an unfinished export.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional

from ..aws.client import DynamoClient, RetryStats
from ..config import RunOptions, TableRef
from .copy import _page_limit, capacity_limit, make_limiter, resumed_segments
from ..errors import UsageError
from ..core.items import KeySchema
from ..engine.pipeline import Processing, default_readers
from ..reporting.report import Report
from ..engine.run import JobSpec, pool_size, run_job
from ..sinks.export_files import DEFAULT_FILE_SIZE, FORMATS, FileSink, iso_millis
from ..sources.table_scan import TableScanSource, default_segments
from ..storage.stores import S3Settings, is_s3, normalize, split_s3, storage_for
from ..core.transform import Transform, TransformContext, load_transform

DEFAULT_EXPORT_WRITERS = 4


def check_export_options(opts: RunOptions, fmt: str) -> None:
    """The usage checks every export engine (local, Spark) makes before any AWS call."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if opts.resume and opts.restart:
        raise UsageError("--resume and --restart are mutually exclusive")
    if opts.dry_run:
        raise UsageError("export has no --dry-run")


def export_identity(table: TableRef, name: str, dest: str, fmt: str, segments: int,
                    transform: Optional[Transform]) -> Dict[str, Any]:
    """What makes two export runs the same job: the checkpoint's fingerprint is taken over this."""
    return {
        "job": "export",
        "names": [name],
        "source": table.identity(),
        "dest": dest,
        "format": fmt,
        "segments": segments,
        "transform": transform.name if transform else None,
        "transform_hash": transform.code_hash if transform else None,
    }


def export_summary(desc: Dict[str, Any], region: str, name: str, export_id: str, started_at: float,
                   bucket: Optional[str], prefix: Optional[str]) -> Dict[str, Any]:
    """The manifest-summary.json fields known before the manifests are written (AWS's names)."""
    table_arn = str(desc.get("TableArn") or f"arn:aws:dynamodb:{region}:000000000000:table/{name}")
    return {
        "exportArn": f"{table_arn}/export/{export_id}",
        "startTime": iso_millis(started_at),
        "endTime": iso_millis(time.time()),
        "tableArn": table_arn,
        "tableId": desc.get("TableId"),
        "exportTime": iso_millis(started_at),
        "s3Bucket": bucket,
        "s3Prefix": prefix or None,
        "s3SseAlgorithm": None,
        "s3SseKmsKeyId": None,
    }


def export_table(
    table: TableRef,
    dest: str,
    options: Optional[RunOptions] = None,
    fmt: str = "dynamodb-json",
    *,
    s3: Optional[S3Settings] = None,
    file_size: int = DEFAULT_FILE_SIZE,
    commit_every: float = 30.0,
    transform: Optional[Transform] = None,
    client: Optional[DynamoClient] = None,
) -> Report:
    """Export every item of ``table`` to ``dest`` (a folder or ``s3://bucket/prefix``).

    Returns the report; ``report.extra`` holds ``export_id``, ``export_path`` and ``files``.
    ``fmt="json"`` writes plain JSON lines (numbers exact, binary base64, sets as lists) in the
    same layout. ``s3`` defaults to the table's region/profile/role and botocore's S3 endpoint.
    """
    opts = options or RunOptions()
    check_export_options(opts, fmt)
    if transform is None and opts.transform:
        transform = load_transform(opts.transform)
    dest = normalize(dest)
    s3 = s3 or S3Settings(region=table.region, profile=table.profile, role_arn=table.role_arn)
    storage = storage_for(dest, s3)
    writers = opts.writers or DEFAULT_EXPORT_WRITERS
    c = client or DynamoClient(table, pool_size=pool_size(32, 0), retry=opts.retry, stats=RetryStats())
    desc = c.describe_table()
    keys = KeySchema.from_table_description(desc)
    segments = (opts.segments or resumed_segments(opts, "export", export_identity(table, c.ref.table, dest, fmt, 0,
                                                                                  transform))
                or default_segments(desc))
    read_rate = capacity_limit(desc, opts.max_read_units, opts.read_percent, "read")
    limiter = make_limiter(read_rate)
    scan = TableScanSource(c, c.ref.table, segments, consistent_read=opts.consistent_read, limiter=limiter,
                           page_limit=_page_limit(read_rate))
    bucket, prefix = split_s3(dest) if is_s3(dest) else (None, None)
    sink = FileSink(storage, dest, fmt=fmt, file_size=file_size, commit_every=commit_every, s3_prefix=prefix)
    proc = Processing(
        # Files have no key schema: a transform may re-key items (re-modelling export), so only
        # untransformed items are tied to the table's key (which they always match: trusted).
        key_schema=keys if transform is None else None, transform=transform, on_error=opts.on_error,
        max_errors=opts.max_errors, trusted=True,
        source_key_schema=keys, dedupe=False, max_batch_ops=1000,
        context=TransformContext(source_table=c.ref.table), sample=opts.sample,
    )
    identity = export_identity(table, c.ref.table, dest, fmt, segments, transform)
    spec = JobSpec(
        job="export", source=scan, sink=sink, processing=proc, options=opts, identity=identity,
        source_label=table.describe(), target_label=dest, total_estimate=int(desc.get("ItemCount") or 0) or None,
        readers=default_readers(segments), writers=writers, stats=[c.stats], limiters=[limiter],
        progress_done=lambda cnt: cnt.get("read", 0),
        extra={"format": fmt, "transform": transform.name if transform else None},
        checkpoint_extra=sink.checkpoint_extra, restore_extra=sink.restore,
    )
    report = run_job(spec)
    summary = export_summary(desc, c.region, c.ref.table, sink.export_id, sink.started_at, bucket, prefix)
    summary["exportType"] = "FULL_EXPORT"
    manifest = sink.write_manifests(summary)
    report.extra = {k: v for k, v in report.extra.items() if v is not None}
    report.extra.update({"export_id": sink.export_id, "export_path": sink.root, "files": len(sink.committed),
                         "items_exported": manifest["itemCount"]})
    if opts.report:
        report.write_json(opts.report)
    return report
