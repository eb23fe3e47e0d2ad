"""The definition of a table: every setting, as the Properties of CloudFormation's AWS::DynamoDB::Table.

One shape serves every end: a spec file is these properties, a CloudFormation resource carries
them unchanged, the diff compares them, and CreateTable is built from them. ``normalize`` puts a
definition in its canonical *compact* form, which is what makes two definitions comparable:

1. Defaults are omitted (deletion protection off, PITR off, AWS-owned encryption key, STANDARD
   class, no tags, TTL off, contributor insights off, unlimited on-demand throughput, a warm
   throughput at or below a new table's baseline, a 35-day recovery period); BillingMode is
   always written (CloudFormation's default differs from ddbmigrate's).
2. Lists whose order DynamoDB does not keep are sorted: indexes by name, tags by key,
   non-key attributes; attribute definitions are listed in the order the keys use them.
3. Only what a table *is* is kept: statuses, sizes, counts, ARNs of the table itself and
   timestamps are dropped.

Invariant: ``normalize(normalize(p)) == normalize(p)``, and a definition read from a table that
was created from ``p`` normalizes to ``normalize(p)`` for every setting the endpoint supports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

# A new on-demand table (and GSI) starts warm at these values; only more than this is a setting.
BASE_WARM = {"ReadUnitsPerSecond": 12000, "WriteUnitsPerSecond": 4000}
DEFAULT_RECOVERY_DAYS = 35
DEFAULT_INSIGHTS_MODE = "ACCESSED_AND_THROTTLED_KEYS"
DEFAULT_KINESIS_PRECISION = "MILLISECOND"

# The order settings are written in (spec export, diff rows).
ORDER = (
    "TableName", "BillingMode", "AttributeDefinitions", "KeySchema", "ProvisionedThroughput", "OnDemandThroughput",
    "WarmThroughput", "GlobalSecondaryIndexes", "LocalSecondaryIndexes", "StreamSpecification",
    "TimeToLiveSpecification", "PointInTimeRecoverySpecification", "DeletionProtectionEnabled", "SSESpecification",
    "TableClass", "ContributorInsightsSpecification", "ResourcePolicy", "KinesisStreamSpecification", "Tags",
)
INDEX_ORDER = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput", "OnDemandThroughput",
               "WarmThroughput", "ContributorInsightsSpecification")

# What an omitted setting means, for showing a diff ("off" is easier to read than nothing).
DEFAULTS: Dict[str, Any] = {
    "DeletionProtectionEnabled": False,
    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": False},
    "SSESpecification": {"SSEEnabled": False},
    "TableClass": "STANDARD",
    "Tags": [],
    "TimeToLiveSpecification": {"Enabled": False},
    "ContributorInsightsSpecification": {"Enabled": False},
}

# Settings that a call other than DescribeTable reports; when that call fails the setting is unread.
READ_BY = {
    "TimeToLiveSpecification": "DescribeTimeToLive",
    "PointInTimeRecoverySpecification": "DescribeContinuousBackups",
    "Tags": "ListTagsOfResource",
    "ContributorInsightsSpecification": "DescribeContributorInsights",
    "ResourcePolicy": "GetResourcePolicy",
    "KinesisStreamSpecification": "DescribeKinesisStreamingDestination",
}


@dataclass
class TableDefinition:
    """A table's settings (``props``, compact canonical form) and what could not be known.

    ``unread`` maps a setting to why it could not be read (the endpoint does not support the
    call, access denied): such a setting is neither copied nor compared, and says so.
    ``notes`` are things seen that a definition cannot carry (global table replicas, ``aws:``
    tags). ``arn`` is the table's ARN when it was read from a table, ``region`` the region it was
    read in. A global table's replicas are not part of ``props`` (a single region's table, which
    a spec, a clone and the diff are about): ``replicas`` are the regions of the *other* replicas,
    ``replica_details`` what DescribeTable reports of every replica (see :func:`replica_detail`)
    and ``global_table`` its ``GlobalTableVersion``, ``MultiRegionConsistency`` and witness
    regions, for the exports that carry them (CloudFormation's AWS::DynamoDB::GlobalTable).
    """

    props: Dict[str, Any]
    unread: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    arn: Optional[str] = None
    label: str = ""
    replicas: List[str] = field(default_factory=list)
    region: Optional[str] = None
    replica_details: List[Dict[str, Any]] = field(default_factory=list)
    global_table: Dict[str, Any] = field(default_factory=dict)

    @property
    def is_global(self) -> bool:
        """A global table: replicas in other regions (a replica list naming only its own region
        is one too)."""
        return bool(self.replicas or self.replica_details)

    @property
    def name(self) -> Optional[str]:
        n = self.props.get("TableName")
        return str(n) if n else None

    def to_dict(self) -> Dict[str, Any]:
        return {"label": self.label, "arn": self.arn, "properties": self.props, "unread": dict(self.unread),
                "notes": list(self.notes)}


def _throughput(pt: Any) -> Optional[Dict[str, int]]:
    if not isinstance(pt, dict):
        return None
    r, w = int(pt.get("ReadCapacityUnits") or 0), int(pt.get("WriteCapacityUnits") or 0)
    if r <= 0 or w <= 0:
        return None
    return {"ReadCapacityUnits": r, "WriteCapacityUnits": w}


def _on_demand(od: Any) -> Optional[Dict[str, int]]:
    # -1 (or nothing) is "no maximum": DynamoDB reports it that way for tables without one.
    if not isinstance(od, dict):
        return None
    out = {k: int(od[k]) for k in ("MaxReadRequestUnits", "MaxWriteRequestUnits")
           if od.get(k) is not None and int(od[k]) > 0}
    return out or None


def _warm(wt: Any) -> Optional[Dict[str, int]]:
    if not isinstance(wt, dict):
        return None
    r, w = int(wt.get("ReadUnitsPerSecond") or 0), int(wt.get("WriteUnitsPerSecond") or 0)
    if r <= BASE_WARM["ReadUnitsPerSecond"] and w <= BASE_WARM["WriteUnitsPerSecond"]:
        return None
    return {"ReadUnitsPerSecond": max(r, BASE_WARM["ReadUnitsPerSecond"]),
            "WriteUnitsPerSecond": max(w, BASE_WARM["WriteUnitsPerSecond"])}


def _projection(p: Any) -> Dict[str, Any]:
    p = p if isinstance(p, dict) else {}
    out: Dict[str, Any] = {"ProjectionType": p.get("ProjectionType") or "ALL"}
    if out["ProjectionType"] == "INCLUDE" and p.get("NonKeyAttributes"):
        out["NonKeyAttributes"] = sorted(str(a) for a in p["NonKeyAttributes"])
    return out


def _keys(ks: Any) -> List[Dict[str, str]]:
    ks = list(ks or [])
    ks.sort(key=lambda k: 0 if k.get("KeyType") == "HASH" else 1)
    return [{"AttributeName": str(k["AttributeName"]), "KeyType": str(k["KeyType"])} for k in ks]


def _insights(ci: Any) -> Optional[Dict[str, Any]]:
    if not isinstance(ci, dict) or not ci.get("Enabled"):
        return None
    out: Dict[str, Any] = {"Enabled": True}
    if ci.get("Mode") and ci["Mode"] != DEFAULT_INSIGHTS_MODE:
        out["Mode"] = ci["Mode"]
    return out


def _policy_document(rp: Any) -> Optional[Dict[str, Any]]:
    if not isinstance(rp, dict) or rp.get("PolicyDocument") in (None, "", {}):
        return None
    doc = rp["PolicyDocument"]
    if isinstance(doc, str):
        doc = json.loads(doc)
    return {"PolicyDocument": doc}


def normalize(props: Dict[str, Any]) -> Dict[str, Any]:
    """The compact canonical form of CloudFormation-shaped table properties (see the module doc)."""
    p: Dict[str, Any] = {}
    if props.get("TableName"):
        p["TableName"] = str(props["TableName"])
    mode = props.get("BillingMode") or "PAY_PER_REQUEST"
    p["BillingMode"] = mode
    types = {a["AttributeName"]: a["AttributeType"] for a in props.get("AttributeDefinitions") or []}
    key_schema = _keys(props.get("KeySchema"))

    def index(g: Dict[str, Any], gsi: bool) -> Dict[str, Any]:
        out: Dict[str, Any] = {"IndexName": str(g["IndexName"]), "KeySchema": _keys(g.get("KeySchema")),
                               "Projection": _projection(g.get("Projection"))}
        if gsi:
            if mode == "PROVISIONED":
                pt = _throughput(g.get("ProvisionedThroughput")) or _throughput(props.get("ProvisionedThroughput"))
                if pt:
                    out["ProvisionedThroughput"] = pt
            else:
                od = _on_demand(g.get("OnDemandThroughput"))
                if od:
                    out["OnDemandThroughput"] = od
            wt = _warm(g.get("WarmThroughput"))
            if wt:
                out["WarmThroughput"] = wt
            ci = _insights(g.get("ContributorInsightsSpecification"))
            if ci:
                out["ContributorInsightsSpecification"] = ci
        return out

    gsis = sorted((index(g, True) for g in props.get("GlobalSecondaryIndexes") or []), key=lambda g: g["IndexName"])
    lsis = sorted((index(g, False) for g in props.get("LocalSecondaryIndexes") or []), key=lambda g: g["IndexName"])
    used: List[str] = []
    for ks in [key_schema] + [g["KeySchema"] for g in gsis] + [g["KeySchema"] for g in lsis]:
        for k in ks:
            if k["AttributeName"] not in used:
                used.append(k["AttributeName"])
    p["AttributeDefinitions"] = [{"AttributeName": a, "AttributeType": types.get(a, "S")} for a in used]
    p["KeySchema"] = key_schema
    if mode == "PROVISIONED":
        pt = _throughput(props.get("ProvisionedThroughput"))
        if pt:
            p["ProvisionedThroughput"] = pt
    else:
        od = _on_demand(props.get("OnDemandThroughput"))
        if od:
            p["OnDemandThroughput"] = od
    wt = _warm(props.get("WarmThroughput"))
    if wt:
        p["WarmThroughput"] = wt
    if gsis:
        p["GlobalSecondaryIndexes"] = gsis
    if lsis:
        p["LocalSecondaryIndexes"] = lsis
    ss = props.get("StreamSpecification")
    if isinstance(ss, dict) and ss.get("StreamViewType") and ss.get("StreamEnabled", True):
        p["StreamSpecification"] = {"StreamViewType": ss["StreamViewType"]}
    ttl = props.get("TimeToLiveSpecification")
    if isinstance(ttl, dict) and ttl.get("Enabled") and ttl.get("AttributeName"):
        p["TimeToLiveSpecification"] = {"AttributeName": str(ttl["AttributeName"]), "Enabled": True}
    pitr = props.get("PointInTimeRecoverySpecification")
    if isinstance(pitr, dict) and pitr.get("PointInTimeRecoveryEnabled"):
        p["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True}
        days = pitr.get("RecoveryPeriodInDays")
        if days is not None and int(days) != DEFAULT_RECOVERY_DAYS:
            p["PointInTimeRecoverySpecification"]["RecoveryPeriodInDays"] = int(days)
    if props.get("DeletionProtectionEnabled"):
        p["DeletionProtectionEnabled"] = True
    sse = props.get("SSESpecification")
    if isinstance(sse, dict) and sse.get("SSEEnabled"):
        p["SSESpecification"] = {"SSEEnabled": True, "SSEType": sse.get("SSEType") or "KMS"}
        if sse.get("KMSMasterKeyId"):
            p["SSESpecification"]["KMSMasterKeyId"] = str(sse["KMSMasterKeyId"])
    if props.get("TableClass") and props["TableClass"] != "STANDARD":
        p["TableClass"] = props["TableClass"]
    ci = _insights(props.get("ContributorInsightsSpecification"))
    if ci:
        p["ContributorInsightsSpecification"] = ci
    rp = _policy_document(props.get("ResourcePolicy"))
    if rp:
        p["ResourcePolicy"] = rp
    ks = props.get("KinesisStreamSpecification")
    if isinstance(ks, dict) and ks.get("StreamArn"):
        p["KinesisStreamSpecification"] = {"StreamArn": str(ks["StreamArn"])}
        prec = ks.get("ApproximateCreationDateTimePrecision")
        if prec and prec != DEFAULT_KINESIS_PRECISION:
            p["KinesisStreamSpecification"]["ApproximateCreationDateTimePrecision"] = prec
    tags = props.get("Tags")
    if tags:
        p["Tags"] = sorted(({"Key": str(t["Key"]), "Value": str(t.get("Value", ""))} for t in tags),
                           key=lambda t: t["Key"])
    return p


def from_aws(
    desc: Dict[str, Any],
    *,
    ttl: Optional[Dict[str, Any]] = None,
    backups: Optional[Dict[str, Any]] = None,
    tags: Optional[List[Dict[str, str]]] = None,
    insights: Optional[Dict[Optional[str], Dict[str, Any]]] = None,
    policy: Optional[str] = None,
    kinesis: Optional[List[Dict[str, Any]]] = None,
    unread: Optional[Dict[str, str]] = None,
    aws_managed_key: bool = False,
) -> TableDefinition:
    """A definition from DescribeTable and the answers of the other Describe/List/Get calls.

    Each keyword is the answer of one call (``insights``: DescribeContributorInsights per index,
    ``None`` for the table); a setting whose call failed is in ``unread`` and stays out.
    ``aws_managed_key``: the SSE key is DynamoDB's AWS managed key (``alias/aws/dynamodb``), which a
    definition names by leaving ``KMSMasterKeyId`` out (each account and region has its own).
    """
    notes: List[str] = []
    mode = (desc.get("BillingModeSummary") or {}).get("BillingMode") \
        or ("PROVISIONED" if _throughput(desc.get("ProvisionedThroughput")) else "PAY_PER_REQUEST")
    ins = insights or {}

    def ci(index: Optional[str]) -> Optional[Dict[str, Any]]:
        d = ins.get(index)
        if not d or d.get("ContributorInsightsStatus") not in ("ENABLED", "ENABLING"):
            return None
        out: Dict[str, Any] = {"Enabled": True}
        if d.get("ContributorInsightsMode"):
            out["Mode"] = d["ContributorInsightsMode"]
        return out

    props: Dict[str, Any] = {
        "TableName": desc["TableName"], "BillingMode": mode,
        "AttributeDefinitions": desc.get("AttributeDefinitions") or [], "KeySchema": desc["KeySchema"],
    }
    if mode == "PROVISIONED":
        props["ProvisionedThroughput"] = desc.get("ProvisionedThroughput")
    props["OnDemandThroughput"] = desc.get("OnDemandThroughput")
    props["WarmThroughput"] = desc.get("WarmThroughput")
    gsis = []
    for g in desc.get("GlobalSecondaryIndexes") or []:
        if g.get("IndexStatus") == "DELETING":
            # On its way out: a clone would get an index the source no longer has, and an adopted
            # definition would re-create it once the deletion ends.
            notes.append(f"index {g['IndexName']} is being deleted: left out of the definition")
            continue
        gsis.append({"IndexName": g["IndexName"], "KeySchema": g["KeySchema"], "Projection": g.get("Projection"),
                     "ProvisionedThroughput": g.get("ProvisionedThroughput"),
                     "OnDemandThroughput": g.get("OnDemandThroughput"), "WarmThroughput": g.get("WarmThroughput"),
                     "ContributorInsightsSpecification": ci(g["IndexName"])})
    props["GlobalSecondaryIndexes"] = gsis
    props["LocalSecondaryIndexes"] = [{"IndexName": x["IndexName"], "KeySchema": x["KeySchema"],
                                       "Projection": x.get("Projection")}
                                      for x in desc.get("LocalSecondaryIndexes") or []]
    ss = desc.get("StreamSpecification") or {}
    if ss.get("StreamEnabled"):
        props["StreamSpecification"] = {"StreamViewType": ss.get("StreamViewType")}
    if ttl and ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        props["TimeToLiveSpecification"] = {"AttributeName": ttl.get("AttributeName"), "Enabled": True}
    pitr = (backups or {}).get("PointInTimeRecoveryDescription") or {}
    if pitr.get("PointInTimeRecoveryStatus") in ("ENABLED", "ENABLING"):
        props["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True,
                                                     "RecoveryPeriodInDays": pitr.get("RecoveryPeriodInDays")}
    unread = dict(unread or {})
    if "DeletionProtectionEnabled" in desc:
        props["DeletionProtectionEnabled"] = bool(desc["DeletionProtectionEnabled"])
    else:
        # DynamoDB always reports it; an endpoint that does not has not said "off", and an export
        # writing "off" would have Terraform turn protection off on apply.
        unread.setdefault("DeletionProtectionEnabled", "DescribeTable did not report it")
    sse = desc.get("SSEDescription") or {}
    if sse.get("Status") in ("ENABLED", "ENABLING", "UPDATING") and sse.get("SSEType", "KMS") == "KMS":
        props["SSESpecification"] = {"SSEEnabled": True, "SSEType": "KMS",
                                     "KMSMasterKeyId": None if aws_managed_key else sse.get("KMSMasterKeyArn")}
    props["TableClass"] = (desc.get("TableClassSummary") or {}).get("TableClass")
    props["ContributorInsightsSpecification"] = ci(None)
    if policy:
        props["ResourcePolicy"] = {"PolicyDocument": json.loads(policy)}
    live = [k for k in kinesis or [] if k.get("DestinationStatus") in ("ACTIVE", "ENABLING", "UPDATING")]
    if live:
        props["KinesisStreamSpecification"] = {
            "StreamArn": live[0]["StreamArn"],
            "ApproximateCreationDateTimePrecision": live[0].get("ApproximateCreationDateTimePrecision")}
        if len(live) > 1:
            notes.append(f"{len(live)} Kinesis streaming destinations; a definition carries one "
                         f"({live[0]['StreamArn']})")
    if tags:
        # aws:-prefixed tags are set by AWS services (CloudFormation, ...) and cannot be set by anyone else.
        reserved = [t["Key"] for t in tags if str(t["Key"]).startswith("aws:")]
        if reserved:
            notes.append(f"tags reserved by AWS left out: {', '.join(sorted(reserved))}")
        props["Tags"] = [t for t in tags if not str(t["Key"]).startswith("aws:")]
    arn = desc.get("TableArn")
    region = arn_region(arn)
    details: List[Dict[str, Any]] = []
    for r in desc.get("Replicas") or []:
        if not isinstance(r, dict) or not r.get("RegionName"):
            continue
        if r.get("ReplicaStatus") in GONE_REPLICA:
            # On its way out (or never made): an export would adopt or re-create it.
            notes.append(f"replica {r['RegionName']} is {r['ReplicaStatus']}: left out of the global table")
            continue
        details.append(replica_detail(r))
    replicas = [str(r["RegionName"]) for r in details if r["RegionName"] != region]
    if replicas:
        notes.append(f"{REPLICAS_NOTE} ({', '.join(replicas)}) are not part of the definition")
    glob: Dict[str, Any] = {}
    if details:
        glob["GlobalTableVersion"] = desc.get("GlobalTableVersion")
        if desc.get("MultiRegionConsistency") == "STRONG":
            glob["MultiRegionConsistency"] = "STRONG"
            glob["Witnesses"] = [str(w["RegionName"]) for w in desc.get("GlobalTableWitnesses") or []
                                 if isinstance(w, dict) and w.get("RegionName")]
    return TableDefinition(props=normalize(props), unread=unread, notes=notes, arn=arn,
                           label=f"table {desc['TableName']}", replicas=replicas, region=region,
                           replica_details=details, global_table=glob)


# The start of the note a read global table gets (an export that carries the replicas drops it).
REPLICAS_NOTE = "global table replicas"
# Replica states whose replica is not part of the global table any more (or never was).
GONE_REPLICA = ("DELETING", "CREATION_FAILED")


def arn_region(arn: Any) -> Optional[str]:
    """The region of an ARN (``arn:aws:dynamodb:REGION:...``); None when it has none."""
    parts = str(arn or "").split(":")
    return parts[3] if len(parts) > 5 and parts[0] == "arn" and parts[3] else None


def replica_detail(r: Dict[str, Any]) -> Dict[str, Any]:
    """What DescribeTable reports of one replica (a ``Replicas`` entry), statuses dropped:
    ``RegionName``, its KMS key, table class and its read throughput overrides (table and GSIs)."""
    out: Dict[str, Any] = {"RegionName": str(r["RegionName"])}
    if r.get("KMSMasterKeyId"):
        out["KMSMasterKeyId"] = str(r["KMSMasterKeyId"])
    tc = (r.get("ReplicaTableClassSummary") or {}).get("TableClass")
    if tc:
        out["TableClass"] = str(tc)

    def overrides(x: Dict[str, Any], into: Dict[str, Any]) -> None:
        units = (x.get("ProvisionedThroughputOverride") or {}).get("ReadCapacityUnits")
        if units is not None and int(units) > 0:
            into["ReadCapacityUnits"] = int(units)
        units = (x.get("OnDemandThroughputOverride") or {}).get("MaxReadRequestUnits")
        if units is not None and int(units) > 0:
            into["MaxReadRequestUnits"] = int(units)

    overrides(r, out)
    gsis = []
    for g in r.get("GlobalSecondaryIndexes") or []:
        if isinstance(g, dict) and g.get("IndexName"):
            one: Dict[str, Any] = {"IndexName": str(g["IndexName"])}
            overrides(g, one)
            gsis.append(one)
    if gsis:
        out["GlobalSecondaryIndexes"] = gsis
    return out


def create_request(props: Dict[str, Any]) -> Dict[str, Any]:
    """CreateTable arguments for the settings CreateTable takes (normalized ``props``).

    TTL, PITR, contributor insights and the resource policy are applied after creation; the
    Kinesis destination is never applied (see :mod:`ddbmigrate.schema.apply`).
    """
    mode = props.get("BillingMode") or "PAY_PER_REQUEST"
    req: Dict[str, Any] = {"TableName": props["TableName"], "AttributeDefinitions": props["AttributeDefinitions"],
                           "KeySchema": props["KeySchema"], "BillingMode": mode}
    for k in ("ProvisionedThroughput", "OnDemandThroughput", "WarmThroughput", "TableClass",
              "DeletionProtectionEnabled", "Tags"):
        if k in props:
            req[k] = props[k]
    if mode == "PROVISIONED" and "ProvisionedThroughput" not in req:
        req["ProvisionedThroughput"] = {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(kind):
            req[kind] = [{k: v for k, v in g.items() if k != "ContributorInsightsSpecification"} for g in props[kind]]
    if mode == "PROVISIONED":
        for g in req.get("GlobalSecondaryIndexes", []):
            g.setdefault("ProvisionedThroughput", req["ProvisionedThroughput"])
    if "StreamSpecification" in props:
        req["StreamSpecification"] = {"StreamEnabled": True,
                                      "StreamViewType": props["StreamSpecification"]["StreamViewType"]}
    sse = props.get("SSESpecification")
    if sse:
        req["SSESpecification"] = {"Enabled": True, "SSEType": sse.get("SSEType", "KMS")}
        if sse.get("KMSMasterKeyId"):
            req["SSESpecification"]["KMSMasterKeyId"] = sse["KMSMasterKeyId"]
    return req


def ordered(props: Dict[str, Any]) -> Dict[str, Any]:
    """``props`` with its keys (and its indexes' keys) in the documented order, for output."""
    out = {k: props[k] for k in ORDER if k in props}
    out.update({k: v for k, v in props.items() if k not in out})
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if kind in out:
            out[kind] = [{k: g[k] for k in INDEX_ORDER if k in g} for g in out[kind]]
    return out
