"""DynamoDB bulk put items (``StartBulkPutItems``): S3 -> an *existing* table, started and watched.

``native_bulk_put`` starts the operation with a client token it keeps in a small state file
(``.ddbmigrate/bulk-put-<table>-<hash>.json``), then polls ``DescribeBulkOperation`` with the same
progress display as ImportTable (items, bytes, failed items, ETA). Running the same command again
re-attaches: the saved token makes StartBulkPutItems return the same operation (AWS keeps a
token for 8 hours), and the saved ARN is described directly after that; ``restart`` starts a new
operation with a new token. Ctrl-C asks whether to cancel the operation (CancelBulkOperation);
declining stops the watching only, and the operation goes on in AWS.

Invariants: nothing here moves items itself, so the report's counts are DynamoDB's (processed =
written + failed); the failed items are in the S3 failure report whose location the report
carries (``dead_letter_path``). The state file is written (atomically) before the start call, so
a crash between the call and its answer re-attaches to the same operation instead of starting a
second one.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import threading
import time
import uuid
from typing import Any, Callable, Dict, Optional, Tuple

import orjson

from ..config import TableRef
from ..errors import FatalError, InterruptedError_, UsageError
from ..reporting.progress import fmt_bytes
from ..reporting.report import Report, deliver, utcnow
from .bulk_put_stage import Condition
from .client import DynamoClient
from .managed import (
    StopWatching,
    Watch,
    aws_error,
    check_watching,
    import_prefix,
    manifest_item_count,
    split_s3_uri,
)

TERMINAL_BULK = ("COMPLETED", "COMPLETED_WITH_ERRORS", "CANCELLED", "FAILED")
TIERS = ("STANDARD", "ACCELERATED")
MIN_WRITE_UNITS = 1024  # the API's minimum for MaxWriteRequestUnits


def _state_path(table: TableRef, s3_uri: str, state_dir: str) -> str:
    h = hashlib.sha256(orjson.dumps([table.identity(), s3_uri], option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]
    return os.path.join(state_dir, f"bulk-put-{table.table}-{h}.json")


def _load_state(path: str) -> Dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = orjson.loads(fh.read())
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, orjson.JSONDecodeError) as e:
        raise UsageError(f"bulk put state {path} is unreadable ({e}); use --restart to start a new operation") from None


def _save_state(path: str, state: Dict[str, Any]) -> None:
    from ..state.checkpoint import atomic_write

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    atomic_write(path, orjson.dumps(state, option=orjson.OPT_INDENT_2, default=str))


def bulk_put_request(s3_uri: str, table_arn: str, report_uri: str, *, input_format: str = "DYNAMODB_JSON",
                     compression: str = "GZIP", tier: str = "STANDARD", max_write_units: Optional[float] = None,
                     s3_bucket_owner: Optional[str] = None, condition_report: bool = False) -> Dict[str, Any]:
    """StartBulkPutItems arguments (without the client token), checked before any call."""
    if input_format not in ("DYNAMODB_JSON", "ION"):
        raise UsageError(f"bulk put reads DYNAMODB_JSON or ION, not {input_format!r}")
    if compression not in ("GZIP", "ZSTD", "NONE"):
        raise UsageError(f"compression must be GZIP, ZSTD or NONE, not {compression!r}")
    tier = tier.upper()
    if tier not in TIERS:
        raise UsageError(f"--tier must be standard or accelerated, not {tier.lower()!r}")
    bucket, key_prefix, _is_export = import_prefix(s3_uri)
    out_bucket, out_prefix = split_s3_uri(report_uri)
    inp: Dict[str, Any] = {"S3Bucket": bucket, "InputFormat": input_format, "InputCompressionType": compression}
    if key_prefix:
        inp["S3KeyPrefix"] = key_prefix
    if s3_bucket_owner:
        inp["S3BucketOwner"] = s3_bucket_owner
    # With a per-item condition, the items that fail it are reported too (apart from the errors).
    out: Dict[str, Any] = {"S3Bucket": out_bucket,
                           "OutputType": ["ERROR", "CONDITION_CHECK_FAILURE"] if condition_report else ["ERROR"]}
    if out_prefix:
        out["S3KeyPrefix"] = out_prefix
    req: Dict[str, Any] = {"TableName": table_arn, "InputS3Configuration": inp, "OutputS3Configuration": out,
                           "PerformanceTier": tier}
    if max_write_units is not None:
        if max_write_units < MIN_WRITE_UNITS:
            raise UsageError(f"--max-write-units for bulk put must be at least {MIN_WRITE_UNITS:,} (the API's minimum), "
                             f"not {max_write_units:,.0f}")
        req["MaxWriteRequestUnits"] = int(max_write_units)
    return req


def default_report_uri(s3_uri: str, table: str) -> str:
    bucket, _prefix = split_s3_uri(s3_uri)
    return f"s3://{bucket}/ddbmigrate-bulk-put-reports/{table}/"


def default_staging_uri(report_uri: str, key: Any) -> str:
    """Next to the report prefix: ``<report prefix>-staging/<hash of input and condition>/``."""
    bucket, prefix = split_s3_uri(report_uri)
    h = hashlib.sha256(orjson.dumps(key, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]
    return f"s3://{bucket}/{prefix + '-staging' if prefix else 'ddbmigrate-bulk-put-staging'}/{h}/"


def _check_staging(staging_uri: str, s3_uri: str, report_uri: str) -> Tuple[str, str]:
    """(bucket, key prefix ending in /) of the staging location, refused where it would mix with
    the input (a re-stage would read its own copies) or receive DynamoDB's report."""
    sb, sp = split_s3_uri(staging_uri)
    sp = sp + "/" if sp else ""
    ib, ip, _is_export = import_prefix(s3_uri)
    rb, rp = split_s3_uri(report_uri)
    if sb == ib and (sp.startswith(ip) or ip.startswith(sp)):
        raise UsageError(f"--staging {staging_uri} overlaps the input {s3_uri}: give a prefix outside it")
    if sb == rb and (rp + "/").startswith(sp):
        raise UsageError(f"--staging {staging_uri} holds the failure report prefix {report_uri}: give another one")
    return sb, sp


def native_bulk_put(
    s3_uri: str,
    table: TableRef,
    *,
    tier: str = "STANDARD",
    max_write_units: Optional[float] = None,
    report_uri: Optional[str] = None,
    input_format: str = "DYNAMODB_JSON",
    compression: str = "GZIP",
    s3_bucket_owner: Optional[str] = None,
    condition: Optional[Condition] = None,
    staging_uri: Optional[str] = None,
    keep_staging: bool = False,
    total_items: Optional[int] = None,
    restart: bool = False,
    state_dir: str = ".ddbmigrate",
    confirm_cancel: Optional[Callable[[str], bool]] = None,
    progress: str = "off",
    observer: Any = None,
    cancel: Optional[threading.Event] = None,
    poll_interval: float = 10.0,
    timeout: Optional[float] = None,
    report_path: Optional[str] = None,
    s3_endpoint_url: Optional[str] = None,
    s3_settings: Any = None,
    client: Optional[DynamoClient] = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Report:
    """Load the DynamoDB JSON (or Ion) files at ``s3_uri`` into the existing ``table`` with bulk put.

    ``report_uri`` (default ``s3://<input bucket>/ddbmigrate-bulk-put-reports/<table>/``) receives
    DynamoDB's report of the items it could not write. With ``condition`` the input is first
    staged (see :mod:`.bulk_put_stage`) under ``staging_uri`` (default next to the report prefix),
    the load reads the staged copy, the items that fail the condition are counted apart
    (``condition_failed``) and the staged objects are deleted after the end unless
    ``keep_staging``. Returns the report (read = processed, written = processed - failed -
    condition_failed, dead_lettered = failed; exit 3 when some failed); raises FatalError if the
    operation FAILED or was CANCELLED, InterruptedError_ when the watching stopped.
    """
    check_watching(poll_interval, timeout)
    report_uri = report_uri or default_report_uri(s3_uri, table.table)
    load_uri = s3_uri
    staging: Optional[Tuple[str, str]] = None
    if condition is not None:
        key = [table.identity(), s3_uri, condition.identity(), input_format, compression]
        staging_uri = staging_uri or default_staging_uri(report_uri, key)
        staging = _check_staging(staging_uri, s3_uri, report_uri)
        load_uri = f"s3://{staging[0]}/{staging[1]}"
    elif staging_uri or keep_staging:
        raise UsageError("--staging and --keep-staging go with --condition (only a condition needs a staged copy)")
    # Every setting is checked before the first call (the table's ARN comes later).
    bulk_put_request(load_uri, table.table, report_uri, input_format=input_format, compression=compression,
                     tier=tier, max_write_units=max_write_units, s3_bucket_owner=s3_bucket_owner,
                     condition_report=condition is not None)
    c = client or DynamoClient(table, pool_size=2)
    state_path = _state_path(table, s3_uri, state_dir)
    state = {} if restart else _load_state(state_path)
    rep = Report(job="bulk-put", source=s3_uri, target=table.describe())
    desc = c.describe_table()  # the table must exist: bulk put never creates one
    req = bulk_put_request(load_uri, str(desc.get("TableArn") or table.table), report_uri,
                           input_format=input_format, compression=compression, tier=tier,
                           max_write_units=max_write_units, s3_bucket_owner=s3_bucket_owner,
                           condition_report=condition is not None)
    if state.get("request") not in (None, req):
        # Same table and input, other settings: re-attaching would silently ignore them.
        raise UsageError(f"a bulk put of {s3_uri} into {table.table} with other settings is recorded in {state_path} "
                         "(it may still be running): rerun with its settings to watch it, or add --restart to start "
                         "a new operation", table=table.table)
    # A copy staged by an earlier run of this request is reused (not staged twice), unless deleted.
    staged: Optional[Dict[str, Any]] = (state.get("staged") if state.get("request") == req
                                        and not state.get("staging_deleted") else None)
    s3: Any = None
    if condition is not None:
        from ..storage.stores import S3Settings, S3Storage

        # The CLI's --s3-* settings when given, else the table's credentials and region.
        s3 = S3Storage(s3_settings or S3Settings(region=table.region, profile=table.profile,
                                                 role_arn=table.role_arn, endpoint_url=s3_endpoint_url)).client
    first: Optional[Dict[str, Any]] = None
    if state.get("arn"):
        try:
            first = _describe(c, str(state["arn"]), table.table)
        except FatalError:
            first = None  # gone (older than DynamoDB keeps it): start again with the saved token
    if first is None:
        token = str(state.get("client_token") or uuid.uuid4())
        if condition is not None and staging is not None and not staged:
            from .bulk_put_stage import stage_input

            ib, ip, _is_export = import_prefix(s3_uri)
            try:
                staged = stage_input(s3, ib, ip, staging[0], staging[1], condition, input_format=input_format,
                                     compression=compression)
            except UsageError:
                raise
            except Exception as e:
                raise aws_error(e, table.table, "staging the input with the condition") from None
        base = {"client_token": token, "request": req, "started_at": utcnow()}
        if staged:
            base["staged"] = staged
        _save_state(state_path, base)
        try:
            first = dict(c.control.start_bulk_put_items(ClientToken=token, **req)["BulkOperationDescription"])
        except Exception as e:
            from .errors import error_code

            if error_code(e) == "IdempotentParameterMismatchException":
                raise UsageError(f"a bulk put with other settings was started for {table.table} from {s3_uri} "
                                 "(same client token): rerun with its settings, or --restart for a new operation",
                                 table=table.table, code="IdempotentParameterMismatchException") from None
            raise aws_error(e, table.table, "StartBulkPutItems") from None
        state = {**base, "arn": first.get("BulkOperationArn")}
        _save_state(state_path, state)
    else:
        rep.extra["reattached"] = True
    arn = str(first.get("BulkOperationArn"))
    out_cfg = first.get("OutputS3Configuration") or {}
    failure_report = (f"s3://{out_cfg.get('S3Bucket')}/{out_cfg.get('S3KeyPrefix', '')}"
                      if out_cfg.get("S3Bucket") else report_uri)
    rep.extra.update({"bulk_operation_arn": arn, "client_token": first.get("ClientToken"),
                      "failure_report": failure_report, "state_file": state_path,
                      "performance_tier": first.get("PerformanceTier")})
    if staged:
        rep.extra.update({"condition": condition.fields() if condition else None,
                          "staging": f"s3://{staged['bucket']}/{staged['prefix']}",
                          "staged_objects": len(staged.get("objects") or []), "staged_items": staged.get("items")})
        if total_items is None:
            total_items = int(staged.get("items") or 0) or None
    if total_items is None:
        bucket, key_prefix, is_export = import_prefix(s3_uri)
        if is_export:
            total_items = manifest_item_count(bucket, key_prefix, table, s3_endpoint_url)

    def snapshot(d: Dict[str, Any]) -> Dict[str, Any]:
        done = int(d.get("ProcessedItemCount") or 0)
        read_b, total_b = d.get("ProcessedInputBytes"), d.get("TotalInputBytes")
        total = total_items
        if total is None and done and read_b and total_b:
            total = int(done * int(total_b) / int(read_b))  # items in proportion to the bytes read
        parts = [str(d.get("BulkOperationStatus", "?")), f"{fmt_bytes(read_b)} of {fmt_bytes(total_b)}"]
        if d.get("FailedItemCount"):
            parts.append(f"failed {d['FailedItemCount']}")
        return {"done": done, "total": total, "status": " ".join(parts),
                "dead_lettered": int(d.get("FailedItemCount") or 0)}

    watch = Watch("bulk-put", lambda: _describe(c, arn, table.table), snapshot, TERMINAL_BULK,
                  "BulkOperationStatus", progress=progress, poll_interval=poll_interval, timeout=timeout,
                  sleep=sleep, clock=clock, observer=observer, cancel=cancel,
                  follow=f"bulk put {arn} continues in AWS. Watch it again by running the same command (the client "
                         f"token is kept), or `aws dynamodb describe-bulk-operation --bulk-operation-arn {arn}`")
    t0 = clock()
    final = _watch_or_cancel(c, watch, first, arn, table.table, confirm_cancel)
    elapsed = clock() - t0
    processed = int(final.get("ProcessedItemCount") or 0)
    failed = int(final.get("FailedItemCount") or 0)
    cond_failed = 0
    if condition is not None:
        cond_failed = _settle_condition(rep, s3, final, failure_report, processed - failed)
    rep.counters = {"read": processed, "written": processed - failed - cond_failed, "dead_lettered": failed}
    if condition is not None:
        rep.counters["condition_failed"] = cond_failed
    rep.duration_seconds = round(elapsed, 3)
    rep.items_per_second = round((processed - failed) / elapsed, 1) if elapsed > 0 else 0.0
    rep.timeline = watch.timeline
    rep.finished_at = utcnow()
    if failed:
        rep.dead_letter_path = failure_report
        rep.dead_letter_reasons = {"bulk_put_failed": failed}
    usage = final.get("BulkOperationUsage") or []
    rep.extra.update({"bulk_operation_status": final.get("BulkOperationStatus"),
                      "processed_input_bytes": final.get("ProcessedInputBytes"),
                      "total_input_bytes": final.get("TotalInputBytes"), "bulk_put_usage": usage,
                      "polls": watch.polls})
    if staged and final.get("BulkOperationStatus") in TERMINAL_BULK:
        if keep_staging:
            rep.extra["staging_kept"] = True
        elif not state.get("staging_deleted"):
            from .bulk_put_stage import delete_staged

            try:
                delete_staged(s3, str(staged["bucket"]), list(staged.get("objects") or []))
                _save_state(state_path, {**state, "staging_deleted": True})
                rep.extra["staging_deleted"] = True
            except Exception as e:  # the load is done: a leftover copy is worth a note, not a failure
                rep.extra["staging_delete_error"] = f"{type(e).__name__}: {str(e)[:200]}"
    status = final.get("BulkOperationStatus")
    if status in ("COMPLETED", "COMPLETED_WITH_ERRORS"):
        return deliver(rep, report_path)
    # A CANCELLED operation has no failure code or message: none is printed as "None: None".
    error = f"bulk put {status}" + "".join(f": {x}" for x in (final.get("FailureCode"), final.get("FailureMessage")) if x)
    rep.status, rep.error = "failed", error
    return deliver(rep, report_path, FatalError(error, table=table.table, code=final.get("FailureCode")))


def _settle_condition(rep: Report, s3: Any, final: Dict[str, Any], failure_report: str, not_failed: int) -> int:
    """The items that failed the condition, counted from DynamoDB's CONDITION_CHECK_FAILURE report
    (DescribeBulkOperation does not count them apart); 0 with a note when it cannot be read."""
    from .bulk_put_stage import count_condition_failures

    bucket, prefix = split_s3_uri(failure_report)
    start = final.get("StartTime")
    since = start if isinstance(start, _dt.datetime) else None
    n, objects = count_condition_failures(s3, bucket, prefix, since)
    rep.extra["condition_failure_report"] = failure_report
    rep.extra["condition_failure_objects"] = objects
    if n is None:
        rep.extra["condition_failed_unknown"] = (
            f"the condition-failure report under {failure_report} could not be read: the written count "
            "includes the items that failed the condition")
        return 0
    return min(n, max(0, not_failed))


def _watch_or_cancel(c: DynamoClient, watch: Watch, first: Dict[str, Any], arn: str, table: str,
                     confirm_cancel: Optional[Callable[[str], bool]]) -> Dict[str, Any]:
    """Watch to the end; on Ctrl-C ask whether to cancel the operation itself."""
    try:
        return watch.run(first)
    except (KeyboardInterrupt, StopWatching) as e:
        plan_stop = isinstance(e, StopWatching)
        if not plan_stop and confirm_cancel is not None and confirm_cancel(
                f"cancel bulk put {arn}? Items written so far stay in {table}"):
            try:
                c.control.cancel_bulk_operation(BulkOperationArn=arn)
            except Exception as err:
                raise aws_error(err, table, "CancelBulkOperation") from None
            watch.stop.clear()
            return watch.run(_describe(c, arn, table))  # to CANCELLED (or the end it reached first)
        raise InterruptedError_(
            f"stopped watching; bulk put {arn} continues in AWS. Watch it again by running the same command "
            f"(the client token is kept), or `aws dynamodb describe-bulk-operation --bulk-operation-arn {arn}`"
        ) from None


def _describe(c: DynamoClient, arn: str, table: str) -> Dict[str, Any]:
    try:
        return dict(c.control.describe_bulk_operation(BulkOperationArn=arn)["BulkOperationDescription"])
    except Exception as e:
        raise aws_error(e, table, "DescribeBulkOperation") from None
