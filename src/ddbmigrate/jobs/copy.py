"""``copy_table``: table -> (transform) -> table: a parallel scan into a batch writer.

The job is a composition: TableScanSpec -> ProcessingSpec -> TableWriterSpec (or DryRunSpec),
run by any engine. Before the first read it prepares the target (creates it from the source or
a spec, empties it after confirmation with ``clean_target``).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, List, Optional

from ..aws.capacity import capacity_limit, declared_write_capacity, page_limit
from ..aws.client import DynamoClient
from ..config import RunOptions, TableRef
from ..core.items import KeySchema, gsi_partition_keys, index_keys_of
from ..core.specs import ProcessingSpec, TransformRef
from ..core.transform import Transform, TransformContext, load_transform
from ..engine.job import Job
from ..engine.pipeline import default_readers
from ..engine.run import Engine, Observer, job_checkpoint_path
from ..errors import UsageError
from ..reporting.report import Report
from ..sinks.dry_run import DryRunSpec
from ..sinks.table_writer import TableWriterSpec
from ..sources.table_scan import TableScanSpec, default_segments
from ..state.checkpoint import open_checkpoint
from ..state.status import RUN_BUSY, RunLock, lock_path_for
from .clean import clean_table
from .common import (
    Confirm,
    check_resume_options,
    default_writers,
    engine_identity,
    prepare_target,
    resumed_segments,
    run,
    same_table,
)
from .fit import check_fits_target, sample_table


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
    engine: Optional[Engine] = None,
    cancel: Optional[threading.Event] = None,
    observer: Optional[Observer] = None,
    target_kms_key: Optional[str] = None,
) -> Report:
    """Copy every item of ``source`` into ``target`` and return the report.

    ``confirm`` is asked before ``clean_target`` empties the target (pass ``lambda m: True`` for
    --yes). ``transform`` (or ``options.transform``) re-models each item on the way. ``engine``
    (``ddbmigrate.engine.engine_for``) runs it: threads by default, ``options.processes`` worker
    processes, or Spark. ``create_target`` clones every setting of the source (one line per setting
    not applied, in the log and in ``report.extra["target_created"]``); ``target_kms_key`` encrypts
    the new table with that KMS key.
    """
    opts = options or RunOptions()
    check_resume_options(opts)
    if target_kms_key and not (create_target or target_spec):
        raise UsageError("--target-kms-key applies to a table ddbmigrate creates: add --create-target or --target-spec")
    if transform is None and opts.transform:
        transform = load_transform(opts.transform)
    # These two only describe, create and sample: the job's writers open their own clients.
    src = DynamoClient(source, pool_size=4, retry=opts.retry)
    dst = DynamoClient(target, pool_size=4, retry=opts.retry)
    try:
        sdesc = src.describe_table()
        if same_table(source, target, src, dst, sdesc):
            raise UsageError("source and target are the same table")
        created: List[Dict[str, Any]] = []
        fitted: List[bool] = []

        def fits(desc: Dict[str, Any]) -> None:
            # Before anything is read for real (or deleted by --clean-target, or a target created
            # that the job would then refuse): do the items fit?
            check_fits_target(target.table, desc, source_desc=sdesc, sample=sample_table(src, source.table),
                              transform=transform,
                              context=TransformContext(source_table=source.table, target_table=target.table))
            fitted.append(True)

        tdesc = prepare_target(dst, source_desc=sdesc, source_client=src, create=create_target,
                               spec_path=target_spec, dry_run=opts.dry_run, kms_key=target_kms_key,
                               on_created=lambda r: created.append(r.to_dict()), check=fits)
        src_keys = KeySchema.from_table_description(sdesc)
        dst_keys = KeySchema.from_table_description(tdesc)
        if not fitted:
            fits(tdesc)
        names = [src.ref.table, dst.ref.table]
        base = copy_identity(source, target, names, 0, transform, opts)
        segments = (opts.segments or resumed_segments(opts, "copy", engine_identity(base, engine))
                    or default_segments(sdesc))
        identity = copy_identity(source, target, names, segments, transform, opts)
        held: Optional[RunLock] = None
        if clean_target and not opts.dry_run:
            # The copy's own lock, from before the clean to the copy's end: a --clean-target run
            # never empties a target a running copy of the same job is writing.
            held = RunLock(lock_path_for(job_checkpoint_path("copy", engine_identity(identity, engine), opts)),
                           busy=RUN_BUSY)
            held.acquire()
        try:
            cleaned = _clean_first(target, engine_identity(identity, engine), opts, confirm, engine) \
                if clean_target and not opts.dry_run else None
        except BaseException:
            if held is not None:
                held.release()
            raise
    finally:
        src.close()
        dst.close()
    read_rate = capacity_limit(sdesc, opts.max_read_units, opts.read_percent, "read")
    write_rate = capacity_limit(tdesc, opts.max_write_units, opts.write_percent, "write")
    writers = opts.writers or default_writers(opts.mode, write_rate)
    readers = default_readers(segments)  # segments read at once: the job's readers and its page sizes
    job = Job(
        kind="copy", identity=identity, options=opts,
        source=TableScanSpec(source, segments, retry=opts.retry, consistent_read=opts.consistent_read,
                             read_rate=read_rate,
                             page_limit=page_limit(read_rate, write_rate, readers),
                             readers=readers, raw=True),
        sink=DryRunSpec() if opts.dry_run else TableWriterSpec(target, dst_keys, retry=opts.retry, mode=opts.mode,
                                                               write_rate=write_rate, writers=writers,
                                                               index_keys=gsi_partition_keys(tdesc),
                                                               declared=declared_write_capacity(tdesc, dst.endpoint)),
        processing=ProcessingSpec(
            key_schema=dst_keys, transform=TransformRef.of(transform), on_error=opts.on_error,
            trusted=src_keys == dst_keys, source_key_schema=src_keys, source_table=source.table,
            target_table=target.table, sample=opts.sample, loaded=transform, index_keys=index_keys_of(tdesc),
        ),
        source_label=source.describe(), target_label=target.describe(),
        total_estimate=int(sdesc.get("ItemCount") or 0) or None, readers=readers,
        writers=writers, extra={"mode": opts.mode, "transform": transform.name if transform else None,
                                "clean_target": cleaned,
                                **({"target_created": created[0]} if created else {})},
        preflight=(src.stats.snapshot(), dst.stats.snapshot()),
    )
    try:
        return run(job, engine, cancel=cancel, observer=observer)
    finally:
        if held is not None:
            held.release()


def _clean_first(target: TableRef, identity: Dict[str, Any], opts: RunOptions, confirm: Optional[Confirm],
                 engine: Optional[Engine]) -> Optional[Dict[str, Any]]:
    """``--clean-target``: empty the target before the copy, as a crash-safe first phase.

    Returns what the clean did (deleted, seconds, its checkpoint), for the copy's report; None
    when a resumed copy is past that phase."""
    # Refuse before deleting anything when the copy itself would be refused afterwards
    # (an unfinished copy checkpoint without --resume/--restart).
    path = job_checkpoint_path("copy", identity, opts)
    open_checkpoint(path, identity, resume=opts.resume, restart=opts.restart, force=opts.force)
    # Once the copy phase has a checkpoint the clean is over (its own checkpoint says done);
    # before that, --resume continues an interrupted clean.
    if opts.resume and os.path.exists(path):
        return None
    clean_opts = RunOptions(progress=opts.progress, retry=opts.retry, resume=opts.resume,
                            restart=not opts.resume, drain_timeout=opts.drain_timeout,
                            checkpoint=f"{opts.checkpoint}.clean" if opts.checkpoint else None,
                            max_write_units=opts.max_write_units, write_percent=opts.write_percent)
    rep = clean_table(target, options=clean_opts, confirm=confirm, engine=engine)
    cleaned = {"deleted": rep.count("deleted"), "seconds": rep.duration_seconds, "checkpoint": rep.checkpoint_path,
               "dead_lettered": rep.dead_lettered}
    # Items another writer put in while the clean ran are mixed into the copy: the copy's report
    # must say so, not only a log line of the clean's.
    if rep.extra.get("left_after_clean"):
        cleaned["left_after_clean"] = rep.extra["left_after_clean"]
    return cleaned


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
