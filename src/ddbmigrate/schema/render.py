"""A table definition as ddbmigrate's spec, CloudFormation, Terraform or CDK (TypeScript).

Each output is complete on its own, so an existing table is adopted by infrastructure code
without ``ImportSourceSpecification`` (whose property can never leave the stack afterwards):

* ``spec``: the AWS::DynamoDB::Table properties (YAML) that ``create-table --spec`` and
  ``--target-spec`` read; ``spec -> table -> export --as spec`` gives the same spec back.
* ``cloudformation``: a template whose one resource has ``DeletionPolicy: Retain`` and
  ``UpdateReplacePolicy: Retain``, which CloudFormation's resource import requires, and which keep
  the data if the resource ever leaves the stack. A global table is an ``AWS::DynamoDB::GlobalTable``
  with every replica, never an ``AWS::DynamoDB::Table`` (adopting one region's table alone would
  leave the replicas unmanaged, and a later stack could not keep them); one that a GlobalTable
  cannot describe (provisioned billing, the legacy 2017.11.29 version) is refused.
* ``terraform``: an ``aws_dynamodb_table`` (plus ``aws_dynamodb_resource_policy``,
  ``aws_dynamodb_contributor_insights`` and ``aws_dynamodb_kinesis_streaming_destination`` when
  the table has them), each with an ``import`` block (Terraform 1.5+), and ``prevent_destroy``.
* ``cdk``: a TypeScript stack with a ``dynamodb.Table`` (AWS::DynamoDB::Table, which ``cdk import``
  adopts; ``TableV2`` synthesizes AWS::DynamoDB::GlobalTable, a different resource type) with
  ``RemovalPolicy.RETAIN``; refused for a global table.

Pure: text in, text out. Settings the definition could not read are left out of every output, and
:func:`export_notes` says which.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, Set, Tuple

import yaml

from ..errors import UsageError
from .model import REPLICAS_NOTE, TableDefinition, ordered

FORMATS = ("spec", "cloudformation", "terraform", "cdk")


def render(definition: TableDefinition, fmt: str) -> str:
    """``definition`` as ``fmt`` (one of FORMATS)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    return {"spec": to_spec, "cloudformation": to_cloudformation, "terraform": to_terraform,
            "cdk": to_cdk}[fmt](definition)


# Application Auto Scaling is its own service, never read: an export of a provisioned table fixes
# its capacity at today's figures, which a later apply would set back under auto scaling.
AUTO_SCALING_NOTE = ("auto scaling (Application Auto Scaling targets and policies) is not read or exported: if it "
                     "manages this table's capacity, keep the capacity out of what the tool applies (Terraform: "
                     "read_capacity and write_capacity, and each index's, in lifecycle ignore_changes), or a later "
                     "apply sets it back to the figures of the export")


def _provisioned_table(definition: TableDefinition) -> bool:
    return bool(definition.arn) and definition.props.get("BillingMode") == "PROVISIONED"


def export_notes(definition: TableDefinition, fmt: Optional[str] = None) -> List[str]:
    """Lines for stderr: what the export (as ``fmt``) could not include, and why."""
    out = [f"not exported: {s} ({r})" for s, r in definition.unread.items()]
    notes = definition.notes
    if fmt == "cloudformation" and definition.is_global:
        try:
            props, unread = _global_table_properties(definition)
        except UsageError:  # not exportable as CloudFormation at all (render says why)
            props, unread = {}, {}
        if props:
            # The replicas are in this one: the note that they are not part of the definition is not.
            notes = [n for n in notes if not n.startswith(REPLICAS_NOTE)]
            regions = [r["Region"] for r in props["Replicas"]]
            out.append(f"note: exported as AWS::DynamoDB::GlobalTable with its replicas ({', '.join(regions)}): "
                       "import it as that resource type, in a stack of one of those regions")
            out += [f"not exported: replica {region}: {', '.join(settings)} (DescribeTable in {definition.region} "
                    f"does not report them; export with --region {region} to read them)"
                    for region, settings in unread.items()]
    out += [f"note: {n}" for n in notes]
    if _provisioned_table(definition):
        out.append(f"note: {AUTO_SCALING_NOTE}")
    return out


def _unread_comments(definition: TableDefinition, mark: str, consequence: str,
                     where: Optional[Dict[str, str]] = None) -> str:
    """Comment lines (``mark`` starts each) naming the settings left out as unread; "" when none.

    The file outlives the stderr notes (``--output``), and whoever applies it must know that these
    settings were not read rather than read as off. ``where`` adds a word per setting."""
    if not definition.unread:
        return ""
    lines = [f"{mark} Not exported, could not be read ({consequence}):"]
    lines += [f"{mark}   {s}: {' '.join(str(r).split())}{(' ' + where[s]) if where and s in where else ''}"
              for s, r in definition.unread.items()]
    return "\n".join(lines) + "\n"


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]  # yaml has no type stubs here
    """PyYAML writes NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR raw inside single quotes, where
    its own loader reads them as line breaks (a tag value "\x85" came back as " "): strings with
    them are written double-quoted, where they are escaped."""


def _str(dumper: Any, data: str) -> Any:
    style = '"' if any(c in data for c in "\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def _yaml(data: Any) -> str:
    return str(yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                         width=120))


def to_spec(definition: TableDefinition) -> str:
    return _yaml(ordered(definition.props))


def logical_id(name: str, suffix: str = "Table") -> str:
    """A CloudFormation logical id (alphanumeric) from a table name."""
    parts = re.split(r"[^A-Za-z0-9]+", name)
    base = "".join(p[:1].upper() + p[1:] for p in parts if p) or "Dynamo"
    # A table name may be 255 characters, a logical id no more than that with its suffix, and
    # cfn-lint reports one above 90% of that (229) as approaching the limit.
    return (base if base[0].isalpha() else "T" + base)[:229 - len(suffix)] + suffix


# The only global table version AWS::DynamoDB::GlobalTable manages.
GLOBAL_TABLE_VERSION = "2019.11.21"
# A replica's settings that only a DescribeTable (and the other reads) in its own region report.
_OTHER_REPLICA_UNREAD = ("PointInTimeRecoverySpecification", "DeletionProtectionEnabled",
                         "ContributorInsightsSpecification", "Tags", "ResourcePolicy", "KinesisStreamSpecification")


def _global_regions(definition: TableDefinition) -> List[str]:
    here = [definition.region] if definition.region else []
    return here + [r["RegionName"] for r in definition.replica_details if r["RegionName"] not in here] \
        + [r for r in definition.replicas if r not in here
           and r not in [d["RegionName"] for d in definition.replica_details]]


def _global_refusal(definition: TableDefinition, what: str) -> UsageError:
    name = definition.name or "table"
    return UsageError(
        f"{name} is a global table (replicas in {', '.join(_global_regions(definition))}): {what}; "
        "exported as one region's AWS::DynamoDB::Table it would leave the replicas out. Use --as terraform "
        "(its aws_dynamodb_table keeps the replicas), or write the AWS::DynamoDB::GlobalTable resource by hand",
        table=definition.name)


def _global_table_properties(definition: TableDefinition) -> Tuple[Dict[str, Any], Dict[str, List[str]]]:
    """AWS::DynamoDB::GlobalTable properties of a global table, and per other replica the settings
    that could not be read for it (DescribeTable in one region reports only some of the others')."""
    p = definition.props
    here = definition.region
    version = definition.global_table.get("GlobalTableVersion")
    if version and version != GLOBAL_TABLE_VERSION:
        raise _global_refusal(definition, f"it is a version {version} global table, and "
                                          f"AWS::DynamoDB::GlobalTable manages version {GLOBAL_TABLE_VERSION} only "
                                          "(upgrade it first)")
    if p.get("BillingMode") == "PROVISIONED":
        raise _global_refusal(definition, "AWS::DynamoDB::GlobalTable describes a PROVISIONED global table "
                                          "only with write auto scaling (WriteProvisionedThroughputSettings), "
                                          "which ddbmigrate does not read")
    if not here:
        raise _global_refusal(definition, "the region it was read in is unknown (DescribeTable gave no ARN)")

    def read_max(x: Dict[str, Any]) -> Any:
        return (x.get("OnDemandThroughput") or {}).get("MaxReadRequestUnits")

    def write_max(x: Dict[str, Any]) -> Any:
        return (x.get("OnDemandThroughput") or {}).get("MaxWriteRequestUnits")

    out: Dict[str, Any] = {k: p[k] for k in ("TableName", "BillingMode", "AttributeDefinitions", "KeySchema")}
    if write_max(p):
        out["WriteOnDemandThroughputSettings"] = {"MaxWriteRequestUnits": write_max(p)}
    if p.get("WarmThroughput"):
        out["WarmThroughput"] = p["WarmThroughput"]
    table_gsis = p.get("GlobalSecondaryIndexes") or []
    gsis = []
    for g in table_gsis:
        one = {k: g[k] for k in ("IndexName", "KeySchema", "Projection")}
        if g.get("WarmThroughput"):
            one["WarmThroughput"] = g["WarmThroughput"]
        if write_max(g):
            one["WriteOnDemandThroughputSettings"] = {"MaxWriteRequestUnits": write_max(g)}
        gsis.append(one)
    if gsis:
        out["GlobalSecondaryIndexes"] = gsis
    for k in ("LocalSecondaryIndexes", "StreamSpecification", "TimeToLiveSpecification"):
        if p.get(k):
            out[k] = p[k]
    sse = p.get("SSESpecification")
    key = (sse or {}).get("KMSMasterKeyId")
    if sse:
        # The key is regional, so each replica names its own; none at all is DynamoDB's AWS managed key.
        out["SSESpecification"] = {"SSEEnabled": True, "SSEType": sse.get("SSEType") or "KMS"}
    if definition.global_table.get("MultiRegionConsistency"):
        out["MultiRegionConsistency"] = definition.global_table["MultiRegionConsistency"]
        if definition.global_table.get("Witnesses"):
            out["GlobalTableWitnesses"] = [{"Region": r} for r in definition.global_table["Witnesses"]]

    # The replica in the region the table was read in has every setting read.
    local: Dict[str, Any] = {"Region": here}
    if p.get("DeletionProtectionEnabled"):
        local["DeletionProtectionEnabled"] = True
    for k in ("PointInTimeRecoverySpecification", "ContributorInsightsSpecification", "TableClass",
              "ResourcePolicy", "KinesisStreamSpecification", "Tags"):
        if p.get(k):
            local[k] = p[k]
    if key:
        local["SSESpecification"] = {"KMSMasterKeyId": key}
    if read_max(p):
        local["ReadOnDemandThroughputSettings"] = {"MaxReadRequestUnits": read_max(p)}
    local_gsis = []
    for g in table_gsis:
        one = {"IndexName": g["IndexName"]}
        if g.get("ContributorInsightsSpecification"):
            one["ContributorInsightsSpecification"] = g["ContributorInsightsSpecification"]
        if read_max(g):
            one["ReadOnDemandThroughputSettings"] = {"MaxReadRequestUnits": read_max(g)}
        if len(one) > 1:
            local_gsis.append(one)
    if local_gsis:
        local["GlobalSecondaryIndexes"] = local_gsis
    replicas = [local]
    unread: Dict[str, List[str]] = {}
    details = {r["RegionName"]: r for r in definition.replica_details}
    for region in _global_regions(definition)[1:]:
        r = details.get(region, {"RegionName": region})
        one = {"Region": region}
        missing = list(_OTHER_REPLICA_UNREAD)
        if r.get("TableClass"):
            if r["TableClass"] != "STANDARD":
                one["TableClass"] = r["TableClass"]
        else:
            missing.append("TableClass")
        if key:
            if r.get("KMSMasterKeyId"):
                one["SSESpecification"] = {"KMSMasterKeyId": r["KMSMasterKeyId"]}
            else:
                missing.append("SSESpecification.KMSMasterKeyId")
        # No override: the replica has the table's read maximum.
        if r.get("MaxReadRequestUnits") or read_max(p):
            one["ReadOnDemandThroughputSettings"] = {"MaxReadRequestUnits": r.get("MaxReadRequestUnits") or read_max(p)}
        overrides = {g["IndexName"]: g for g in r.get("GlobalSecondaryIndexes") or []}
        other_gsis = []
        for g in table_gsis:
            units = overrides.get(g["IndexName"], {}).get("MaxReadRequestUnits") or read_max(g)
            if units:
                other_gsis.append({"IndexName": g["IndexName"], "ReadOnDemandThroughputSettings": {
                    "MaxReadRequestUnits": units}})
        if other_gsis:
            one["GlobalSecondaryIndexes"] = other_gsis
        if table_gsis:
            missing.append("GlobalSecondaryIndexes[*].ContributorInsightsSpecification")
        replicas.append(one)
        unread[region] = missing
    out["Replicas"] = replicas
    return out, unread


def _global_table_template(definition: TableDefinition) -> str:
    props, unread = _global_table_properties(definition)
    name = definition.name or "Table"
    regions = [r["Region"] for r in props["Replicas"]]
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"DynamoDB global table {name}, replicas in {', '.join(regions)} (exported by ddbmigrate "
                       "for CloudFormation resource import)",
        "Resources": {
            logical_id(name): {
                "Type": "AWS::DynamoDB::GlobalTable",
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Properties": props,
            }
        },
    }
    head = (f"# Global table {name}, read in {definition.region}: every replica is in Replicas. Import it as\n"
            "# AWS::DynamoDB::GlobalTable (identifier: TableName) in a stack of one of the replicas' regions.\n")
    if unread:
        head += (f"# Not read for the replicas in other regions (DescribeTable in {definition.region} does not report "
                 "them;\n# export with --region REGION to read a replica's own):\n")
        head += "".join(f"#   {region}: {', '.join(settings)}\n" for region, settings in unread.items())
        head += ("# They are left out, so an import keeps each replica's own values: add them before a stack update,\n"
                 "# which may set what the template does not say to its default.\n")
    return head + _unread_comments(definition, "#", "left out, so the stack does not set them") + _yaml(template)


def to_cloudformation(definition: TableDefinition) -> str:
    if definition.is_global:
        return _global_table_template(definition)
    name = definition.name or "Table"
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"DynamoDB table {name} (exported by ddbmigrate for CloudFormation resource import)",
        "Resources": {
            logical_id(name): {
                "Type": "AWS::DynamoDB::Table",
                # Resource import needs a DeletionPolicy; Retain on both keeps the data whatever the stack does.
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Properties": ordered(definition.props),
            }
        },
    }
    return _unread_comments(definition, "#", "left out, so the stack does not set them") + _yaml(template)


# ------------------------------------------------------------------ Terraform


def tf_name(name: str) -> str:
    """A Terraform resource name (letters, digits, _ and -; not starting with a digit)."""
    n = re.sub(r"[^A-Za-z0-9_-]", "_", name).lower()
    return n if n[:1].isalpha() or n[:1] == "_" else "t_" + n


def hcl(value: Any, indent: int = 0) -> str:
    """A Python value as an HCL expression (strings escaped, ``${`` and ``%{`` not interpolated)."""
    pad = "  " * (indent + 1)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("${", "$${").replace("%{", "%%{")
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + "".join(f"{pad}{hcl(v, indent + 1)},\n" for v in value) + "  " * indent + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{\n" + "".join(f"{pad}{hcl(str(k))} = {hcl(v, indent + 1)}\n" for k, v in value.items()) \
            + "  " * indent + "}"
    raise TypeError(f"cannot write {type(value).__name__} as HCL")


class _Block:
    """Terraform block text: ``attr`` lines and nested blocks, two-space indented."""

    def __init__(self, header: str, indent: int = 0) -> None:
        self.lines = [("  " * indent) + header + " {"]
        self.indent = indent + 1

    def attr(self, key: str, value: Any) -> "_Block":
        self.lines.append(("  " * self.indent) + f"{key} = {hcl(value, self.indent)}")
        return self

    def block(self, header: str) -> "_Block":
        return _Block(header, self.indent)

    def add(self, b: "_Block") -> "_Block":
        self.lines.extend(b.text().splitlines())
        return self

    def text(self) -> str:
        return "\n".join(self.lines + [("  " * (self.indent - 1)) + "}"])


def _key(ks: List[Dict[str, str]], kind: str) -> Any:
    return next((k["AttributeName"] for k in ks if k["KeyType"] == kind), None)


# The aws_dynamodb_table arguments that hold each setting. An unread setting is left out *and* put
# in ignore_changes: leaving it out is not enough, since the provider plans an argument it does not
# compute (tags, deletion_protection_enabled) back to its default, and which ones it computes
# changes between provider versions. ignore_changes keeps the table's value whatever it is.
_TF_TABLE_ARGS = {
    "DeletionProtectionEnabled": ("deletion_protection_enabled",),
    "TableClass": ("table_class",),
    "StreamSpecification": ("stream_enabled", "stream_view_type"),
    "TimeToLiveSpecification": ("ttl",),
    "PointInTimeRecoverySpecification": ("point_in_time_recovery",),
    "SSESpecification": ("server_side_encryption",),
    "Tags": ("tags",),
}


def to_terraform(definition: TableDefinition) -> str:
    p = definition.props
    unread = definition.unread
    name = definition.name or "table"
    rn = tf_name(name)
    t = _Block(f'resource "aws_dynamodb_table" "{rn}"')
    t.attr("name", name).attr("billing_mode", p["BillingMode"])
    t.attr("hash_key", _key(p["KeySchema"], "HASH"))
    if _key(p["KeySchema"], "RANGE"):
        t.attr("range_key", _key(p["KeySchema"], "RANGE"))
    pt = p.get("ProvisionedThroughput")
    if pt:
        t.attr("read_capacity", pt["ReadCapacityUnits"]).attr("write_capacity", pt["WriteCapacityUnits"])
    if p.get("TableClass"):
        t.attr("table_class", p["TableClass"])
    if "DeletionProtectionEnabled" not in unread:
        t.attr("deletion_protection_enabled", bool(p.get("DeletionProtectionEnabled")))
    if p.get("StreamSpecification"):
        t.attr("stream_enabled", True).attr("stream_view_type", p["StreamSpecification"]["StreamViewType"])
    for a in p["AttributeDefinitions"]:
        t.add(t.block("attribute").attr("name", a["AttributeName"]).attr("type", a["AttributeType"]))

    def throughputs(b: _Block, x: Dict[str, Any]) -> None:
        od = x.get("OnDemandThroughput")
        if od:
            ob = b.block("on_demand_throughput")
            if "MaxReadRequestUnits" in od:
                ob.attr("max_read_request_units", od["MaxReadRequestUnits"])
            if "MaxWriteRequestUnits" in od:
                ob.attr("max_write_request_units", od["MaxWriteRequestUnits"])
            b.add(ob)
        wt = x.get("WarmThroughput")
        if wt:
            b.add(b.block("warm_throughput").attr("read_units_per_second", wt["ReadUnitsPerSecond"])
                  .attr("write_units_per_second", wt["WriteUnitsPerSecond"]))

    throughputs(t, p)
    for g in p.get("GlobalSecondaryIndexes") or []:
        b = t.block("global_secondary_index").attr("name", g["IndexName"]).attr("hash_key", _key(g["KeySchema"], "HASH"))
        if _key(g["KeySchema"], "RANGE"):
            b.attr("range_key", _key(g["KeySchema"], "RANGE"))
        b.attr("projection_type", g["Projection"]["ProjectionType"])
        if g["Projection"].get("NonKeyAttributes"):
            b.attr("non_key_attributes", g["Projection"]["NonKeyAttributes"])
        if g.get("ProvisionedThroughput"):
            b.attr("read_capacity", g["ProvisionedThroughput"]["ReadCapacityUnits"])
            b.attr("write_capacity", g["ProvisionedThroughput"]["WriteCapacityUnits"])
        throughputs(b, g)
        t.add(b)
    for g in p.get("LocalSecondaryIndexes") or []:
        b = t.block("local_secondary_index").attr("name", g["IndexName"]).attr("range_key", _key(g["KeySchema"], "RANGE"))
        b.attr("projection_type", g["Projection"]["ProjectionType"])
        if g["Projection"].get("NonKeyAttributes"):
            b.attr("non_key_attributes", g["Projection"]["NonKeyAttributes"])
        t.add(b)
    ttl = p.get("TimeToLiveSpecification")
    if ttl:
        t.add(t.block("ttl").attr("attribute_name", ttl["AttributeName"]).attr("enabled", True))
    # Written as off only when read as off: "enabled = false" for an unread setting would turn it off.
    pitr = p.get("PointInTimeRecoverySpecification")
    if "PointInTimeRecoverySpecification" not in unread:
        b = t.block("point_in_time_recovery").attr("enabled", bool(pitr))
        if pitr and pitr.get("RecoveryPeriodInDays"):
            b.attr("recovery_period_in_days", pitr["RecoveryPeriodInDays"])
        t.add(b)
    sse = p.get("SSESpecification")
    key_lookup = None
    if "SSESpecification" not in unread:
        b = t.block("server_side_encryption").attr("enabled", bool(sse))
        key = (sse or {}).get("KMSMasterKeyId")
        if key and not key.startswith("arn:"):
            # A spec may name the key by id or alias (CloudFormation takes both); kms_key_arn takes
            # only an ARN, which the aws_kms_key data source looks up.
            key_lookup = f'data "aws_kms_key" "{rn}" {{\n  key_id = {hcl(key)}\n}}'
            b.lines.append(("  " * b.indent) + f"kms_key_arn = data.aws_kms_key.{rn}.arn")
        elif key:
            b.attr("kms_key_arn", key)
        t.add(b)
    if p.get("Tags"):
        t.attr("tags", {x["Key"]: x["Value"] for x in p["Tags"]})
    # A migrated table holds data: refuse a plan that would destroy (or replace) it.
    life = t.block("lifecycle").attr("prevent_destroy", True)
    ignored = [a for setting, args in _TF_TABLE_ARGS.items() if setting in unread for a in args]
    if definition.replicas:
        # The provider reads a global table's replicas into `replica`: left out, they would be
        # planned away, and applying that deletes the replica tables.
        ignored.append("replica")
    if ignored:
        # Bare attribute names: ignore_changes takes references, not strings.
        life.lines.append(("  " * life.indent) + f"ignore_changes = [{', '.join(ignored)}]")
    t.add(life)
    parts = [_import(f"aws_dynamodb_table.{rn}", name), t.text()] + ([key_lookup] if key_lookup else [])
    ref = f"aws_dynamodb_table.{rn}"
    rp = p.get("ResourcePolicy")
    if rp:
        r = _Block(f'resource "aws_dynamodb_resource_policy" "{rn}"')
        r.lines.append(f"  resource_arn = {ref}.arn")
        r.lines.append(f"  policy       = jsonencode({hcl(rp['PolicyDocument'], 1)})")
        parts += [_import(f"aws_dynamodb_resource_policy.{rn}", definition.arn or f"<ARN of table {name}>",
                          None if definition.arn else "converted from a spec: put the table's ARN in id"),
                  r.text()]
    insights = [(None, p.get("ContributorInsightsSpecification"))] + \
        [(g["IndexName"], g.get("ContributorInsightsSpecification")) for g in p.get("GlobalSecondaryIndexes") or []]
    labels: Set[str] = set()
    for index, ci in insights:
        if not ci:
            continue
        label = base = rn if index is None else f"{rn}_{tf_name(index)}"
        # Index names that differ only in case or in "." / "_" make one resource name: Terraform
        # refuses a name declared twice, so the later ones are numbered.
        n = 1
        while label in labels:
            n += 1
            label = f"{base}_{n}"
        labels.add(label)
        r = _Block(f'resource "aws_dynamodb_contributor_insights" "{label}"')
        r.lines.append(f"  table_name = {ref}.name")
        if index:
            r.attr("index_name", index)
        if ci.get("Mode"):
            r.attr("mode", ci["Mode"])
        account = definition.arn.split(":")[4] if definition.arn and definition.arn.count(":") >= 5 else "ACCOUNT_ID"
        # The provider parses table/index/account and wants all three, the index empty for the table.
        iid = f"name:{name}/index:{index or ''}/{account}"
        parts += [_import(f"aws_dynamodb_contributor_insights.{label}", iid,
                          None if definition.arn else "converted from a spec: put the account id in id"), r.text()]
    ks = p.get("KinesisStreamSpecification")
    if ks:
        r = _Block(f'resource "aws_dynamodb_kinesis_streaming_destination" "{rn}"')
        r.lines.append(f"  table_name = {ref}.name")
        r.attr("stream_arn", ks["StreamArn"])
        if ks.get("ApproximateCreationDateTimePrecision"):
            r.attr("approximate_creation_date_time_precision", ks["ApproximateCreationDateTimePrecision"])
        parts += [_import(f"aws_dynamodb_kinesis_streaming_destination.{rn}", f"{name},{ks['StreamArn']}"), r.text()]
    head = f"# DynamoDB table {name}, exported by ddbmigrate: `terraform plan` adopts it through the import blocks.\n"
    head += _unread_comments(definition, "#", "left out, so Terraform keeps the table's own values",
                             {s: f"(lifecycle ignore_changes: {', '.join(a)})" for s, a in _TF_TABLE_ARGS.items()})
    if definition.replicas:
        head += (f"# Global table replicas ({', '.join(definition.replicas)}) are not exported: "
                 "lifecycle ignore_changes: replica keeps them.\n")
    if _provisioned_table(definition):
        head += f"# Note: {AUTO_SCALING_NOTE}.\n"
    need = _provider_needs(p)
    if need:
        version, why = need
        req = (f"# {why} hashicorp/aws {version} or later (merge this into the configuration's own "
               "required_providers, if it has one)\n"
               "terraform {\n  required_providers {\n    aws = {\n      source  = \"hashicorp/aws\"\n"
               f"      version = \">= {version}\"\n    }}\n  }}\n}}")
        parts.insert(0, req)
    return head + "\n\n".join(parts) + "\n"


# The aws provider release that first took each argument the export may write (its CHANGELOG).
_PROVIDER_SINCE = (("6.13.0", "warm_throughput"), ("6.11.0", "aws_dynamodb_contributor_insights mode"))


def _provider_needs(p: Dict[str, Any]) -> Optional[Tuple[str, str]]:
    """(oldest aws provider version, why) when the output uses arguments older providers reject.

    Only then: a table that needs nothing newer is not tied to a provider version."""
    gsis = p.get("GlobalSecondaryIndexes") or []
    used = {
        "warm_throughput": bool(p.get("WarmThroughput")) or any(g.get("WarmThroughput") for g in gsis),
        "aws_dynamodb_contributor_insights mode": any(
            (ci or {}).get("Mode") for ci in [p.get("ContributorInsightsSpecification")]
            + [g.get("ContributorInsightsSpecification") for g in gsis]),
    }
    for version, what in _PROVIDER_SINCE:
        if used[what]:
            names = [w for _v, w in _PROVIDER_SINCE if used[w]]
            return version, f"{' and '.join(names)} need{'s' if len(names) == 1 else ''}"
    return None


def _import(to: str, ident: str, todo: Optional[str] = None) -> str:
    head = f"# TODO {todo}\n" if todo else ""
    return f"{head}import {{\n  to = {to}\n  id = {hcl(ident)}\n}}"


# ------------------------------------------------------------------ CDK (TypeScript)

_TS_TYPES = {"S": "STRING", "N": "NUMBER", "B": "BINARY"}


def _ts(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _ts_key(defs: Dict[str, str], name: str) -> str:
    return f"{{ name: {_ts(name)}, type: dynamodb.AttributeType.{_TS_TYPES[defs[name]]} }}"


def to_cdk(definition: TableDefinition) -> str:
    if definition.is_global:
        # dynamodb.Table is AWS::DynamoDB::Table: `cdk import` would adopt one region's table alone.
        raise UsageError(f"{definition.name or 'table'} is a global table (replicas in "
                         f"{', '.join(_global_regions(definition))}): --as cdk writes a dynamodb.Table "
                         "(AWS::DynamoDB::Table), which would leave the replicas out; use --as cloudformation "
                         "(AWS::DynamoDB::GlobalTable, with every replica) or --as terraform",
                         table=definition.name)
    p = definition.props
    name = definition.name or "Table"
    defs = {a["AttributeName"]: a["AttributeType"] for a in p["AttributeDefinitions"]}
    cls = logical_id(name, "TableStack")
    props: List[str] = [f"tableName: {_ts(name)}",
                        f"partitionKey: {_ts_key(defs, _key(p['KeySchema'], 'HASH'))}"]
    if _key(p["KeySchema"], "RANGE"):
        props.append(f"sortKey: {_ts_key(defs, _key(p['KeySchema'], 'RANGE'))}")
    props.append(f"billingMode: dynamodb.BillingMode.{p['BillingMode']}")
    if p.get("ProvisionedThroughput"):
        props.append(f"readCapacity: {p['ProvisionedThroughput']['ReadCapacityUnits']}")
        props.append(f"writeCapacity: {p['ProvisionedThroughput']['WriteCapacityUnits']}")

    def throughput(x: Dict[str, Any], into: List[str]) -> None:
        od = x.get("OnDemandThroughput") or {}
        if "MaxReadRequestUnits" in od:
            into.append(f"maxReadRequestUnits: {od['MaxReadRequestUnits']}")
        if "MaxWriteRequestUnits" in od:
            into.append(f"maxWriteRequestUnits: {od['MaxWriteRequestUnits']}")
        if x.get("WarmThroughput"):
            wt = x["WarmThroughput"]
            into.append(f"warmThroughput: {{ readUnitsPerSecond: {wt['ReadUnitsPerSecond']}, "
                        f"writeUnitsPerSecond: {wt['WriteUnitsPerSecond']} }}")

    def insights(ci: Any, into: List[str]) -> None:
        if ci:
            mode = f", mode: dynamodb.ContributorInsightsMode.{ci['Mode']}" if ci.get("Mode") else ""
            into.append(f"contributorInsightsSpecification: {{ enabled: true{mode} }}")

    throughput(p, props)
    if p.get("StreamSpecification"):
        props.append(f"stream: dynamodb.StreamViewType.{p['StreamSpecification']['StreamViewType']}")
    if p.get("TimeToLiveSpecification"):
        props.append(f"timeToLiveAttribute: {_ts(p['TimeToLiveSpecification']['AttributeName'])}")
    pitr = p.get("PointInTimeRecoverySpecification")
    if pitr:
        days = f", recoveryPeriodInDays: {pitr['RecoveryPeriodInDays']}" if pitr.get("RecoveryPeriodInDays") else ""
        props.append(f"pointInTimeRecoverySpecification: {{ pointInTimeRecoveryEnabled: true{days} }}")
    if "DeletionProtectionEnabled" not in definition.unread:
        props.append(f"deletionProtection: {'true' if p.get('DeletionProtectionEnabled') else 'false'}")
    sse = p.get("SSESpecification")
    imports = ["cdk", "dynamodb"]
    if sse and sse.get("KMSMasterKeyId"):
        imports.append("kms")
        props.append("encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED")
        key = sse["KMSMasterKeyId"]
        # fromKeyArn refuses at synth what is not an ARN: a spec may name the key by alias or id.
        if key.startswith("alias/"):
            ref = f"kms.Alias.fromAliasName(this, 'TableKey', {_ts(key)})"
        elif not key.startswith("arn:"):
            ref = (f"kms.Key.fromKeyArn(this, 'TableKey', this.formatArn({{ service: 'kms', resource: 'key', "
                   f"resourceName: {_ts(key)} }}))")
        else:
            ref = f"kms.Key.fromKeyArn(this, 'TableKey', {_ts(key)})"
        props.append(f"encryptionKey: {ref}")
    elif sse:
        props.append("encryption: dynamodb.TableEncryption.AWS_MANAGED")
    if p.get("TableClass"):
        props.append(f"tableClass: dynamodb.TableClass.{p['TableClass']}")
    insights(p.get("ContributorInsightsSpecification"), props)
    if p.get("ResourcePolicy"):
        imports.append("iam")
        doc = json.dumps(p["ResourcePolicy"]["PolicyDocument"], indent=2, ensure_ascii=False).replace("\n", "\n      ")
        props.append(f"resourcePolicy: iam.PolicyDocument.fromJson({doc})")
    if p.get("KinesisStreamSpecification"):
        imports.append("kinesis")
        props.append("kinesisStream: kinesis.Stream.fromStreamArn(this, 'KinesisDestination', "
                     f"{_ts(p['KinesisStreamSpecification']['StreamArn'])})")
        precision = p["KinesisStreamSpecification"].get("ApproximateCreationDateTimePrecision")
        if precision:
            props.append(f"kinesisPrecisionTimestamp: dynamodb.ApproximateCreationDateTimePrecision.{precision}")
    props.append("removalPolicy: cdk.RemovalPolicy.RETAIN")
    body = [f"    const table = new dynamodb.Table(this, {_ts(logical_id(name))}, {{"]
    body += [f"      {x}," for x in props]
    body.append("    });")
    for g in p.get("GlobalSecondaryIndexes") or []:
        gp = [f"indexName: {_ts(g['IndexName'])}", f"partitionKey: {_ts_key(defs, _key(g['KeySchema'], 'HASH'))}"]
        if _key(g["KeySchema"], "RANGE"):
            gp.append(f"sortKey: {_ts_key(defs, _key(g['KeySchema'], 'RANGE'))}")
        gp += _projection_ts(g)
        if g.get("ProvisionedThroughput"):
            gp.append(f"readCapacity: {g['ProvisionedThroughput']['ReadCapacityUnits']}")
            gp.append(f"writeCapacity: {g['ProvisionedThroughput']['WriteCapacityUnits']}")
        throughput(g, gp)
        insights(g.get("ContributorInsightsSpecification"), gp)
        body.append("    table.addGlobalSecondaryIndex({ " + ", ".join(gp) + " });")
    for g in p.get("LocalSecondaryIndexes") or []:
        lp = [f"indexName: {_ts(g['IndexName'])}", f"sortKey: {_ts_key(defs, _key(g['KeySchema'], 'RANGE'))}"]
        lp += _projection_ts(g)
        body.append("    table.addLocalSecondaryIndex({ " + ", ".join(lp) + " });")
    for t in p.get("Tags") or []:
        body.append(f"    cdk.Tags.of(table).add({_ts(t['Key'])}, {_ts(t['Value'])});")
    modules = {"cdk": "aws-cdk-lib", "dynamodb": "aws-cdk-lib/aws-dynamodb", "kms": "aws-cdk-lib/aws-kms",
               "iam": "aws-cdk-lib/aws-iam", "kinesis": "aws-cdk-lib/aws-kinesis"}
    unread_note = _unread_comments(definition, "//", "left out, so the stack does not set them")
    head = [f"// DynamoDB table {name}, exported by ddbmigrate. Adopt it with `cdk import` (see docs/iac.md).",
            *unread_note.splitlines(),
            *[f"import * as {m} from '{modules[m]}';" for m in imports],
            "import { Construct } from 'constructs';", "",
            f"export class {cls} extends cdk.Stack {{",
            "  constructor(scope: Construct, id: string, props?: cdk.StackProps) {",
            "    super(scope, id, props);"]
    return "\n".join(head + body + ["  }", "}", ""])


def _projection_ts(g: Dict[str, Any]) -> List[str]:
    out = [f"projectionType: dynamodb.ProjectionType.{g['Projection']['ProjectionType']}"]
    if g["Projection"].get("NonKeyAttributes"):
        out.append(f"nonKeyAttributes: {_ts(g['Projection']['NonKeyAttributes'])}")
    return out
