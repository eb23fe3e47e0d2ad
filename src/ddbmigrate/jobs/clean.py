"""``clean_table``: delete every item of a table (scan keys only, batch deletes), after confirmation.

Used by ``ddbmigrate clean`` and by ``copy --clean-target`` (the restore-from-PITR case). The
confirmation names the table, its endpoint and its approximate item count; without a
confirmation callback (or --yes) nothing is deleted.
"""

from __future__ import annotations

from typing import Callable, Optional

from ..aws.client import DynamoClient
from ..config import RunOptions, TableRef
from .copy import default_writers
from ..errors import UsageError
from ..core.items import KeySchema
from ..engine.pipeline import DELETE, Processing, default_readers
from ..reporting.report import Report
from ..engine.run import JobSpec, pool_size, run_job
from ..sinks.table_writer import TableWriter
from ..sources.table_scan import TableScanSource, default_segments

Confirm = Callable[[str], bool]


class _KeysAsDeletes:
    """Wrap a scan so each item becomes a delete of its key."""

    def __init__(self, scan: TableScanSource) -> None:
        self.scan = scan

    def units(self):  # type: ignore[no-untyped-def]
        return self.scan.units()

    def read(self, unit, position, stop):  # type: ignore[no-untyped-def]
        for chunk in self.scan.read(unit, position, stop):
            chunk.ops = [(DELETE, it) for it in chunk.items]
            chunk.items = []
            yield chunk


def clean_table(
    table: TableRef,
    options: Optional[RunOptions] = None,
    *,
    confirm: Optional[Confirm] = None,
    client: Optional[DynamoClient] = None,
) -> Report:
    """Delete every item in ``table``. ``confirm(message)`` must return True to proceed."""
    opts = options or RunOptions()
    writers = opts.writers or default_writers("overwrite")
    c = client or DynamoClient(table, pool_size=pool_size(32, writers), retry=opts.retry)
    desc = c.describe_table()
    count = int(desc.get("ItemCount") or 0)
    msg = (f"Delete ALL items of table {c.ref.table!r} at {c.endpoint} ({c.region}), about {count:,} items "
           "(item count is refreshed by DynamoDB every ~6 hours)?")
    if confirm is None or not confirm(msg):
        raise UsageError(f"not emptying {c.ref.table}: not confirmed (pass --yes to skip the prompt)")
    keys = KeySchema.from_table_description(desc)
    from .copy import _page_limit, capacity_limit, make_limiter, resumed_segments

    # A resumed clean keeps its checkpoint's segments (the table shrank since: the default drifts).
    segments = (opts.segments or resumed_segments(opts, "clean", {"job": "clean", "names": [c.ref.table],
                                                                  "table": table.identity()})
                or default_segments(desc))

    # The same capacity caps as copy: the scan reads keys only, the deletes cost write units.
    read_rate = capacity_limit(desc, opts.max_read_units, opts.read_percent, "read")
    write_rate = capacity_limit(desc, opts.max_write_units, opts.write_percent, "write")
    rlim, wlim = make_limiter(read_rate, "read"), make_limiter(write_rate, "write")
    scan = TableScanSource(c, c.ref.table, segments, projection=list(keys.names), limiter=rlim,
                           page_limit=_page_limit(read_rate), consistent_read=opts.consistent_read)
    sink = TableWriter(c, c.ref.table, keys, limiter=wlim)
    identity = {"job": "clean", "names": [c.ref.table], "table": table.identity(), "segments": segments}
    spec = JobSpec(
        job="clean", source=_KeysAsDeletes(scan), sink=sink,
        processing=Processing(key_schema=keys, trusted=True), options=opts, identity=identity,
        target_label=table.describe(), total_estimate=count or None, readers=default_readers(segments),
        writers=writers, stats=[c.stats], progress_done=lambda cnt: cnt.get("deleted", 0), limiters=[wlim, rlim],
    )
    return run_job(spec)
