"""DynamoDB's managed Export to S3 / Import from S3, started and *watched*.

``native_export`` checks point-in-time recovery (DescribeContinuousBackups) first, because
ExportTableToPointInTime refuses a table without it; then calls ExportTableToPointInTime (full,
at a point in time, or incremental between two times) and polls DescribeExport with a progress
display (elapsed, status, billed size and item count once DynamoDB reports them). It ends with
the export folder, ``s3://bucket/prefix/AWSDynamoDB/<ExportId>/``, which ``ddbmigrate import``
and ``native_import`` read.

``native_import`` calls ImportTable, which always creates a *new* table (from a
CloudFormation-style spec, see schema.py), and polls DescribeImport: processed items and bytes,
errors, and an ETA from the processed rate when the item total is known (an export folder's
``manifest-summary.json`` says it).

Invariants: nothing here moves items itself, so the report's counts are DynamoDB's own
(processed = imported + errors for an import; DynamoDB writes the items it rejected to the
CloudWatch log group named in the report). Ctrl-C stops the *watching* only; the managed
operation goes on in AWS and the message says how to watch it again. Time and sleep are
injectable, so the watch loop is tested without waiting.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from ..config import TableRef
from ..errors import (
    AwsError,
    DdbMigrateError,
    FatalError,
    InterruptedError_,
    TableNotFoundError,
    UsageError,
)
from ..reporting.progress import Progress, fmt_bytes
from ..reporting.report import Report, deliver, utcnow
from .client import DynamoClient
from .errors import error_code, error_message

TERMINAL_EXPORT = ("COMPLETED", "FAILED")
TERMINAL_IMPORT = ("COMPLETED", "FAILED", "CANCELLED")
# AWS limits for incremental exports: the window is at least 15 minutes and at most 24 hours.
MIN_INCREMENTAL = _dt.timedelta(minutes=15)
MAX_INCREMENTAL = _dt.timedelta(hours=24)
_EXPORT_FOLDER = re.compile(r"^(?P<prefix>.*?)/?AWSDynamoDB/(?P<id>[^/]+)/?(?P<data>data/?)?$")

TimeLike = Union[str, int, float, _dt.datetime]


def parse_time(value: TimeLike, what: str = "time") -> _dt.datetime:
    """ISO 8601 (``2026-11-25T10:00:00Z``, offsets allowed) or Unix seconds -> aware UTC datetime."""
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _from_unix(float(value), str(value), what)
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return _from_unix(float(text), text, what)
    try:
        t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f"{what} {text!r}: expected ISO 8601 like 2026-11-25T10:00:00Z or Unix seconds") from None
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def _from_unix(seconds: float, shown: str, what: str) -> _dt.datetime:
    """Unix seconds -> aware UTC datetime; NaN, infinities and seconds past year 9999 are a
    usage error naming the value (``fromtimestamp`` raised ValueError/OverflowError: exit 1)."""
    try:
        return _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise UsageError(f"{what} {shown!r}: not a time (Unix seconds between 0 and the year 9999, or ISO 8601 "
                         "like 2026-11-25T10:00:00Z)") from None


def check_watching(poll_interval: float, timeout: Optional[float]) -> None:
    """``poll_interval`` and ``timeout`` (None: no limit) finite numbers of seconds, 0 or more,
    checked before the operation starts: a negative or NaN interval broke the wait (``time.sleep``
    raises) only once the export or import was running, an infinite one never polled again, and a
    NaN timeout never ends."""
    ok = isinstance(poll_interval, (int, float)) and not isinstance(poll_interval, bool) \
        and math.isfinite(poll_interval) and poll_interval >= 0
    if not ok:
        raise UsageError(f"poll_interval must be a finite number of seconds, 0 or more, not {poll_interval!r}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not math.isfinite(timeout) or timeout < 0):
        raise UsageError(f"timeout must be None or a finite number of seconds, 0 or more, not {timeout!r}")


def count(d: Mapping[str, Any], key: str) -> Optional[int]:
    """A count field of a Describe* answer as an int >= 0, or None when it is missing or is not
    one (a string, a negative or fractional number): a count the service did not give is not
    invented, and a malformed one does not end the watching with a traceback."""
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or v != int(v):
        return None
    return int(v)


def split_s3_uri(uri: str) -> Tuple[str, str]:
    """``s3://bucket/a/b/`` -> (``bucket``, ``a/b``); the prefix may be empty."""
    if not uri.startswith("s3://"):
        raise UsageError(f"{uri!r}: a native export/import needs an s3://bucket/prefix location")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise UsageError(f"{uri!r}: expected s3://bucket/prefix")
    return bucket, prefix.strip("/")


def export_folder(bucket: str, prefix: str, desc: Dict[str, Any]) -> str:
    """The export's folder URL, from its manifest key when DynamoDB gives one, else its ARN."""
    # A watched export (export_arn=) names its own place: the caller's s3_uri may differ.
    if isinstance(desc.get("S3Bucket"), str) and desc["S3Bucket"]:
        bucket = desc["S3Bucket"]
        prefix = str(desc.get("S3Prefix") or "").strip("/")
    manifest = desc.get("ExportManifest")
    if manifest and "/" in str(manifest):
        return f"s3://{bucket}/{str(manifest).rsplit('/', 1)[0]}/"
    export_id = str(desc.get("ExportArn", "")).rsplit("/", 1)[-1]
    base = f"{prefix}/" if prefix else ""
    return f"s3://{bucket}/{base}AWSDynamoDB/{export_id}/"


def aws_error(e: Exception, table: str, op: str) -> DdbMigrateError:
    code, msg = error_code(e), error_message(e)
    if code == "PointInTimeRecoveryUnavailableException":
        return FatalError(f"{op}: point-in-time recovery is not enabled on {table}", table=table, code=code)
    return AwsError(f"{op} failed: {msg or e}", table=table, code=code)


class StopWatching(Exception):
    """The caller asked to stop watching (a plan's Ctrl-C / SIGTERM)."""


class Watch:
    """Poll ``describe()`` until a terminal status, feeding a progress display."""

    def __init__(self, job: str, describe: Callable[[], Dict[str, Any]], snapshot: Callable[[Dict[str, Any]], Dict[str, Any]],
                 terminal: Tuple[str, ...], status_key: str, *, progress: str, poll_interval: float,
                 timeout: Optional[float], sleep: Callable[[float], None], clock: Callable[[], float],
                 observer: Any = None, cancel: Optional[threading.Event] = None, follow: str = "") -> None:
        self.job = job
        # "<kind> <ARN>; follow it with ...": said when the watching stops before the operation ends
        self.follow = follow
        self.describe = describe
        self.to_snapshot = snapshot
        self.terminal = terminal
        self.status_key = status_key
        self.progress_mode = progress
        self.poll = poll_interval
        self.timeout = timeout
        self.sleep = sleep
        self.clock = clock
        self.last: Dict[str, Any] = {}
        self.polls = 0
        self.timeline: List[Dict[str, Any]] = []
        self.observer = observer
        self.stop = cancel or threading.Event()  # a caller's stop: stop watching (AWS goes on)

    def snapshot(self) -> Dict[str, Any]:
        return self.to_snapshot(self.last)

    def run(self, first: Dict[str, Any]) -> Dict[str, Any]:
        self.last = first
        display = Progress(self.job, self.snapshot, mode=self.progress_mode, label="items")
        detach = self.observer.attach(self.job, self.snapshot) if self.observer is not None else (lambda: None)
        display.start()
        t0 = self.clock()
        try:
            while str(self.last.get(self.status_key)) not in self.terminal:
                if self.timeout is not None and self.clock() - t0 > self.timeout:
                    raise FatalError(f"still {self.last.get(self.status_key)} after {self.timeout:.0f}s of watching; "
                                     f"{self.follow or 'the operation continues in AWS'}")
                if self.sleep is time.sleep:
                    self.stop.wait(self.poll)  # wakes at once when a plan stops
                else:
                    self.sleep(self.poll)
                if self.stop.is_set():
                    raise StopWatching()
                self.last = self.describe()
                self.polls += 1
                if self.last.get(self.status_key) is None:
                    # Not a status that may end later: without one it would be polled forever.
                    raise FatalError(f"the answer to the poll has no {self.status_key}, so whether it ended is "
                                     f"unknown; {self.follow or 'the operation may continue in AWS'}",
                                     code="MissingStatus")
        finally:
            display.stop()
            detach()
        self.timeline = display.timeline
        return self.last


def follow_text(kind: str, arn: str) -> str:
    """How to watch a ``kind`` (export, import) that goes on in AWS again."""
    return (f"{kind} {arn} continues in AWS. Watch it again with native_{kind}(..., {kind}_arn={arn!r}) or "
            f"`aws dynamodb describe-{kind} --{kind}-arn {arn}`")


def _watch_to_end(watch: Watch, first: Dict[str, Any], kind: str, arn: str) -> Dict[str, Any]:
    """``watch.run(first)``; Ctrl-C stops the watching only, and says how to watch the ``kind`` again."""
    try:
        return watch.run(first)
    except (KeyboardInterrupt, StopWatching):
        raise InterruptedError_(f"stopped watching; {follow_text(kind, arn)}") from None


def _start(call: Callable[[], Dict[str, Any]], op: str, table: str, listing: str) -> Dict[str, Any]:
    """The start call; Ctrl-C during it may have started the operation without our knowing its
    ARN, so the message says where to look (``listing``) instead of a bare "interrupted"."""
    try:
        return call()
    except KeyboardInterrupt:
        raise InterruptedError_(f"interrupted during {op}: the operation may have started in AWS and goes on "
                                f"without being watched; look for it with `{listing}`", table=table) from None
    except Exception as e:
        raise aws_error(e, table, op) from None


def _settle(report: Report, final: Dict[str, Any], kind: str, status_key: str, table: str,
            report_path: Optional[str]) -> Report:
    """Write the report (if asked) and return it; raise FatalError, carrying it, unless COMPLETED."""
    if final.get(status_key) == "COMPLETED":
        return deliver(report, report_path)
    code, why = final.get("FailureCode"), final.get("FailureMessage")
    # A CANCELLED operation has no failure code or message: none is printed as "None: None".
    error = f"{kind} {final.get(status_key)}" + "".join(f": {x}" for x in (code, why) if x)
    report.status, report.error = "failed", error
    return deliver(report, report_path, FatalError(error, table=table, code=code))


def _check_pitr(client: DynamoClient, table: str, export_time: Optional[_dt.datetime]) -> None:
    try:
        cb = client.control.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
    except client.control.exceptions.TableNotFoundException:
        raise TableNotFoundError(f"table {table!r} does not exist at {client.endpoint}", table=table) from None
    except Exception as e:
        raise aws_error(e, table, "DescribeContinuousBackups") from None
    pitr = cb.get("PointInTimeRecoveryDescription") or {}
    status = pitr.get("PointInTimeRecoveryStatus", "DISABLED")
    if status != "ENABLED":
        raise FatalError(
            f"point-in-time recovery is {status} on {table}, and a native export needs it: enable it with "
            f"`aws dynamodb update-continuous-backups --table-name {table} --point-in-time-recovery-specification "
            "PointInTimeRecoveryEnabled=true` (billed per GB-month), or export without --native",
            table=table, code="PointInTimeRecoveryUnavailable")
    if export_time is not None:
        earliest, latest = pitr.get("EarliestRestorableDateTime"), pitr.get("LatestRestorableDateTime")
        if isinstance(earliest, _dt.datetime) and export_time < earliest:
            raise UsageError(f"--export-time {export_time.isoformat()} is before the earliest restorable time "
                             f"{earliest.isoformat()} of {table}")
        if isinstance(latest, _dt.datetime) and export_time > latest + _dt.timedelta(minutes=5):
            raise UsageError(f"--export-time {export_time.isoformat()} is after the latest restorable time "
                             f"{latest.isoformat()} of {table}")


def native_export(
    table: TableRef,
    s3_uri: str,
    export_time: Optional[TimeLike] = None,
    incremental: Optional[Tuple[TimeLike, TimeLike]] = None,
    *,
    export_format: str = "DYNAMODB_JSON",
    view_type: str = "NEW_AND_OLD_IMAGES",
    s3_bucket_owner: Optional[str] = None,
    export_arn: Optional[str] = None,
    on_started: Optional[Callable[[str], None]] = None,
    progress: str = "off",
    observer: Any = None,
    cancel: Optional[threading.Event] = None,
    poll_interval: float = 10.0,
    timeout: Optional[float] = None,
    report_path: Optional[str] = None,
    client: Optional[DynamoClient] = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Report:
    """Start a managed export of ``table`` to ``s3_uri`` and watch it to the end.

    ``export_time`` exports the table as it was then (default: now). ``incremental=(from, to)``
    exports only the changes in that window (15 minutes to 24 hours). ``export_arn`` watches an
    export that is already running instead of starting one; ``on_started`` is given the export's
    ARN as soon as it is known. Returns a report whose
    ``extra["export_path"]`` is the export folder; raises FatalError if DynamoDB reports FAILED.
    """
    if export_time is not None and incremental is not None:
        raise UsageError("--export-time and --incremental are exclusive (an incremental export has its own window)")
    if export_format not in ("DYNAMODB_JSON", "ION"):
        raise UsageError(f"export format must be DYNAMODB_JSON or ION, not {export_format!r}")
    if view_type not in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
        raise UsageError(f"view type must be NEW_IMAGE or NEW_AND_OLD_IMAGES, not {view_type!r}")
    check_watching(poll_interval, timeout)
    bucket, prefix = split_s3_uri(s3_uri)
    at = parse_time(export_time, "--export-time") if export_time is not None else None
    window: Optional[Tuple[_dt.datetime, _dt.datetime]] = None
    if incremental is not None:
        frm, to = parse_time(incremental[0], "--incremental FROM"), parse_time(incremental[1], "--incremental TO")
        if to <= frm:
            raise UsageError(f"--incremental: TO ({to.isoformat()}) must be after FROM ({frm.isoformat()})")
        if to - frm < MIN_INCREMENTAL or to - frm > MAX_INCREMENTAL:
            raise UsageError("--incremental: the window must be between 15 minutes and 24 hours "
                             f"(got {to - frm})")
        window = (frm, to)
    c = client or DynamoClient(table, pool_size=2)
    desc = c.describe_table()
    report = Report(job="native-export", source=table.describe(), target=s3_uri)
    if export_arn is None:
        _check_pitr(c, table.table, at)
        req: Dict[str, Any] = {"TableArn": desc["TableArn"], "S3Bucket": bucket, "ExportFormat": export_format}
        if prefix:
            req["S3Prefix"] = prefix
        if s3_bucket_owner:
            req["S3BucketOwner"] = s3_bucket_owner
        if at is not None:
            req["ExportTime"] = at
        if window is not None:
            req["ExportType"] = "INCREMENTAL_EXPORT"
            req["IncrementalExportSpecification"] = {"ExportFromTime": window[0], "ExportToTime": window[1],
                                                     "ExportViewType": view_type}
        first = _start(lambda: c.control.export_table_to_point_in_time(**req)["ExportDescription"],
                       "ExportTableToPointInTime", table.table,
                       f"aws dynamodb list-exports --table-arn {desc['TableArn']}")
    else:
        first = _describe_export(c, export_arn, table.table)
    arn = str(first.get("ExportArn"))
    if on_started is not None:
        on_started(arn)  # (a plan keeps it: its --resume watches this export, never starts a second)
    report.extra.update({"export_arn": arn, "export_type": first.get("ExportType") or
                         ("INCREMENTAL_EXPORT" if window else "FULL_EXPORT")})

    def snapshot(d: Dict[str, Any]) -> Dict[str, Any]:
        status = str(d.get("ExportStatus", "?"))
        billed = count(d, "BilledSizeBytes")
        parts = [status]
        if billed is not None:
            parts.append(f"billed {fmt_bytes(billed)}")
        return {"done": count(d, "ItemCount") or 0, "total": None, "status": " ".join(parts)}

    watch = Watch("native-export", lambda: _describe_export(c, arn, table.table), snapshot, TERMINAL_EXPORT,
                  "ExportStatus", progress=progress, poll_interval=poll_interval, timeout=timeout, sleep=sleep,
                  clock=clock, observer=observer, cancel=cancel, follow=follow_text("export", arn))
    t0 = clock()
    final = _watch_to_end(watch, first, "export", arn)
    report.duration_seconds = round(clock() - t0, 3)
    report.timeline = watch.timeline
    report.finished_at = utcnow()
    items = count(final, "ItemCount") or 0
    report.counters = {"read": items, "written": items}
    report.extra.update({"export_status": final.get("ExportStatus"), "billed_size_bytes": count(final, "BilledSizeBytes"),
                         "item_count": count(final, "ItemCount"), "export_path": export_folder(bucket, prefix, final),
                         "polls": watch.polls})
    if at is not None:
        report.extra["export_time"] = at.isoformat()
    if window is not None:
        report.extra["export_from_time"], report.extra["export_to_time"] = window[0].isoformat(), window[1].isoformat()
    report.items_per_second = round(items / report.duration_seconds, 1) if report.duration_seconds > 0 else 0.0
    return _settle(report, final, "export", "ExportStatus", table.table, report_path)


def _describe_export(c: DynamoClient, arn: str, table: str) -> Dict[str, Any]:
    try:
        return dict(c.control.describe_export(ExportArn=arn)["ExportDescription"])
    except Exception as e:
        raise aws_error(e, table, "DescribeExport") from None


def import_prefix(uri: str) -> Tuple[str, str, bool]:
    """(bucket, key prefix, is an export folder): an export folder is read from its data/ files."""
    bucket, prefix = split_s3_uri(uri)
    m = _EXPORT_FOLDER.match(prefix)
    if m:
        base = f"{m.group('prefix')}/" if m.group("prefix") else ""
        return bucket, f"{base}AWSDynamoDB/{m.group('id')}/data/", True
    return bucket, (prefix + "/") if prefix else "", False


def import_request(spec: Union[str, Dict[str, Any]], table: str) -> Tuple[Dict[str, Any], List[str]]:
    """TableCreationParameters for ImportTable from a spec, plus notes on what it cannot carry."""
    from .tables import load_spec, spec_to_request

    data = load_spec(spec) if isinstance(spec, str) else spec
    req = spec_to_request(data, table_name=table)
    notes: List[str] = []
    if req.get("LocalSecondaryIndexes"):
        raise UsageError("ImportTable cannot create local secondary indexes; remove them from the spec "
                         "(or create the table first and use `ddbmigrate import` without --native)")
    if req.pop("StreamSpecification", None):
        notes.append("ImportTable cannot enable a stream: enable it after the import (UpdateTable)")
    props = data.get("Properties", data) if isinstance(data, dict) else {}
    if isinstance(props, dict) and props.get("TimeToLiveSpecification"):
        notes.append("ImportTable cannot set TTL: enable it after the import (UpdateTimeToLive)")
    return req, notes


def native_import(
    s3_uri: str,
    table: TableRef,
    spec: Union[str, Dict[str, Any]],
    *,
    input_format: str = "DYNAMODB_JSON",
    compression: str = "GZIP",
    s3_bucket_owner: Optional[str] = None,
    total_items: Optional[int] = None,
    import_arn: Optional[str] = None,
    on_started: Optional[Callable[[str], None]] = None,
    progress: str = "off",
    observer: Any = None,
    cancel: Optional[threading.Event] = None,
    poll_interval: float = 10.0,
    timeout: Optional[float] = None,
    report_path: Optional[str] = None,
    s3_endpoint_url: Optional[str] = None,
    client: Optional[DynamoClient] = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Report:
    """Create ``table`` with ImportTable from the files at ``s3_uri`` and watch it to the end.

    ``s3_uri`` may be an export folder (``.../AWSDynamoDB/<id>/``: its ``data/`` files are
    imported and its manifest gives the item total for the ETA) or any prefix of DynamoDB JSON
    files. ``spec`` is a CloudFormation-style table spec (path or mapping). Returns the report
    (``counters``: read = processed, written = imported, dead_lettered = DynamoDB's error count;
    the rejected items are in ``extra["cloudwatch_log_group"]``); raises FatalError if the
    import FAILED or was CANCELLED.
    """
    if input_format not in ("DYNAMODB_JSON", "ION", "CSV"):
        raise UsageError(f"input format must be DYNAMODB_JSON, ION or CSV, not {input_format!r}")
    if compression not in ("GZIP", "ZSTD", "NONE"):
        raise UsageError(f"compression must be GZIP, ZSTD or NONE, not {compression!r}")
    check_watching(poll_interval, timeout)
    bucket, key_prefix, is_export = import_prefix(s3_uri)
    c = client or DynamoClient(table, pool_size=2)
    report = Report(job="native-import", source=s3_uri, target=table.describe())
    if import_arn is None:
        params, notes = import_request(spec, table.table)
        if c.table_exists(table.table):
            raise UsageError(f"table {table.table} already exists: ImportTable only creates new tables; load into an "
                             "existing table with `ddbmigrate import` (without --native)", table=table.table)
        if total_items is None and is_export:
            total_items = manifest_item_count(bucket, key_prefix, table, s3_endpoint_url)
        source: Dict[str, Any] = {"S3Bucket": bucket, "S3KeyPrefix": key_prefix}
        if s3_bucket_owner:
            source["S3BucketOwner"] = s3_bucket_owner
        req: Dict[str, Any] = {"S3BucketSource": source, "InputFormat": input_format,
                               "TableCreationParameters": params}
        if compression != "NONE":
            req["InputCompressionType"] = compression
        first = _start(lambda: c.control.import_table(**req)["ImportTableDescription"], "ImportTable",
                       table.table, "aws dynamodb list-imports")
        report.extra["notes"] = notes
    else:
        first = _describe_import(c, import_arn, table.table)
    arn = str(first.get("ImportArn"))
    if on_started is not None:
        on_started(arn)
    report.extra.update({"import_arn": arn, "s3_key_prefix": key_prefix, "total_items": total_items})
    t0 = clock()

    def snapshot(d: Dict[str, Any]) -> Dict[str, Any]:
        done, errors = import_counts(d)[0], count(d, "ErrorCount") or 0
        parts = [str(d.get("ImportStatus", "?")), fmt_bytes(count(d, "ProcessedSizeBytes"))]
        if errors:
            parts.append(f"errors {errors}")
        return {"done": done, "total": total_items, "status": " ".join(parts), "dead_lettered": errors}

    watch = Watch("native-import", lambda: _describe_import(c, arn, table.table), snapshot, TERMINAL_IMPORT,
                  "ImportStatus", progress=progress, poll_interval=poll_interval, timeout=timeout, sleep=sleep,
                  clock=clock, observer=observer, cancel=cancel, follow=follow_text("import", arn))
    final = _watch_to_end(watch, first, "import", arn)
    elapsed = clock() - t0
    processed, imported, errors = import_counts(final)
    report.counters = {"read": processed, "written": imported, "dead_lettered": errors}
    report.duration_seconds = round(elapsed, 3)
    report.items_per_second = round(imported / elapsed, 1) if elapsed > 0 else 0.0
    report.timeline = watch.timeline
    report.finished_at = utcnow()
    report.dead_letter_path = final.get("CloudWatchLogGroupArn")
    report.extra.update({"import_status": final.get("ImportStatus"), "processed_size_bytes": count(final, "ProcessedSizeBytes"),
                         "cloudwatch_log_group": final.get("CloudWatchLogGroupArn"), "table_arn": final.get("TableArn"),
                         "polls": watch.polls})
    if errors:
        report.dead_letter_reasons = {"import_error": errors}
    return _settle(report, final, "import", "ImportStatus", table.table, report_path)


def import_counts(d: Mapping[str, Any]) -> Tuple[int, int, int]:
    """(processed, imported, errors) of a DescribeImport answer, each a count >= 0. A count the
    answer lacks (or gives malformed) is derived from the others, and processed is at least
    imported + errors, so the counts add up (read = written + dead_lettered) instead of showing
    ``read 0, written 10``."""
    processed, imported, errors = (count(d, k) for k in ("ProcessedItemCount", "ImportedItemCount", "ErrorCount"))
    errors = errors or 0
    if imported is None:
        imported = max(0, (processed or 0) - errors)
    # processed is never below imported + errors: every item imported or rejected was processed
    return max(processed or 0, imported + errors), imported, errors


def _describe_import(c: DynamoClient, arn: str, table: str) -> Dict[str, Any]:
    try:
        return dict(c.control.describe_import(ImportArn=arn)["ImportTableDescription"])
    except Exception as e:
        raise aws_error(e, table, "DescribeImport") from None


def manifest_item_count(bucket: str, data_prefix: str, table: TableRef, endpoint_url: Optional[str]) -> Optional[int]:
    """itemCount from the export's manifest-summary.json (best effort: only the ETA needs it).

    Short timeouts and two attempts: an unreachable S3 must not hold up the import.
    """
    try:
        import orjson
        from botocore.config import Config

        from .client import make_session

        folder = data_prefix[: -len("data/")] if data_prefix.endswith("data/") else data_prefix
        s3 = make_session(table).client(
            "s3", endpoint_url=endpoint_url,
            config=Config(connect_timeout=3, read_timeout=5, retries={"mode": "standard", "max_attempts": 2}))
        body = s3.get_object(Bucket=bucket, Key=f"{folder}manifest-summary.json")["Body"].read(1_000_000)
        count = orjson.loads(body).get("itemCount")
        return int(count) if count is not None else None
    except Exception:  # no manifest, no permission: the import still runs, just without an ETA
        return None
