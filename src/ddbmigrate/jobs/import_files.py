"""``import_files``: files (AWS export, DynamoDB-JSON, plain JSON) -> (transform) -> table.

Built on the same pipeline, writer, checkpoint and report as ``copy``: one unit per file (or per
key partition for an incremental export), positions are line numbers, writes go through
:class:`sinks.table_writer.TableWriter` with the chosen ``--mode``.

Invariant: a file that fails its checks (corrupt gzip, md5Checksum or itemCount mismatch) never
passes silently. The other files load; the job then fails (exit 1) naming each bad file and how
many of its items were loaded (0 unless ``validate=False``), and the checkpoint stays unfinished
so ``--resume`` retries only what is left once the file is fixed.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from ..aws.client import DynamoClient, RetryStats
from ..config import RunOptions, TableRef
from .copy import DryRunSink, capacity_limit, default_writers, make_limiter, prepare_target
from ..errors import FatalError, TableNotFoundError, UsageError
from ..core.items import KeySchema
from ..engine.pipeline import Processing
from ..reporting.report import Report
from ..engine.run import JobSpec, pool_size, run_job
from ..aws.tables import load_spec, spec_to_request
from ..sinks.table_writer import TableWriter
from ..sources.files import FileSource, IncrementalSource, discover
from ..storage.stores import S3Settings, normalize, storage_for
from ..core.transform import Transform, TransformContext, load_transform

DEFAULT_READERS = 8


def import_files(
    source: str,
    table: TableRef,
    options: Optional[RunOptions] = None,
    *,
    create_target: bool = False,
    spec: Optional[str] = None,
    validate: bool = True,
    input_format: str = "auto",
    s3: Optional[S3Settings] = None,
    readers: Optional[int] = None,
    transform: Optional[Transform] = None,
    client: Optional[DynamoClient] = None,
    spill_dir: Optional[str] = None,
) -> Report:
    """Load the items of ``source`` (path, folder, glob or ``s3://...``) into ``table``.

    ``create_target``/``spec`` create the table from a CloudFormation-style spec when missing.
    ``validate=False`` skips the per-file check pass (items stream at once). Returns the report;
    raises FatalError (with ``.report``) when a file failed its checks.
    """
    opts = options or RunOptions()
    if opts.resume and opts.restart:
        raise UsageError("--resume and --restart are mutually exclusive")
    if create_target and not spec:
        raise UsageError("--create-target needs --spec FILE (files carry no table schema)")
    if transform is None and opts.transform:
        transform = load_transform(opts.transform)
    src = normalize(source) if "://" in source or not any(c in source for c in "*?[") else source
    s3 = s3 or S3Settings(region=table.region, profile=table.profile, role_arn=table.role_arn)
    storage = storage_for(src, s3)
    plan = discover(src, storage)

    writers = opts.writers or default_writers(opts.mode)
    dst = client or DynamoClient(table, pool_size=pool_size(0, writers), retry=opts.retry, stats=RetryStats())
    if opts.dry_run:
        tdesc = _describe_or_planned(dst, spec)
    else:
        tdesc = prepare_target(dst, create=create_target, spec_path=spec)
    keys = KeySchema.from_table_description(tdesc)

    src_obj: Union[FileSource, IncrementalSource]
    n_readers = readers or DEFAULT_READERS
    if plan.kind == "incremental":
        src_obj = IncrementalSource(storage, plan, validate=validate, spill_dir=spill_dir, readers=n_readers)
        src_obj.prepare()
    else:
        src_obj = FileSource(storage, plan, validate=validate, input_format=input_format)

    write_rate = capacity_limit(tdesc, opts.max_write_units, opts.write_percent, "write")
    wlim = make_limiter(write_rate)
    sink: Any = DryRunSink() if opts.dry_run else TableWriter(dst, dst.ref.table, keys, mode=opts.mode, limiter=wlim)
    proc = Processing(
        key_schema=keys, transform=transform, on_error=opts.on_error, max_errors=opts.max_errors,
        context=TransformContext(target_table=dst.ref.table), sample=opts.sample,
    )

    def after_run() -> None:
        failures = list(src_obj.failures.values())
        if failures:
            raise FatalError(
                f"{len(failures)} file(s) failed their checks and were not fully loaded: "
                + "; ".join(f.one_line() for f in failures[:5]) + (" ..." if len(failures) > 5 else ""),
                file=failures[0].path, line=failures[0].line, code="BadFile",
                hint="fix or replace the file(s), then rerun with --resume (loaded files are not redone)",
            )

    identity = {
        "job": "import",
        "names": [dst.ref.table],
        "source": src,
        "target": table.identity(),
        "kind": plan.kind,
        "files": len(plan.files),
        "transform": transform.name if transform else None,
        "transform_hash": transform.code_hash if transform else None,
        **opts.fingerprint_fields(),
    }
    estimate = sum(f.item_count or 0 for f in plan.files) or None
    job = JobSpec(
        job="import", source=src_obj, sink=sink, processing=proc, options=opts, identity=identity,
        source_label=src, target_label=table.describe(), total_estimate=estimate,
        readers=min(n_readers, max(1, len(src_obj.units()))), writers=writers, stats=[dst.stats], limiters=[wlim],
        progress_done=lambda c: c.get("read", 0),
        extra={"mode": opts.mode, "source_kind": plan.kind, "files": len(plan.files),
               "transform": transform.name if transform else None},
        after_run=after_run,
    )
    try:
        report = run_job(job)
    except FatalError as e:
        rep = getattr(e, "report", None)
        if rep is not None:
            rep.extra["failed_files"] = [vars(f) for f in src_obj.failures.values()]
            if opts.report:
                rep.write_json(opts.report)
        raise
    finally:
        if isinstance(src_obj, IncrementalSource):
            src_obj.close()
    report.extra = {k: v for k, v in report.extra.items() if v is not None}
    return report


def _describe_or_planned(dst: DynamoClient, spec: Optional[str]) -> Any:
    try:
        return dst.describe_table()
    except TableNotFoundError:
        if spec:
            return spec_to_request(load_spec(spec), table_name=dst.ref.table)
        raise
