"""Create tables and wait for them; the CreateTable core of specs shaped like AWS::DynamoDB::Table.

``spec_to_request`` checks a spec's keys, indexes, billing and stream (and rejects unknown
properties) and returns the CreateTable core that ImportTable and plan validation share. The
whole definition (every other setting, cloning, diff, export) lives in :mod:`ddbmigrate.schema`.
``clone_request`` turns a DescribeTable answer into that core; TTL is applied after creation
with UpdateTimeToLive because CreateTable cannot carry it.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import SchemaError, TableNotFoundError, UsageError
from .client import DynamoClient
from .errors import error_code


def _throughput(pt: Optional[Dict[str, Any]]) -> Optional[Dict[str, int]]:
    if not pt:
        return None
    r, w = int(pt.get("ReadCapacityUnits") or 0), int(pt.get("WriteCapacityUnits") or 0)
    if r <= 0 or w <= 0:
        return None
    return {"ReadCapacityUnits": r, "WriteCapacityUnits": w}


def billing_mode(desc: Dict[str, Any]) -> str:
    bm = (desc.get("BillingModeSummary") or {}).get("BillingMode")
    if bm:
        return str(bm)
    return "PROVISIONED" if _throughput(desc.get("ProvisionedThroughput")) else "PAY_PER_REQUEST"


def clone_request(desc: Dict[str, Any], new_name: str) -> Dict[str, Any]:
    """CreateTable arguments that reproduce ``desc`` under ``new_name``."""
    mode = billing_mode(desc)
    req: Dict[str, Any] = {
        "TableName": new_name,
        "AttributeDefinitions": desc["AttributeDefinitions"],
        "KeySchema": desc["KeySchema"],
        "BillingMode": mode,
    }
    if mode == "PROVISIONED":
        req["ProvisionedThroughput"] = _throughput(desc.get("ProvisionedThroughput")) or {
            "ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
    gsis = []
    for g in desc.get("GlobalSecondaryIndexes") or []:
        gi: Dict[str, Any] = {"IndexName": g["IndexName"], "KeySchema": g["KeySchema"], "Projection": g["Projection"]}
        if mode == "PROVISIONED":
            gi["ProvisionedThroughput"] = _throughput(g.get("ProvisionedThroughput")) or req["ProvisionedThroughput"]
        gsis.append(gi)
    if gsis:
        req["GlobalSecondaryIndexes"] = gsis
    lsis = [{"IndexName": x["IndexName"], "KeySchema": x["KeySchema"], "Projection": x["Projection"]}
            for x in desc.get("LocalSecondaryIndexes") or []]
    if lsis:
        req["LocalSecondaryIndexes"] = lsis
    ss = desc.get("StreamSpecification")
    if ss and ss.get("StreamEnabled"):
        req["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": ss["StreamViewType"]}
    return req


def time_to_live(client: DynamoClient, table: str) -> Optional[str]:
    """The TTL attribute of ``table`` if TTL is enabled, else None."""
    try:
        d = client.control.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    except Exception:  # DescribeTimeToLive is not always permitted; TTL is then not copied
        return None
    if d.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        return str(d.get("AttributeName"))
    return None


def wait_active(client: DynamoClient, table: str, timeout: float = 600.0,
                sleep: Callable[[float], None] = time.sleep) -> Dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            desc = client.describe_table(table)
        except TableNotFoundError:
            desc = {"TableStatus": "CREATING"}
        gsis_ready = all(g.get("IndexStatus", "ACTIVE") == "ACTIVE" for g in desc.get("GlobalSecondaryIndexes") or [])
        if desc.get("TableStatus") == "ACTIVE" and gsis_ready:
            return desc
        if time.monotonic() > deadline:
            raise SchemaError(f"table {table} not ACTIVE after {timeout:.0f}s", table=table)
        sleep(1.0 if desc.get("TableStatus") == "CREATING" else 2.0)


def create_table(client: DynamoClient, request: Dict[str, Any], *, ttl_attribute: Optional[str] = None,
                 wait: bool = True) -> Dict[str, Any]:
    """CreateTable, wait for ACTIVE, then enable TTL if asked."""
    name = request["TableName"]
    try:
        client.control.create_table(**request)
    except client.control.exceptions.ResourceInUseException:
        raise SchemaError(f"table {name} already exists", table=name, code="ResourceInUseException") from None
    except Exception as e:
        raise SchemaError(f"cannot create table {name}: {e}", table=name, code=error_code(e)) from None
    desc = wait_active(client, name) if wait else client.describe_table(name)
    if ttl_attribute:
        client.control.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute})
    return desc


def spec_to_request(spec: Dict[str, Any], table_name: Optional[str] = None) -> Dict[str, Any]:
    """A CloudFormation-shaped table spec (Properties of AWS::DynamoDB::Table) -> CreateTable args.

    Accepts the properties directly, or a full resource (``Type`` + ``Properties``). Errors name
    the offending field.
    """
    if not isinstance(spec, dict):
        raise UsageError("table spec must be a mapping of AWS::DynamoDB::Table properties")
    props = spec.get("Properties", spec)
    if not isinstance(props, dict):
        raise UsageError("table spec: Properties must be a mapping of AWS::DynamoDB::Table properties")
    _check_fields(props, TABLE_PROPERTIES, "")
    name = table_name or props.get("TableName")
    if not name:
        raise UsageError("table spec: TableName is required (or give the table name on the command line)")
    for req_field in ("AttributeDefinitions", "KeySchema"):
        if req_field not in props:
            raise UsageError(f"table spec: {req_field} is required")
    attrs = props["AttributeDefinitions"]
    if not isinstance(attrs, list) or not attrs:
        raise UsageError("table spec: AttributeDefinitions must be a non-empty list")
    defined: Dict[str, str] = {}
    first: Dict[str, int] = {}
    for i, a in enumerate(attrs):
        if not isinstance(a, dict) or "AttributeName" not in a or a.get("AttributeType") not in ("S", "N", "B"):
            raise UsageError(f"table spec: AttributeDefinitions[{i}] needs AttributeName and AttributeType S, N or B")
        # DynamoDB refuses a repeated name even with the same type; keeping one of the two would
        # create a table with a key type the spec may not mean.
        if a["AttributeName"] in first:
            raise UsageError(f"table spec: AttributeDefinitions[{i}].AttributeName {a['AttributeName']!r} is also "
                             f"AttributeDefinitions[{first[a['AttributeName']]}]'s (an attribute is defined once)")
        first[a["AttributeName"]] = i
        defined[a["AttributeName"]] = a["AttributeType"]

    def keys(ks: Any, where: str) -> List[Dict[str, str]]:
        if not isinstance(ks, list) or not 1 <= len(ks) <= 2:
            raise UsageError(f"table spec: {where} must list 1 or 2 keys")
        for j, k in enumerate(ks):
            if not isinstance(k, dict) or k.get("KeyType") not in ("HASH", "RANGE"):
                raise UsageError(f"table spec: {where}[{j}].KeyType must be HASH or RANGE")
            if k.get("AttributeName") not in defined:
                raise UsageError(f"table spec: {where}[{j}].AttributeName {k.get('AttributeName')!r} "
                                 "is not in AttributeDefinitions")
        if ks[0]["KeyType"] != "HASH":
            raise UsageError(f"table spec: {where}[0] must be the HASH key")
        if len(ks) == 2 and ks[1]["KeyType"] != "RANGE":
            raise UsageError(f"table spec: {where}[1].KeyType must be RANGE (a key has one HASH attribute)")
        if len(ks) == 2 and ks[0]["AttributeName"] == ks[1]["AttributeName"]:
            raise UsageError(f"table spec: {where} names {ks[0]['AttributeName']!r} twice (HASH and RANGE are "
                             "two attributes)")
        return [{"AttributeName": k["AttributeName"], "KeyType": k["KeyType"]} for k in ks]

    mode = props.get("BillingMode", "PAY_PER_REQUEST")
    if mode not in ("PAY_PER_REQUEST", "PROVISIONED"):
        raise UsageError(f"table spec: BillingMode must be PAY_PER_REQUEST or PROVISIONED, not {mode!r}")
    req: Dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t in defined.items()],
        "KeySchema": keys(props["KeySchema"], "KeySchema"),
        "BillingMode": mode,
    }

    def throughput(pt: Any, where: str) -> Dict[str, int]:
        if not isinstance(pt, dict):
            raise UsageError(f"table spec: {where} is required with BillingMode PROVISIONED")
        out: Dict[str, int] = {}
        for k in ("ReadCapacityUnits", "WriteCapacityUnits"):
            v = pt.get(k)
            # CloudFormation takes "5" for 5; true (int 1 to Python) and 2.5 are no capacity.
            if isinstance(v, bool) or not isinstance(v, (int, str)) or isinstance(v, str) and not (v.strip().isascii() and v.strip().isdigit()) \
                    or int(v) < 1:
                raise UsageError(f"table spec: {where} needs integer ReadCapacityUnits and WriteCapacityUnits >= 1")
            out[k] = int(v)
        return out

    def no_throughput(d: Dict[str, Any], where: str) -> None:
        # CreateTable refuses capacity on an on-demand table; dropping it would create a table
        # billed differently from what the spec says.
        if d.get("ProvisionedThroughput") is not None:
            unset = "" if "BillingMode" in props else \
                " (BillingMode is not given: ddbmigrate's default is PAY_PER_REQUEST, CloudFormation's PROVISIONED)"
            raise UsageError(f"table spec: {where}ProvisionedThroughput needs BillingMode PROVISIONED, "
                             f"not PAY_PER_REQUEST{unset}")

    if mode == "PROVISIONED":
        req["ProvisionedThroughput"] = throughput(props.get("ProvisionedThroughput"), "ProvisionedThroughput")
    else:
        no_throughput(props, "")

    def projection(p: Any, where: str) -> Dict[str, Any]:
        if p is None:
            return {"ProjectionType": "ALL"}
        if not isinstance(p, dict) or p.get("ProjectionType", "ALL") not in ("ALL", "KEYS_ONLY", "INCLUDE"):
            raise UsageError(f"table spec: {where}.ProjectionType must be ALL, KEYS_ONLY or INCLUDE")
        out: Dict[str, Any] = {"ProjectionType": p.get("ProjectionType", "ALL")}
        if out["ProjectionType"] == "INCLUDE":
            nk = p.get("NonKeyAttributes")
            if not isinstance(nk, list) or not nk:
                raise UsageError(f"table spec: {where}.NonKeyAttributes is required with INCLUDE")
            out["NonKeyAttributes"] = nk
        return out

    index_names: Dict[str, str] = {}
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        idx = props.get(kind)
        if idx is None:
            continue
        if not isinstance(idx, list):
            raise UsageError(f"table spec: {kind} must be a list")
        limit = 20 if kind == "GlobalSecondaryIndexes" else 5
        if len(idx) > limit:
            raise UsageError(f"table spec: {kind} lists {len(idx)} indexes; DynamoDB allows {limit}")
        out = []
        for i, g in enumerate(idx):
            where = f"{kind}[{i}]"
            if not isinstance(g, dict) or not g.get("IndexName"):
                raise UsageError(f"table spec: {where}.IndexName is required")
            iname = g["IndexName"]
            # DynamoDB's own rule (CreateTable refuses it otherwise, as one raw AWS message).
            if not isinstance(iname, str) or not _INDEX_NAME.fullmatch(iname):
                raise UsageError(f"table spec: {where}.IndexName {iname!r} must be 3-255 characters of "
                                 "A-Z a-z 0-9 _ - .")
            if iname in index_names:
                raise UsageError(f"table spec: {where}.IndexName {iname!r} is also {index_names[iname]}'s name")
            index_names[iname] = where
            _check_fields(g, INDEX_PROPERTIES, f"{where}.")
            gi: Dict[str, Any] = {"IndexName": g["IndexName"], "KeySchema": keys(g.get("KeySchema"), f"{where}.KeySchema"),
                                  "Projection": projection(g.get("Projection"), f"{where}.Projection")}
            if kind == "LocalSecondaryIndexes" and (len(gi["KeySchema"]) != 2 or gi["KeySchema"][0] !=
                                                    req["KeySchema"][0]):
                raise UsageError(f"table spec: {where}.KeySchema must be the table's HASH key "
                                 f"({req['KeySchema'][0]['AttributeName']}) and a RANGE key")
            if kind == "GlobalSecondaryIndexes" and mode == "PROVISIONED":
                gi["ProvisionedThroughput"] = throughput(g.get("ProvisionedThroughput", props.get("ProvisionedThroughput")),
                                                         f"{where}.ProvisionedThroughput")
            elif kind == "GlobalSecondaryIndexes":
                no_throughput(g, f"{where}.")
            out.append(gi)
        if out:
            req[kind] = out
    ss = props.get("StreamSpecification")
    if ss is not None:
        vt = ss.get("StreamViewType") if isinstance(ss, dict) else None
        if vt not in ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"):
            raise UsageError("table spec: StreamSpecification.StreamViewType must be KEYS_ONLY, NEW_IMAGE, "
                             "OLD_IMAGE or NEW_AND_OLD_IMAGES")
        req["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": vt}
    used = {k["AttributeName"] for k in req["KeySchema"]}
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        for g in req.get(kind, []):
            used.update(k["AttributeName"] for k in g["KeySchema"])
    unused = sorted(set(defined) - used)
    if unused:
        raise UsageError(f"table spec: AttributeDefinitions lists {', '.join(unused)} which no key or index uses")
    return req


_INDEX_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")

# Every property of AWS::DynamoDB::Table, so a typo ("GlobalSecondaryIndex") is an error that names
# the field instead of an index silently missing from the new table.
TABLE_PROPERTIES = frozenset((
    "AttributeDefinitions", "BillingMode", "ContributorInsightsSpecification", "DeletionProtectionEnabled",
    "GlobalSecondaryIndexes", "ImportSourceSpecification", "KeySchema", "KinesisStreamSpecification",
    "LocalSecondaryIndexes", "OnDemandThroughput", "PointInTimeRecoverySpecification", "ProvisionedThroughput",
    "ResourcePolicy", "SSESpecification", "StreamSpecification", "TableClass", "TableName", "Tags",
    "TimeToLiveSpecification", "WarmThroughput",
))
INDEX_PROPERTIES = frozenset(("IndexName", "KeySchema", "Projection", "ProvisionedThroughput",
                              "ContributorInsightsSpecification", "OnDemandThroughput", "WarmThroughput"))


def _check_fields(obj: Dict[str, Any], known: frozenset, where: str) -> None:  # type: ignore[type-arg]
    import difflib

    for k in obj:
        if k not in known:
            close = difflib.get_close_matches(str(k), sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UsageError(f"table spec: unknown property {where}{k}{hint}")


def spec_ttl_attribute(spec: Dict[str, Any]) -> Optional[str]:
    props = spec.get("Properties", spec)
    ttl = props.get("TimeToLiveSpecification")
    if isinstance(ttl, dict) and ttl.get("Enabled"):
        name = ttl.get("AttributeName")
        if not name:
            raise UsageError("table spec: TimeToLiveSpecification.AttributeName is required when Enabled")
        return str(name)
    return None


def load_spec(path: str) -> Dict[str, Any]:
    """A table spec file (YAML or JSON): properties, a resource or a one-table template. A key
    given twice at any depth is refused, naming the file and the line (not the last one kept)."""
    import yaml

    from ..yaml_strict import AliasBombError, DuplicateKeyError, load_text

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        raise UsageError(f"cannot read table spec {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"table spec {path} is not UTF-8 text: {e.reason}") from None
    try:
        data, _node = load_text(text)
    except DuplicateKeyError as e:
        d = e.duplicates[0]
        more = f" (and {len(e.duplicates) - 1} more duplicate key(s))" if len(e.duplicates) > 1 else ""
        raise UsageError(f"table spec {path}:{d.line}: {d.message()}{more}") from None
    except AliasBombError as e:
        raise UsageError(f"table spec {path}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise UsageError(f"table spec {path}{where} is not valid YAML/JSON: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise UsageError(f"table spec {path} must be a mapping")
    # A whole CloudFormation template with one table resource is accepted too.
    if "Resources" in data:
        tables = [r for r in data["Resources"].values() if isinstance(r, dict) and r.get("Type") == "AWS::DynamoDB::Table"]
        if len(tables) != 1:
            raise UsageError(f"table spec {path}: expected exactly one AWS::DynamoDB::Table resource")
        data = tables[0]
    return data


def request_from_spec(spec: Dict[str, Any], spec_path: str, table: Optional[str] = None) -> Tuple[Dict[str, Any], Optional[str]]:
    """(CreateTable request, TTL attribute) from a loaded spec; errors name ``spec_path`` and the field."""
    try:
        props = spec.get("Properties", spec)
        name = table or (props.get("TableName") if isinstance(props, dict) else None)
        if not name:
            raise UsageError("table spec: TableName is required (or give the table name on the command line)")
        return spec_to_request(spec, table_name=str(name)), spec_ttl_attribute(spec)
    except UsageError as e:
        # Name the file, so the one line says which spec and which field.
        raise UsageError(e.message.replace("table spec:", f"table spec {spec_path}:", 1)) from None
