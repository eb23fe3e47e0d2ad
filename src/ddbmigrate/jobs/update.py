"""``update_table``: transform a table's items in place while the application keeps writing.

The job is a composition: TableScanSpec -> (items as read) -> ConditionalUpdateSpec, run by any
engine with the one driver (checkpoint, ``--resume``, dead letters, progress, report). The
transform runs in the sink, not in the processing step, because the sink needs the image it
was computed from (the condition of the write) and must run it again on a newer image after a
lost race; see sinks/conditional_update.py for the write and docs/migrations.md for what it
makes safe.

Counts add up as ``read == written + unchanged + vanished + dead_lettered``; ``retried_races``
counts lost races (each one re-read, re-transformed and retried).
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional

import orjson

from ..aws.capacity import capacity_limit, declared_write_capacity, page_limit
from ..aws.client import DynamoClient
from ..config import RunOptions, TableRef
from ..core.items import MAX_ITEM_BYTES, KeySchema, WireItem, oversize
from ..core.specs import ProcessingSpec, TransformRef
from ..core.transform import Transform, TransformContext, as_transform
from ..engine.job import Job
from ..engine.pipeline import default_readers
from ..engine.run import Engine, Observer
from ..errors import DdbMigrateError, UsageError
from ..reporting.report import Report
from ..sinks.conditional_update import DEFAULT_MAX_RACES, ConditionalUpdateSpec
from ..sources.table_scan import TableScanSpec, default_segments
from .common import check_resume_options, engine_identity, resumed_segments, run
from .fit import sample_problems, sample_table

DEFAULT_UPDATE_WRITERS = 32  # one UpdateItem per item: many requests in flight, as conditional puts


def update_table(
    table: TableRef,
    options: Optional[RunOptions] = None,
    *,
    transform: Any = None,
    version_attribute: Optional[str] = None,
    max_races: int = DEFAULT_MAX_RACES,
    engine: Optional[Engine] = None,
    cancel: Optional[threading.Event] = None,
    observer: Optional[Observer] = None,
) -> Report:
    """Apply ``transform`` to every item of ``table`` in place and return the report.

    ``transform`` is a ``file.py:func`` reference, a loaded :class:`Transform` or a plain
    callable (dict in; one dict with the same key out, or None to leave the item as it is);
    ``options.transform`` is used when it is None. Only changed attributes are written, each
    write conditional on the item being what was read (or on ``version_attribute``, which the
    update then moves on by one); a lost race is re-read, transformed again and retried up to
    ``max_races`` times.
    """
    opts = options or RunOptions()
    check_resume_options(opts)
    if transform is None and opts.transform:
        transform = opts.transform
    if transform is None:
        raise UsageError("update needs a transform: --transform path/to/file.py:function")
    tf: Transform = as_transform(transform)
    if tf.name.startswith("<callable") and (opts.processes > 1 or (engine is not None and engine.name != "threads")):
        raise UsageError(f"transform {tf.name} is not a module-level function of a file, so only the threads "
                         "engine can run it (worker processes load the transform by reference)")
    if opts.mode != "overwrite":
        raise UsageError("update writes in place: --mode does not apply to it")
    if max_races < 1:
        raise UsageError("max_races must be at least 1")
    writers = opts.writers or DEFAULT_UPDATE_WRITERS
    client = DynamoClient(table, pool_size=4, retry=opts.retry)
    try:
        desc = client.describe_table()
        keys = KeySchema.from_table_description(desc)
        if version_attribute is not None and version_attribute in keys.names:
            raise UsageError(f"--version-attribute {version_attribute!r} is a key attribute of {table.table}")
        # Before anything is written: would this transform's output be refused for every item?
        check_sample(table.table, desc, keys, sample_table(client, table.table), tf,
                     TransformContext(source_table=table.table, target_table=table.table))
    finally:
        client.close()
    base = update_identity(table, 0, tf, version_attribute, opts)
    segments = (opts.segments or resumed_segments(opts, "update", engine_identity(base, engine))
                or default_segments(desc))
    identity = update_identity(table, segments, tf, version_attribute, opts)
    read_rate = capacity_limit(desc, opts.max_read_units, opts.read_percent, "read")
    write_rate = capacity_limit(desc, opts.max_write_units, opts.write_percent, "write")
    # The transform runs in the sink (it needs the image it transforms); the processing step
    # passes the scanned items through unparsed.
    in_sink = ProcessingSpec(key_schema=keys, transform=TransformRef.of(tf), on_error=opts.on_error,
                             source_key_schema=keys, source_table=table.table, target_table=table.table, loaded=tf)
    readers = default_readers(segments)  # segments read at once: the job's readers and its page sizes
    job = Job(
        kind="update", identity=identity, options=opts,
        source=TableScanSpec(table, segments, retry=opts.retry, consistent_read=opts.consistent_read,
                             read_rate=read_rate,
                             page_limit=page_limit(read_rate, write_rate, readers),
                             readers=readers, raw=True),
        sink=ConditionalUpdateSpec(table, keys, in_sink, retry=opts.retry, version_attribute=version_attribute,
                                   write_rate=write_rate, writers=writers, max_races=max_races,
                                   dry_run=opts.dry_run, declared=declared_write_capacity(desc, client.endpoint)),
        processing=ProcessingSpec(key_schema=keys, trusted=True, source_key_schema=keys, source_table=table.table,
                                  target_table=table.table),
        source_label=table.describe(), target_label=table.describe() + " (in place)",
        total_estimate=int(desc.get("ItemCount") or 0) or None, readers=readers,
        writers=writers, extra={"transform": tf.name, "version_attribute": version_attribute},
        preflight=(client.stats.snapshot(),),
    )
    return run(job, engine, cancel=cancel, observer=observer)


def check_sample(name: str, desc: Dict[str, Any], keys: KeySchema, sample: List[WireItem], tf: Transform,
                 context: TransformContext) -> None:
    """Raise UsageError (exit 2) when no sampled item's update could be written: the transform
    fans out or changes the key, or its outputs do not fit the table's or an index's key types or
    are over 400 KB.
    A few odd items are the dead-letter file's business; a sample with no good one means the
    whole table would be dead letters. The transform runs once on each sampled item here."""
    outputs: List[WireItem] = []
    shape: List[str] = []
    large: List[str] = []
    for item in sample:
        try:
            outs = tf(item, context)
        except DdbMigrateError:
            continue  # the transform's own errors are reported item by item (--on-error)
        if not outs:
            continue
        where = orjson.dumps(keys.project_or_none(item)).decode()
        if len(outs) > 1:
            shape.append(f"returned {len(outs)} items for the item {where}")
        elif keys.problem(outs[0]) or keys.key(outs[0]) != keys.key(item):
            got = orjson.dumps(keys.project_or_none(outs[0])).decode()
            shape.append(f"changed the key of the item {where} to {got}")
        elif (size := oversize(outs[0], len(orjson.dumps(outs[0])))) is not None:
            large.append(f"the item {where} would be {size} bytes")
        else:
            outputs.append(outs[0])
    if shape and not outputs:
        raise UsageError(f"--transform {tf.name}: an update transform returns one item with the same key (or None "
                         f"to leave it as it is), but on a sample of {len(sample)} items it {shape[0]}; nothing was "
                         "written", table=name, code="KeyChanged")
    if large and not outputs:
        # Each would be a dead letter: the whole table read and dead-lettered, exit 3.
        raise UsageError(f"--transform {tf.name}: on a sample of {len(sample)} items, every item it returns is over "
                         f"DynamoDB's item size limit of {MAX_ITEM_BYTES} bytes ({large[0]}); nothing was written",
                         table=name, code="ItemTooLarge")
    n, bad, found = sample_problems(outputs, desc)
    if n and bad == n:
        first = found[0].replace("source items", "transformed items")
        raise UsageError(f"what this update writes does not fit table {name!r}: {first}; nothing was written",
                         table=name, code="KeyMismatch")


def update_identity(table: TableRef, segments: int, tf: Transform, version_attribute: Optional[str],
                    opts: RunOptions) -> Dict[str, Any]:
    """What makes two update runs the same job (the checkpoint's fingerprint)."""
    return {
        "job": "update",
        "names": [table.table],
        "table": table.identity(),
        "segments": segments,
        "transform": tf.name,
        "transform_hash": tf.code_hash,
        "version_attribute": version_attribute,
        **{k: v for k, v in opts.fingerprint_fields().items() if k != "transform"},
    }


__all__ = ["update_table"]
