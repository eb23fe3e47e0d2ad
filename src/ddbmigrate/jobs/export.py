"""``export_table``: table -> (transform) -> files in DynamoDB's Export-to-S3 layout.

The job is a composition: TableScanSpec -> ProcessingSpec -> ExportFilesSpec, run by any
engine. It is resumable: the checkpoint carries the ExportId and the committed data files, and
the sink only lets a checkpoint be saved once every item it counts is in a finished file (see
sinks/export_files.py). The manifests are written after the last item is committed, the summary
last, so a folder without ``manifest-summary.json`` is an unfinished export.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, Optional

from ..aws.capacity import capacity_limit, page_limit
from ..aws.client import DynamoClient
from ..config import RunOptions, TableRef
from ..core.items import KeySchema
from ..core.specs import ProcessingSpec, TransformRef
from ..core.transform import Transform, load_transform
from ..engine.job import Job
from ..engine.pipeline import default_readers
from ..engine.run import Engine, Observer
from ..errors import UsageError
from ..reporting.report import Report
from ..sinks.export_files import DEFAULT_FILE_SIZE, FORMATS, ExportFilesSpec
from ..sources.table_scan import TableScanSpec, default_segments
from ..storage.stores import S3Settings, S3Storage, is_s3, normalize, split_s3
from .common import check_resume_options, engine_identity, resumed_segments, run

DEFAULT_EXPORT_WRITERS = 4


def check_export_options(opts: RunOptions, fmt: str) -> None:
    """The usage checks an export makes before any AWS call."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    check_resume_options(opts)
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


def _check_local_dest(dest: str) -> None:
    """A local destination that cannot be a folder is one line, before any checkpoint exists
    (it failed midway as an internal error, and its checkpoint then asked for --restart)."""
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise UsageError(f"export destination {dest} is a file, not a folder")
    try:
        os.makedirs(dest, exist_ok=True)
    except OSError as e:
        raise UsageError(f"export destination {dest} cannot be made a folder: {e.strerror or e}") from None
    if not os.access(dest, os.W_OK):
        raise UsageError(f"export destination {dest} is not writable")


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
    engine: Optional[Engine] = None,
    cancel: Optional[threading.Event] = None,
    observer: Optional[Observer] = None,
) -> Report:
    """Export every item of ``table`` to ``dest`` (a folder or ``s3://bucket/prefix``).

    Returns the report; ``report.extra`` holds ``export_id``, ``export_path`` and ``files``.
    ``fmt="ion"`` writes AWS's ION export (``$ion_1_0 {Item:{...}}`` lines in ``.ion.gz`` files,
    ``outputFormat`` ION; lossless). ``fmt="json"`` writes plain JSON lines (numbers exact, binary
    base64, sets as lists) in the same layout. ``s3`` defaults to the table's region/profile/role and botocore's S3 endpoint.
    """
    opts = options or RunOptions()
    check_export_options(opts, fmt)
    if transform is None and opts.transform:
        transform = load_transform(opts.transform)
    dest = normalize(dest)
    if not is_s3(dest):
        _check_local_dest(dest)
    s3 = s3 or S3Settings(region=table.region, profile=table.profile, role_arn=table.role_arn)
    writers = opts.writers or DEFAULT_EXPORT_WRITERS
    c = DynamoClient(table, pool_size=4, retry=opts.retry)
    try:
        desc = c.describe_table()
        name, region = c.ref.table, c.region
    finally:
        c.close()
    keys = KeySchema.from_table_description(desc)
    base = export_identity(table, name, dest, fmt, 0, transform)
    segments = (opts.segments or resumed_segments(opts, "export", engine_identity(base, engine))
                or default_segments(desc))
    read_rate = capacity_limit(desc, opts.max_read_units, opts.read_percent, "read")
    bucket, prefix = split_s3(dest) if is_s3(dest) else (None, None)
    sse, sse_key = S3Storage(s3).bucket_encryption(bucket) if bucket else (None, None)
    table_arn = str(desc.get("TableArn") or f"arn:aws:dynamodb:{region}:000000000000:table/{name}")
    job = Job(
        kind="export", identity=export_identity(table, name, dest, fmt, segments, transform), options=opts,
        source=TableScanSpec(table, segments, retry=opts.retry, consistent_read=opts.consistent_read,
                             read_rate=read_rate, page_limit=page_limit(read_rate)),
        sink=ExportFilesSpec(dest, s3, fmt=fmt, file_size=file_size, commit_every=commit_every, s3_prefix=prefix,
                             summary={"table_arn": table_arn, "table_id": desc.get("TableId"), "bucket": bucket,
                                      "prefix": prefix, "sse": sse, "sse_kms_key_id": sse_key}),
        # Files have no key schema: a transform may re-key items (re-modelling export), so only
        # untransformed items are tied to the table's key (which they always match: trusted).
        processing=ProcessingSpec(
            key_schema=keys if transform is None else None, transform=TransformRef.of(transform),
            on_error=opts.on_error, trusted=True, source_key_schema=keys, dedupe=False, max_batch_ops=1000,
            source_table=name, sample=opts.sample, loaded=transform,
        ),
        source_label=table.describe(), target_label=dest, total_estimate=int(desc.get("ItemCount") or 0) or None,
        readers=default_readers(segments), writers=writers,
        extra={"format": fmt, "transform": transform.name if transform else None},
    )
    return run(job, engine, cancel=cancel, observer=observer)
