"""Steps several jobs share: preparing the target table, defaults, and running a job on an engine.

A job module (copy, clean, export, import) describes its job with these and hands the
:class:`~ddbmigrate.engine.job.Job` to an engine; nothing here reads or writes an item.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any, Callable, Dict, Optional

from ..aws.client import DynamoClient
from ..aws.tables import load_spec, request_from_spec
from ..config import RunOptions, TableRef
from ..engine import default_engine
from ..engine.job import Job
from ..engine.run import Engine, Observer, job_checkpoint_path
from ..errors import TableNotFoundError, UsageError
from ..reporting.report import Report
from ..state.checkpoint import CheckpointStore

Confirm = Callable[[str], bool]


def run(job: Job, engine: Optional[Engine] = None, *, cancel: Optional[threading.Event] = None,
        observer: Optional[Observer] = None) -> Report:
    """Run ``job`` on ``engine`` (default: threads, or ``--processes N`` worker processes)."""
    return (engine or default_engine(job.options)).run(job, cancel=cancel, observer=observer)


def engine_identity(identity: Dict[str, Any], engine: Optional[Engine]) -> Dict[str, Any]:
    """The identity the engine will checkpoint the job under: Spark adds ``engine="spark"``, as
    0.1's Spark checkpoints had it (see engine/spark.py), the others keep it as it is."""
    return dict(identity, engine="spark") if engine is not None and engine.name == "spark" else identity


def check_resume_options(opts: RunOptions) -> None:
    if opts.resume and opts.restart:
        raise UsageError("--resume and --restart are mutually exclusive")


def default_writers(mode: str, write_rate: Optional[float] = None) -> int:
    # A BatchWriteItem of 25 takes ~5-10 ms against DynamoDB, so 16 writers keep up with an
    # on-demand table's default 40,000 writes/s; 8 would cap a copy near 20-25k items/s.
    # Conditional modes send one PutItem per item, so they need more requests in flight.
    base = 16 if mode == "overwrite" else 32
    if not write_rate:
        return base
    # Under a write limit, one writer per 50 units/s (at least 4: two calls a second each, with
    # room for slow ones): more only wait on the limit, each holding a batch, and batches of many
    # chunks in flight at once settle (and move progress and the checkpoint) only when the last
    # of them is written: 16 writers at 20 units/s showed nothing done for minutes. A conditional
    # mode's call is one item: one writer per 10 units/s, at least 8 (100 ms calls).
    per, least = (50.0, 4) if mode == "overwrite" else (10.0, 8)
    return max(least, min(base, math.ceil(write_rate / per)))


def resumed_segments(opts: RunOptions, kind: str, identity: Dict[str, Any]) -> Optional[int]:
    """On --resume without --segments: the segment count the job's checkpoint was made with.

    Its positions are per segment of that count, while the default (from DescribeTable's size)
    drifts as a live source grows or a clean shrinks the table; recomputing it would refuse the
    resume as "a different job". The default checkpoint path does not depend on the segments.
    """
    if not opts.resume or opts.restart or opts.segments:
        return None
    try:
        st = CheckpointStore(job_checkpoint_path(kind, identity, opts)).load(verify=False)
    except UsageError:
        return None  # unreadable: open_checkpoint reports it with its own message
    seg = st.job.get("segments") if st is not None else None
    return seg if isinstance(seg, int) and not isinstance(seg, bool) and seg > 0 else None


def prepare_target(
    client: DynamoClient,
    *,
    source_desc: Optional[Dict[str, Any]] = None,
    source_client: Optional[DynamoClient] = None,
    create: bool = False,
    spec_path: Optional[str] = None,
    dry_run: bool = False,
    kms_key: Optional[str] = None,
    on_created: Optional[Callable[[Any], None]] = None,
    check: Optional[Callable[[Dict[str, Any]], None]] = None,
) -> Dict[str, Any]:
    """Describe the target, creating it (from a spec or as a clone of the source) when asked.

    ``check`` is called with the description a table to be created would have, before it is
    created: a job it refuses leaves no new, empty table behind.

    A clone carries every setting of the source (:mod:`ddbmigrate.schema.apply`); ``kms_key``
    (--target-kms-key) replaces the source's encryption key. What was created, and every setting
    not applied with its reason, is logged and handed to ``on_created`` (a ``CreateResult``).
    A dry run creates nothing: it validates against the schema the target would be created with.
    Without ``source_client`` and ``source_desc`` the source is files (import): a missing target's
    message names import's options, not copy's.
    """
    name = client.ref.table
    try:
        desc = client.describe_table()
        if kms_key:
            logging.getLogger("ddbmigrate.schema").warning(
                "target %s exists: --target-kms-key %s is not used (it only applies to a table ddbmigrate creates)",
                name, kms_key)
        return desc
    except TableNotFoundError:
        if not create and not spec_path:
            # Files (import) have no source table to clone: import creates from --spec, or from
            # the schema a dynamodump backup carries; copy and replicate clone the source.
            how = ("add --create-target --spec FILE to create it from a table spec (a dynamodump backup "
                   "carries its own schema: --create-target alone)" if source_client is None and source_desc is None
                   else "add --create-target to create it from the source's schema (or --target-spec FILE)")
            raise TableNotFoundError(
                f"target table {name!r} does not exist at {client.endpoint}; {how}", table=name,
            ) from None
    from ..schema.apply import create_from_definition, log_plan, log_result, plan_creation
    from ..schema.read import read_definition
    from ..schema.spec import load_definition

    if dry_run and spec_path:
        # Nothing is created; say what would be, and what would not be applied, before the real run.
        log_plan(plan_creation(client, load_definition(spec_path, name), table=name, kms_key=kms_key))
        return request_from_spec(load_spec(spec_path), spec_path, name)[0]
    if dry_run and source_desc is not None:
        if source_client is not None:
            definition = read_definition(source_client, source_desc["TableName"])
            log_plan(plan_creation(client, definition, table=name, kms_key=kms_key))
        return source_desc
    if spec_path:
        definition = load_definition(spec_path, name)
    elif source_desc is not None and source_client is not None:
        definition = read_definition(source_client, source_desc["TableName"])
    elif source_desc is not None:
        from ..schema.model import READ_BY, from_aws

        definition = from_aws(source_desc, unread={k: f"{op} was not called" for k, op in READ_BY.items()})
    else:
        raise UsageError(f"cannot create {name}: give --spec FILE")
    if check is not None:
        check(request_from_spec(load_spec(spec_path), spec_path, name)[0] if spec_path else dict(source_desc or {}))
    result = create_from_definition(client, definition, table=name, kms_key=kms_key)
    log_result(result)
    if on_created is not None:
        on_created(result)
    return result.description


def same_table(a: TableRef, b: TableRef, ca: DynamoClient, cb: DynamoClient, source_desc: Dict[str, Any],
               target_desc: Optional[Dict[str, Any]] = None) -> bool:
    """Is the target the source table itself, however each was reached? Two profiles of one
    account, an endpoint spelled two ways, DynamoDB Local's shared database seen from two
    regions: a --clean-target would empty the source. DescribeTable tells: the same TableId
    (DynamoDB's own identity of a table), or, where there is none (DynamoDB Local), the same ARN
    created at the same instant. ``target_desc``: the target's DescribeTable when already read."""
    if a.table == b.table and ca.endpoint == cb.endpoint and ca.region == cb.region and a.role_arn == b.role_arn \
            and a.profile == b.profile:
        return True
    if target_desc is None:
        try:
            target_desc = cb.describe_table()
        except TableNotFoundError:
            return False
    ida, idb = source_desc.get("TableId"), target_desc.get("TableId")
    if ida and idb:
        return bool(ida == idb)
    arn = source_desc.get("TableArn")
    return bool(arn) and arn == target_desc.get("TableArn") and \
        source_desc.get("CreationDateTime") == target_desc.get("CreationDateTime")


def without_none(d: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}
