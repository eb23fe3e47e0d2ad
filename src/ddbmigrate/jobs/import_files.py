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

import threading
from dataclasses import replace
from typing import Any, List, Optional

from ..aws.capacity import capacity_limit
from ..aws.client import DynamoClient
from ..config import RunOptions, TableRef
from ..core.items import KeySchema, gsi_partition_keys
from ..core.specs import LiveSourceSpec, ProcessingSpec, Resources, TransformRef
from ..core.transform import Transform, TransformContext, load_transform
from ..engine.job import Job
from ..engine.run import Engine, Observer, pool_size
from ..errors import DdbMigrateError, UsageError
from ..reporting.report import Report
from ..sinks.dry_run import DryRunSpec
from ..sinks.table_writer import TableWriterSpec
from ..sources.files import FilesSpec
from ..sources.incremental import IncrementalSource
from ..storage.export_layout import discover
from ..storage.stores import S3Settings, normalize, storage_for
from .common import check_resume_options, default_writers, prepare_target, run
from .fit import SAMPLE, check_fits_target

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
    follow_symlinks: bool = False,
    s3: Optional[S3Settings] = None,
    readers: Optional[int] = None,
    transform: Optional[Transform] = None,
    spill_dir: Optional[str] = None,
    engine: Optional[Engine] = None,
    cancel: Optional[threading.Event] = None,
    observer: Optional[Observer] = None,
) -> Report:
    """Load the items of ``source`` (path, folder, glob or ``s3://...``) into ``table``.

    ``create_target``/``spec`` create the table from a CloudFormation-style spec when missing.
    ``validate=False`` skips the per-file check pass (items stream at once). A file that links out
    of SOURCE's folder is refused unless ``follow_symlinks``. Returns the report;
    raises FatalError (with ``.report``) when a file failed its checks. An incremental export is
    staged on this machine first, so it runs on the threads engine.
    """
    opts = options or RunOptions()
    check_resume_options(opts)
    if create_target and not spec:
        raise UsageError("--create-target needs --spec FILE (files carry no table schema)")
    if transform is None and opts.transform:
        transform = load_transform(opts.transform)
    src = normalize(source) if "://" in source or not any(c in source for c in "*?[") else source
    s3 = s3 or S3Settings(region=table.region, profile=table.profile, role_arn=table.role_arn)
    storage = storage_for(src, s3)
    plan = discover(src, storage, follow_symlinks=follow_symlinks)
    if plan.kind == "incremental" and engine is not None and engine.name != "threads":
        raise UsageError("an incremental export is applied on the threads engine (its records are staged "
                         "by key on this machine first): drop --engine/--processes")

    writers = opts.writers or default_writers(opts.mode)
    dst = DynamoClient(table, pool_size=pool_size(0, 4), retry=opts.retry)
    try:
        tdesc = prepare_target(dst, create=create_target, spec_path=spec, dry_run=opts.dry_run)
    finally:
        dst.close()
    keys = KeySchema.from_table_description(tdesc)
    n_readers = readers or DEFAULT_READERS
    source_spec: Any
    if plan.kind == "incremental":
        # Before staging the whole export: do its first new images fit the table?
        check_fits_target(table.table, tdesc, sample=_first_new_images(storage, plan), transform=transform,
                          context=TransformContext(target_table=table.table))
        inc = IncrementalSource(storage, plan, validate=validate, spill_dir=spill_dir, readers=n_readers)
        inc.prepare()
        source_spec = LiveSourceSpec(inc)
    else:
        source_spec = FilesSpec(src, plan, s3, validate=validate, input_format=input_format)
        # Before the import proper: do the first records fit the table's keys and indexes?
        check_fits_target(table.table, tdesc, sample=_first_items(source_spec), transform=transform,
                          context=TransformContext(target_table=table.table))
    write_rate = capacity_limit(tdesc, opts.max_write_units, opts.write_percent, "write")
    identity = {
        "job": "import",
        "names": [table.table],
        "source": src,
        "target": table.identity(),
        "kind": plan.kind,
        "files": len(plan.files),
        "transform": transform.name if transform else None,
        "transform_hash": transform.code_hash if transform else None,
        **opts.fingerprint_fields(),
    }
    job = Job(
        kind="import", identity=identity, options=opts, source=source_spec,
        sink=DryRunSpec() if opts.dry_run else TableWriterSpec(table, keys, retry=opts.retry, mode=opts.mode,
                                                               write_rate=write_rate, writers=writers,
                                                               index_keys=gsi_partition_keys(tdesc)),
        processing=ProcessingSpec(key_schema=keys, transform=TransformRef.of(transform), on_error=opts.on_error,
                                  target_table=table.table, sample=opts.sample, loaded=transform),
        source_label=src, target_label=table.describe(),
        total_estimate=sum(f.item_count or 0 for f in plan.files) or None,
        readers=min(n_readers, max(1, len(source_spec.units()))), writers=writers,
        extra={"mode": opts.mode, "source_kind": plan.kind, "files": len(plan.files),
               "transform": transform.name if transform else None},
    )
    return run(job, engine, cancel=cancel, observer=observer)


def _first_items(spec: FilesSpec, n: int = SAMPLE) -> List[Any]:
    """The first ``n`` items of the first file that has any (unchecked: the job checks the files)."""
    import threading as _threading

    stop = _threading.Event()
    for unit in spec.units()[:3]:
        src = replace(spec, validate=False).build(Resources(units=[unit]))
        try:
            for chunk in src.read(unit, None, stop):
                items = chunk.items or [img for _kind, img in (chunk.ops or [])]
                if items:
                    return list(items[:n])
        except DdbMigrateError:
            continue  # a bad file: the job reports it with its own message
        finally:
            src.close()
    return []


def _first_new_images(storage: Any, plan: Any, n: int = SAMPLE) -> List[Any]:
    """The ``NewImage`` of the first records of an incremental export (deletes carry none)."""
    import orjson

    from ..sources.lines import LineStream, TooLong

    out: List[Any] = []
    for f in plan.files[:3]:
        ls = LineStream(storage, f.path)
        try:
            for _, line in ls.numbered():
                if isinstance(line, TooLong):
                    continue
                try:
                    new = orjson.loads(line).get("NewImage")
                except (orjson.JSONDecodeError, AttributeError):
                    continue  # the import reports bad lines with their place
                if isinstance(new, dict):
                    out.append(new)
                if len(out) >= n:
                    return out
        except Exception:  # a corrupt file: the import's own checks name it
            continue
        finally:
            ls.close()
    return out
