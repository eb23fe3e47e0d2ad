"""Creating a table from a definition, with every setting applied or said to be not applied.

    plan      decide what can be carried: a KMS key of another account or region cannot
              (--target-kms-key replaces it), a Kinesis destination is never pointed at
    create    CreateTable with what it takes (keys, indexes, billing, on-demand maximum and warm
              throughput, stream, SSE, table class, deletion protection, tags); wait for ACTIVE
    post      after ACTIVE: TTL, PITR (and its recovery period), contributor insights (table and
              each GSI), the resource policy (its account-specific ARNs rewritten for the new table)
    check     read the new table's whole definition back and compare it with what was asked

Invariant: every setting of the definition ends in exactly one of ``applied`` (asked and seen on
the new table), ``not_applied`` (with the reason: refused, unsupported by the endpoint, ignored by
it, or not carried on purpose) or ``unchecked`` (asked, but the endpoint cannot report it).
A failed post-creation setting does not fail the creation: the table exists and is usable, and
the line says what is missing.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from botocore.config import Config

from ..aws.client import DynamoClient
from ..aws.errors import error_code, error_message
from ..aws.tables import wait_active
from ..errors import SchemaError
from .diff import diff_definitions, shown
from .model import DEFAULT_INSIGHTS_MODE, TableDefinition, create_request, normalize
from .read import ATTEMPTS, call, read_definition, service_client, settings_client, why

log = logging.getLogger("ddbmigrate.schema")
_KMS_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:kms:([a-z0-9-]+):(\d{12}):")
_ACCOUNT_IN_ARN = re.compile(r"(arn:aws[a-zA-Z-]*:[a-z0-9-]*:[a-z0-9-]*:)(\d{12})(?=:)")


@dataclass
class CreateResult:
    """What ``create_from_definition`` did: the new table's description and a line per setting."""

    table: str
    description: Dict[str, Any]
    applied: List[str] = field(default_factory=list)
    not_applied: List[Tuple[str, str]] = field(default_factory=list)
    unchecked: List[Tuple[str, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {"table": self.table, "applied": list(self.applied),
                "not_applied": [{"setting": s, "reason": r} for s, r in self.not_applied],
                "unchecked": [{"setting": s, "reason": r} for s, r in self.unchecked], "notes": list(self.notes)}

    def setting_lines(self) -> List[str]:
        """One line per setting not applied or not checked, and per note."""
        # An endpoint without an API (DynamoDB Local has no PITR, tags, ...) makes one line, not five.
        grouped: Dict[str, List[str]] = {}
        out: List[str] = []
        for kind, entries in (("not applied", self.not_applied), ("not checked", self.unchecked)):
            for s, r in entries:
                m = re.match(r"^(.*)the endpoint does not support \w+$", r)
                if m:
                    grouped.setdefault(f"{kind}: {{}}: {m.group(1)}the endpoint does not support {{}}", []).append(s)
                else:
                    out.append(f"{kind}: {s}: {r}")
        out = [fmt.format(", ".join(settings), "their APIs" if len(settings) > 1 else "its API")
               for fmt, settings in grouped.items()] + out
        out += [f"note: {n}" for n in self.notes]
        return out


def account_of(client: DynamoClient) -> Optional[str]:
    """The AWS account the client's credentials act in: from --role-arn, else STS (best effort)."""
    m = re.match(r"^arn:aws[a-zA-Z-]*:iam::(\d{12}):", client.ref.role_arn or "")
    if m:
        return m.group(1)
    try:
        # STS's own endpoint, not DynamoDB's --endpoint-url (see service_client).
        sts = service_client(client, "sts", config=Config(retries={"total_max_attempts": 1}, connect_timeout=3,
                                                          read_timeout=5))
        return str(sts.get_caller_identity()["Account"])
    except Exception:
        return None


def foreign_key_reason(key: str, region: Optional[str], account: Optional[str]) -> Optional[str]:
    """Why KMS key ``key`` cannot encrypt a table in ``region``/``account``; None when it can
    (or when it is not an ARN: an alias or key id is resolved in the target's own account)."""
    m = _KMS_ARN.match(key)
    if not m:
        return None
    k_region, k_account = m.groups()
    if account and k_account != account:
        return (f"the KMS key {key} belongs to account {k_account}, the new table to account {account} "
                "(a key cannot be used from another account by copying its ARN)")
    if region and k_region != region:
        return f"the KMS key {key} is in region {k_region}, the new table in {region} (keys are regional)"
    return None


def rewrite_policy(doc: Dict[str, Any], source_arn: Optional[str], target_arn: str) -> Tuple[Dict[str, Any], List[str]]:
    """The policy with the source table's ARN (and its index/stream ARNs) replaced by the new
    table's, and, across accounts, the source account's ARNs and account ids replaced by the
    target's. Returns (policy, what was rewritten)."""
    text = json.dumps(doc)
    changes: List[str] = []
    if source_arn and source_arn != target_arn:
        n = len(re.findall(re.escape(source_arn) + r'(?=["/])', text))
        if n:
            text = re.sub(re.escape(source_arn) + r'(?=["/])', target_arn, text)
            changes.append(f"{n} reference(s) to {source_arn} -> {target_arn}")
    src_acct = source_arn.split(":")[4] if source_arn and source_arn.count(":") >= 5 else None
    tgt_acct = target_arn.split(":")[4] if target_arn.count(":") >= 5 else None
    if src_acct and tgt_acct and src_acct != tgt_acct:
        text, n1 = _ACCOUNT_IN_ARN.subn(lambda m: m.group(1) + tgt_acct if m.group(2) == src_acct else m.group(0),
                                        text)
        text, n2 = re.subn(f'"{src_acct}"', f'"{tgt_acct}"', text)
        if n1 or n2:
            changes.append(f"account {src_acct} -> {tgt_acct}")
    return json.loads(text), changes


def _without(props: Dict[str, Any], setting: str) -> None:
    """Drop ``setting`` ("Key" or "GlobalSecondaryIndexes[name].Key") from ``props`` in place."""
    m = re.match(r"^(GlobalSecondaryIndexes)\[(.+)\]\.(\w+)$", setting)
    if m:
        for g in props.get(m.group(1)) or []:
            if g["IndexName"] == m.group(2):
                g.pop(m.group(3), None)
        return
    props.pop(setting.split(".")[0], None)


@dataclass
class CreationPlan:
    """What a creation will ask for (``props``), and what it will not apply before it starts."""

    table: str
    props: Dict[str, Any]
    not_applied: List[Tuple[str, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def plan_creation(client: DynamoClient, definition: TableDefinition, *, table: Optional[str] = None,
                  kms_key: Optional[str] = None, account: Optional[str] = None) -> CreationPlan:
    """The settings of ``definition`` a new table ``table`` will be asked for, and those it will not
    get, with the reason: unread on the source, a Kinesis destination, a KMS key of another account
    or region (replaced by ``kms_key`` or the AWS managed key). Creates nothing (a dry run shows it)."""
    name = table or client.ref.table
    props = json.loads(json.dumps(definition.props))  # a deep copy the plan may change
    props["TableName"] = name
    not_applied: List[Tuple[str, str]] = []
    for setting, reason in definition.unread.items():
        not_applied.append((setting, f"not read from {definition.label or 'the source'}: {reason}"))
    ks = props.pop("KinesisStreamSpecification", None)
    if ks:
        why_not = ("the source's Kinesis stream is not pointed at the new table (its consumers would see both "
                   "tables' changes)") if definition.arn else "ddbmigrate does not enable Kinesis streaming destinations"
        not_applied.append(("KinesisStreamSpecification", (
            f"{why_not}; when wanted: aws dynamodb enable-kinesis-streaming-destination --table-name {name} "
            f"--stream-arn {ks['StreamArn']}")))
    sse = props.get("SSESpecification")
    if kms_key:
        props["SSESpecification"] = {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": kms_key}
    elif sse and sse.get("KMSMasterKeyId") and _KMS_ARN.match(sse["KMSMasterKeyId"]):
        refused = foreign_key_reason(sse["KMSMasterKeyId"], client.region, account or account_of(client))
        if refused:
            props["SSESpecification"] = {"SSEEnabled": True, "SSEType": "KMS"}
            not_applied.append(("SSESpecification.KMSMasterKeyId",
                                f"{refused}; the new table uses the AWS managed key instead: pass "
                                "--target-kms-key KEY to use your own"))
    if props.get("BillingMode") == "PROVISIONED" and definition.arn:
        # Application Auto Scaling is its own service (targets and policies on the table and its
        # indexes): never read, so a clone would be fixed at the source's capacity of today.
        not_applied.append(("AutoScaling", (
            "auto scaling (Application Auto Scaling targets and policies) is not read or copied: the new table "
            "is fixed at the source's provisioned capacity; register scaling on it if the source has any "
            f"(aws application-autoscaling register-scalable-target --resource-id table/{name} ...)")))
    return CreationPlan(table=name, props=normalize(props), not_applied=not_applied, notes=list(definition.notes))


def create_from_definition(
    client: DynamoClient,
    definition: TableDefinition,
    *,
    table: Optional[str] = None,
    kms_key: Optional[str] = None,
    sleep: Callable[[float], None] = time.sleep,
    timeout: float = 600.0,
    settings: Any = None,
    account: Optional[str] = None,
) -> CreateResult:
    """Create ``table`` (default: the client's) with every setting of ``definition``; see the module doc.

    ``kms_key`` (--target-kms-key) encrypts the new table with that key whatever the source used.
    Raises SchemaError when CreateTable itself fails (the table exists, a bad request).
    ``settings`` (the botocore client for the post-creation and read-back calls) and ``account``
    (the target's account id) are looked up when not given.
    """
    name = table or client.ref.table
    plan = plan_creation(client, definition, table=name, kms_key=kms_key, account=account)
    props, not_applied, notes = plan.props, plan.not_applied, plan.notes
    explicit_key = bool(kms_key)
    req = create_request(props)
    try:
        client.control.create_table(**req)
    except Exception as e:
        code, msg = error_code(e), error_message(e) or str(e)
        if code == "ResourceInUseException":
            raise SchemaError(f"table {name} already exists", table=name, code=code) from None
        key = (req.get("SSESpecification") or {}).get("KMSMasterKeyId")
        if key and not explicit_key and "kms" in msg.lower():
            # The source's key is not usable here (another account the STS check could not see).
            req["SSESpecification"].pop("KMSMasterKeyId")
            props["SSESpecification"].pop("KMSMasterKeyId", None)
            not_applied.append(("SSESpecification.KMSMasterKeyId",
                                f"CreateTable refused the key {key} ({msg[:160]}); the new table uses the AWS "
                                "managed key instead: pass --target-kms-key KEY to use your own"))
            try:
                client.control.create_table(**req)
            except Exception as e2:
                raise SchemaError(f"cannot create table {name}: {e2}", table=name, code=error_code(e2)) from None
        else:
            raise SchemaError(f"cannot create table {name}: {e}", table=name, code=code) from None
    desc = wait_active(client, name, timeout=timeout, sleep=sleep)
    target_arn = str(desc.get("TableArn") or "")
    ctl = settings if settings is not None else settings_client(client)

    def post(setting: str, op: str, fn: Callable[..., Any], retry_codes: Tuple[str, ...] = (), **kw: Any) -> None:
        try:
            # A new table's backups can take a minute to become available: wait up to ~50 s for them.
            call(fn, op, sleep=sleep, retry_codes=retry_codes, attempts=10 if retry_codes else ATTEMPTS, **kw)
        except Exception as e:
            not_applied.append((setting, why(e, op)))
            _without(props, setting)

    ttl = props.get("TimeToLiveSpecification")
    if ttl:
        post("TimeToLiveSpecification", "UpdateTimeToLive", ctl.update_time_to_live, TableName=name,
             TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]})
    pitr = props.get("PointInTimeRecoverySpecification")
    if pitr:
        spec: Dict[str, Any] = {"PointInTimeRecoveryEnabled": True}
        if pitr.get("RecoveryPeriodInDays"):
            spec["RecoveryPeriodInDays"] = pitr["RecoveryPeriodInDays"]
        # Right after creation DynamoDB may still be setting up backups for the table.
        post("PointInTimeRecoverySpecification", "UpdateContinuousBackups", ctl.update_continuous_backups,
             retry_codes=("ContinuousBackupsUnavailableException",), TableName=name,
             PointInTimeRecoverySpecification=spec)
    targets: List[Tuple[str, Optional[str], Dict[str, Any]]] = []
    if props.get("ContributorInsightsSpecification"):
        targets.append(("ContributorInsightsSpecification", None, props["ContributorInsightsSpecification"]))
    for g in props.get("GlobalSecondaryIndexes") or []:
        if g.get("ContributorInsightsSpecification"):
            targets.append((f"GlobalSecondaryIndexes[{g['IndexName']}].ContributorInsightsSpecification",
                            g["IndexName"], g["ContributorInsightsSpecification"]))
    for setting, index, ci in targets:
        kw: Dict[str, Any] = {"TableName": name, "ContributorInsightsAction": "ENABLE"}
        if index:
            kw["IndexName"] = index
        if ci.get("Mode", DEFAULT_INSIGHTS_MODE) != DEFAULT_INSIGHTS_MODE:
            kw["ContributorInsightsMode"] = ci["Mode"]
        post(setting, "UpdateContributorInsights", ctl.update_contributor_insights, **kw)
    rp = props.get("ResourcePolicy")
    if rp:
        doc, changes = rewrite_policy(rp["PolicyDocument"], definition.arn, target_arn)
        props["ResourcePolicy"] = {"PolicyDocument": doc}
        if changes:
            notes.append("resource policy rewritten for the new table: " + "; ".join(changes))
        post("ResourcePolicy", "PutResourcePolicy", ctl.put_resource_policy, ResourceArn=target_arn,
             Policy=json.dumps(doc))
    result = CreateResult(table=name, description=desc, not_applied=not_applied, notes=notes)
    _check(client, name, props, result, sleep, ctl)
    result.description = client.describe_table(name)
    return result


# Applied by their own calls after ACTIVE: DynamoDB may report them a moment later than it took them.
_LAGGING = ("TimeToLiveSpecification", "PointInTimeRecoverySpecification", "Tags", "ContributorInsightsSpecification",
            "ResourcePolicy")
CHECK_READS = 4


def _check(client: DynamoClient, name: str, asked: Dict[str, Any], result: CreateResult,
           sleep: Callable[[float], None], settings: Any) -> None:
    """Compare what was asked with what the new table reports; sort every setting into its list."""
    want = json.loads(json.dumps(asked))
    done = {s for s, _ in result.not_applied}
    for attempt in range(CHECK_READS):
        actual = read_definition(client, name, sleep=sleep, settings=settings)
        sse_w, sse_a = want.get("SSESpecification"), actual.props.get("SSESpecification")
        if sse_w and not sse_w.get("KMSMasterKeyId") and sse_a and sse_a.get("KMSMasterKeyId"):
            sse_w["KMSMasterKeyId"] = sse_a["KMSMasterKeyId"]  # "the AWS managed key": whichever ARN it has here
        diffs = [x for x in diff_definitions(TableDefinition(props=want, label="asked"), actual).differences
                 if x.setting not in done]
        if attempt + 1 == CHECK_READS or not any(x.setting.split(".")[-1] in _LAGGING for x in diffs):
            break
        sleep(2.0 * (attempt + 1))
    for x in diffs:
        result.not_applied.append((x.setting, f"asked for {shown(x.a)}, the new table has {shown(x.b)} "
                                              "(the endpoint did not apply it)"))
    for setting, reason in actual.unread.items():
        if setting in want or any(setting in g for g in want.get("GlobalSecondaryIndexes") or []):
            if setting not in done:
                result.unchecked.append((setting, reason))
    off = {s.split(".")[0].split("[")[0] for s, _ in result.not_applied} | {s for s, _ in result.unchecked}
    result.applied = [k for k in want if k not in ("TableName", "AttributeDefinitions", "KeySchema")
                      and k not in off]


def created_lines(result: CreateResult) -> List[str]:
    """'created table ...' with its keys, indexes and settings, then the not-applied lines."""
    desc = result.description
    types = {a["AttributeName"]: a["AttributeType"] for a in desc.get("AttributeDefinitions") or []}

    def keys(ks: List[Dict[str, str]]) -> str:
        return ", ".join(f"{k['AttributeName']} {k['KeyType']} {types.get(k['AttributeName'], '?')}" for k in ks)

    out = [f"created table {result.table} ({desc.get('TableStatus', '?')}): {keys(desc['KeySchema'])}"]
    for kind, label in (("GlobalSecondaryIndexes", "GSI"), ("LocalSecondaryIndexes", "LSI")):
        for g in desc.get(kind) or []:
            proj = (g.get("Projection") or {}).get("ProjectionType", "ALL")
            out.append(f"  {label} {g['IndexName']}: {keys(g['KeySchema'])}; projection {proj}")
    ss = desc.get("StreamSpecification") or {}
    if ss.get("StreamEnabled"):
        out.append(f"  stream: {ss.get('StreamViewType')}")
    shown_already = {"BillingMode", "GlobalSecondaryIndexes", "LocalSecondaryIndexes", "StreamSpecification"}
    applied = [s for s in result.applied if s not in shown_already]
    if applied:
        out.append(f"  applied and checked: {', '.join(applied)}")
    out += [f"  {line}" for line in result.setting_lines()]
    return out


def log_result(result: CreateResult) -> None:
    """For jobs that create their target (copy, replicate, import, plans): what was created and every
    gap, logged when it happens. WARNING, so it shows at the default level: creating a table in
    someone's account, and what it lacks, is not something to tell only in a debug log."""
    applied = [s for s in result.applied if s != "BillingMode"]
    log.warning("created table %s (%s): applied and checked: %s", result.table,
                (result.description.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED"),
                ", ".join(applied) or "keys only")
    for line in result.setting_lines():
        log.warning("%s: %s", result.table, line)


def log_plan(plan: CreationPlan) -> None:
    """A dry run of a creation: what would be created, and what would not be applied (WARNING)."""
    # A setting with a plain value is said with it ("BillingMode PAY_PER_REQUEST"); the others by name.
    settings = [f"{k} {v}" if isinstance(v, (str, int, float, bool)) else k
                for k, v in plan.props.items() if k not in ("TableName", "AttributeDefinitions", "KeySchema")]
    keys = ", ".join(f"{k.get('AttributeName')} {k.get('KeyType')}" for k in plan.props.get("KeySchema") or []
                     if isinstance(k, dict))
    log.warning("dry run: would create table %s (%s) with %s", plan.table, keys or "no key",
                ", ".join(settings) or "no other settings")
    gaps = CreateResult(table=plan.table, description={}, not_applied=plan.not_applied, notes=plan.notes)
    for line in gaps.setting_lines():
        log.warning("%s: %s", plan.table, line.replace("not applied:", "would not be applied:", 1))


def create_table_from_spec(
    spec_path: str,
    table: Optional[str] = None,
    *,
    region: Optional[str] = None,
    profile: Optional[str] = None,
    endpoint_url: Optional[str] = None,
    role_arn: Optional[str] = None,
    kms_key: Optional[str] = None,
    client: Optional[DynamoClient] = None,
) -> Dict[str, Any]:
    """Create a table from a spec file (YAML/JSON) with every setting it gives; wait until ACTIVE.

    ``table`` overrides the spec's TableName. Returns the DescribeTable answer of the new table,
    plus ``"Created"`` (:meth:`CreateResult.to_dict`: applied, not applied with the reason, not
    checked) and ``"Lines"`` (what the command line prints). Spec errors name the file and the field.
    """
    from ..config import TableRef
    from .spec import load_definition

    definition = load_definition(spec_path, table)
    ref = TableRef(table=str(definition.name), region=region, profile=profile, endpoint_url=endpoint_url,
                   role_arn=role_arn)
    c = client or DynamoClient(ref)
    try:
        result = create_from_definition(c, definition, table=definition.name, kms_key=kms_key)
    finally:
        if client is None:
            c.close()
    out = dict(result.description)
    out["Created"] = result.to_dict()
    out["Lines"] = created_lines(result)
    out["NotApplied"] = [s for s, _ in result.not_applied]
    ttl = definition.props.get("TimeToLiveSpecification")
    out["TimeToLiveAttribute"] = ttl["AttributeName"] if ttl else None
    return out
