"""``clean_table``: delete every item of a table (scan keys only, batch deletes), after confirmation.

Used by ``ddbmigrate clean`` and by ``copy --clean-target`` (the restore-from-PITR case). The
confirmation names the table, its endpoint and its approximate item count; without a
confirmation callback (or --yes) nothing is deleted. The job is a composition: a key-only
TableScanSpec whose items become deletes -> TableWriterSpec.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional

from ..aws.capacity import capacity_limit, declared_write_capacity, page_limit
from ..aws.client import DynamoClient
from ..config import RunOptions, TableRef
from ..core.items import KeySchema
from ..core.specs import ProcessingSpec
from ..engine.job import Job
from ..engine.pipeline import default_readers
from ..engine.run import Engine, Observer, pool_size
from ..errors import UsageError
from ..reporting.report import Report
from ..sinks.table_writer import TableWriterSpec
from ..sources.table_scan import TableScanSpec, default_segments
from .common import Confirm, default_writers, engine_identity, resumed_segments, run

log = logging.getLogger("ddbmigrate.clean")


def clean_table(
    table: TableRef,
    options: Optional[RunOptions] = None,
    *,
    confirm: Optional[Confirm] = None,
    engine: Optional[Engine] = None,
    cancel: Optional[threading.Event] = None,
    observer: Optional[Observer] = None,
) -> Report:
    """Delete every item in ``table``. ``confirm(message)`` must return True to proceed."""
    opts = options or RunOptions()
    c = DynamoClient(table, pool_size=pool_size(0, 4), retry=opts.retry)
    try:
        desc = c.describe_table()
        endpoint, region, name = c.endpoint, c.region, c.ref.table
    finally:
        c.close()
    count = int(desc.get("ItemCount") or 0)
    msg = (f"Delete ALL items of table {name!r} at {endpoint} ({region}), about {count:,} items "
           "(item count is refreshed by DynamoDB every ~6 hours)?")
    if confirm is None or not confirm(msg):
        raise UsageError(f"not emptying {name}: not confirmed (pass --yes to skip the prompt)")
    keys = KeySchema.from_table_description(desc)
    base = {"job": "clean", "names": [name], "table": table.identity()}
    # A resumed clean keeps its checkpoint's segments (the table shrank since: the default drifts).
    segments = opts.segments or resumed_segments(opts, "clean", engine_identity(base, engine)) or default_segments(desc)
    # The same capacity caps as copy: the scan reads keys only, the deletes cost write units.
    read_rate = capacity_limit(desc, opts.max_read_units, opts.read_percent, "read")
    write_rate = capacity_limit(desc, opts.max_write_units, opts.write_percent, "write")
    writers = opts.writers or default_writers("overwrite", write_rate)
    readers = default_readers(segments)  # segments read at once: the job's readers and its page sizes
    job = Job(
        kind="clean", identity={**base, "segments": segments}, options=opts,
        source=TableScanSpec(table, segments, retry=opts.retry, consistent_read=opts.consistent_read,
                             read_rate=read_rate,
                             page_limit=page_limit(read_rate, write_rate, readers),
                             readers=readers, projection=keys.names,
                             as_deletes=True),
        sink=TableWriterSpec(table, keys, retry=opts.retry, write_rate=write_rate, writers=writers,
                             declared=declared_write_capacity(desc, endpoint)),
        processing=ProcessingSpec(key_schema=keys, trusted=True),
        target_label=table.describe(), total_estimate=count or None, readers=readers,
        writers=writers, progress_counter="deleted",
    )
    report = run(job, engine, cancel=cancel, observer=observer)
    if report.exit_code == 0 and not opts.dry_run:
        _check_left(table, opts, report)
    return report


def _check_left(table: TableRef, opts: RunOptions, report: Report) -> None:
    """A clean's scan sees each item once: items written while it ran (an application still
    writing, a replicator) are left behind, and "done" alone would let a --clean-target copy or
    a backfill mix them in. One page of keys, strongly consistent, says whether any is left."""
    c = DynamoClient(table, pool_size=pool_size(0, 2), retry=opts.retry)
    try:
        page = c.call("Scan", {"TableName": c.ref.table, "Limit": 100, "ConsistentRead": True,
                               "Select": "COUNT"}, table=c.ref.table)
    except Exception as e:  # the clean itself is done; this check only warns
        log.warning("could not check that %s is empty after the clean: %s", table.table, e)
        return
    finally:
        c.close()
    left = int(page.get("Count") or 0)
    if left or page.get("LastEvaluatedKey"):
        more = "+" if page.get("LastEvaluatedKey") else ""
        report.extra["left_after_clean"] = f"{left}{more}"
        log.warning("%s is not empty after the clean: %s item(s) found by a check at its end, written while it "
                    "ran; stop the writers and run clean again before loading it", table.table, f"{left}{more}")
