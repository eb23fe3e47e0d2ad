"""Spec files -> table definitions: every AWS::DynamoDB::Table property, checked field by field.

The keys, indexes, billing and stream are checked by :func:`ddbmigrate.aws.tables.spec_to_request`
(the CreateTable core every spec user shares); this module checks the other settings and returns
the whole definition. Errors are UsageErrors naming the file and the field (exit 2), raised before
anything is created.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

from ..aws.tables import load_spec, spec_to_request
from ..errors import UsageError
from ..sources.lines import duplicate_reason, duplicate_recorder
from .model import TableDefinition, normalize

TABLE_CLASSES = ("STANDARD", "STANDARD_INFREQUENT_ACCESS")
INSIGHTS_MODES = ("ACCESSED_AND_THROTTLED_KEYS", "THROTTLED_KEYS")
KINESIS_PRECISIONS = ("MILLISECOND", "MICROSECOND")


def _mapping(v: Any, where: str) -> Dict[str, Any]:
    if not isinstance(v, dict):
        raise UsageError(f"table spec: {where} must be a mapping")
    return v


def _bool(d: Dict[str, Any], key: str, where: str, required: bool = True) -> None:
    if key not in d:
        if required:
            raise UsageError(f"table spec: {where}.{key} is required")
        return
    if not isinstance(d[key], bool):
        raise UsageError(f"table spec: {where}.{key} must be true or false")


def _positive(d: Dict[str, Any], key: str, where: str, low: int = 1, high: Optional[int] = None) -> None:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < low or (high is not None and v > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise UsageError(f"table spec: {where}.{key} must be an integer {bound}")


def _known(d: Dict[str, Any], keys: tuple, where: str) -> None:  # type: ignore[type-arg]
    for k in d:
        if k not in keys:
            raise UsageError(f"table spec: unknown property {where}.{k} (expected {', '.join(keys)})")


def _throughputs(d: Dict[str, Any], where: str, mode: str) -> None:
    od = d.get("OnDemandThroughput")
    if od is not None:
        od = _mapping(od, f"{where}OnDemandThroughput")
        _known(od, ("MaxReadRequestUnits", "MaxWriteRequestUnits"), f"{where}OnDemandThroughput")
        for k in od:
            if od[k] != -1:
                _positive(od, k, f"{where}OnDemandThroughput")
        if mode != "PAY_PER_REQUEST":
            raise UsageError(f"table spec: {where}OnDemandThroughput needs BillingMode PAY_PER_REQUEST")
    wt = d.get("WarmThroughput")
    if wt is not None:
        wt = _mapping(wt, f"{where}WarmThroughput")
        _known(wt, ("ReadUnitsPerSecond", "WriteUnitsPerSecond"), f"{where}WarmThroughput")
        for k in wt:
            _positive(wt, k, f"{where}WarmThroughput")
    ci = d.get("ContributorInsightsSpecification")
    if ci is not None:
        ci = _mapping(ci, f"{where}ContributorInsightsSpecification")
        _known(ci, ("Enabled", "Mode"), f"{where}ContributorInsightsSpecification")
        _bool(ci, "Enabled", f"{where}ContributorInsightsSpecification")
        if "Mode" in ci and ci["Mode"] not in INSIGHTS_MODES:
            raise UsageError(f"table spec: {where}ContributorInsightsSpecification.Mode must be "
                             f"{' or '.join(INSIGHTS_MODES)}")


def check_settings(props: Dict[str, Any]) -> None:
    """Check the properties beyond keys, indexes, billing and stream (types and allowed values)."""
    mode = props.get("BillingMode", "PAY_PER_REQUEST")
    if "DeletionProtectionEnabled" in props:
        _bool(props, "DeletionProtectionEnabled", "")
    pitr = props.get("PointInTimeRecoverySpecification")
    if pitr is not None:
        w = "PointInTimeRecoverySpecification"
        pitr = _mapping(pitr, w)
        _known(pitr, ("PointInTimeRecoveryEnabled", "RecoveryPeriodInDays"), w)
        _bool(pitr, "PointInTimeRecoveryEnabled", w)
        if "RecoveryPeriodInDays" in pitr:
            _positive(pitr, "RecoveryPeriodInDays", w, 1, 35)
    sse = props.get("SSESpecification")
    if sse is not None:
        w = "SSESpecification"
        sse = _mapping(sse, w)
        _known(sse, ("SSEEnabled", "SSEType", "KMSMasterKeyId"), w)
        _bool(sse, "SSEEnabled", w)
        if sse.get("SSEType", "KMS") != "KMS":
            raise UsageError("table spec: SSESpecification.SSEType must be KMS")
        if sse.get("KMSMasterKeyId") is not None and not (isinstance(sse["KMSMasterKeyId"], str)
                                                           and sse["KMSMasterKeyId"]):
            raise UsageError("table spec: SSESpecification.KMSMasterKeyId must be a key id, ARN or alias")
        if sse.get("KMSMasterKeyId") and not sse.get("SSEEnabled"):
            raise UsageError("table spec: SSESpecification.KMSMasterKeyId needs SSEEnabled: true")
    ttl = props.get("TimeToLiveSpecification")
    if ttl is not None:
        w = "TimeToLiveSpecification"
        ttl = _mapping(ttl, w)
        _known(ttl, ("AttributeName", "Enabled"), w)
        _bool(ttl, "Enabled", w)  # "false" is a string, and true to Python: refused, not enabled
        name = ttl.get("AttributeName")
        if name is not None and not (isinstance(name, str) and name):
            raise UsageError(f"table spec: {w}.AttributeName must be an attribute name")
        if ttl["Enabled"] and not name:
            raise UsageError(f"table spec: {w}.AttributeName is required when Enabled")
    if "TableClass" in props and props["TableClass"] not in TABLE_CLASSES:
        raise UsageError(f"table spec: TableClass must be {' or '.join(TABLE_CLASSES)}")
    tags = props.get("Tags")
    if tags is not None:
        if not isinstance(tags, list):
            raise UsageError("table spec: Tags must be a list of {Key, Value}")
        seen = set()
        for i, t in enumerate(tags):
            if not isinstance(t, dict) or not isinstance(t.get("Key"), str) or not t["Key"]:
                raise UsageError(f"table spec: Tags[{i}] needs a string Key and Value")
            _known(t, ("Key", "Value"), f"Tags[{i}]")
            # CloudFormation requires Value (an empty string is a value; a missing one is not).
            if t.get("Value") is None:
                raise UsageError(f"table spec: Tags[{i}].Value is required for tag {t['Key']!r} "
                                 "(write Value: '' for an empty one)")
            if not isinstance(t["Value"], str):
                raise UsageError(f"table spec: Tags[{i}].Value must be a string")
            if t["Key"] in seen:
                raise UsageError(f"table spec: Tags[{i}].Key {t['Key']!r} appears twice")
            seen.add(t["Key"])
    rp = props.get("ResourcePolicy")
    if rp is not None:
        rp = _mapping(rp, "ResourcePolicy")
        _known(rp, ("PolicyDocument",), "ResourcePolicy")
        doc = rp.get("PolicyDocument")
        if isinstance(doc, str):
            found, pairs = duplicate_recorder()
            try:
                doc = json.loads(doc, object_pairs_hook=pairs)
            except ValueError as e:
                raise UsageError(f"table spec: ResourcePolicy.PolicyDocument is not valid JSON: {e}") from None
            if found:
                # IAM would read one of the two; which one is not ours to guess.
                raise UsageError(f"table spec: ResourcePolicy.PolicyDocument: {duplicate_reason(found[0])}")
        if not isinstance(doc, dict) or "Statement" not in doc:
            raise UsageError("table spec: ResourcePolicy.PolicyDocument must be an IAM policy (with Statement)")
    ks = props.get("KinesisStreamSpecification")
    if ks is not None:
        w = "KinesisStreamSpecification"
        ks = _mapping(ks, w)
        _known(ks, ("StreamArn", "ApproximateCreationDateTimePrecision"), w)
        if not isinstance(ks.get("StreamArn"), str) or not ks["StreamArn"].startswith("arn:"):
            raise UsageError(f"table spec: {w}.StreamArn must be a Kinesis stream ARN")
        if "ApproximateCreationDateTimePrecision" in ks and \
                ks["ApproximateCreationDateTimePrecision"] not in KINESIS_PRECISIONS:
            raise UsageError(f"table spec: {w}.ApproximateCreationDateTimePrecision must be "
                             f"{' or '.join(KINESIS_PRECISIONS)}")
    _throughputs(props, "", mode)
    for i, g in enumerate(props.get("GlobalSecondaryIndexes") or []):
        _throughputs(g, f"GlobalSecondaryIndexes[{i}].", mode)
    for i, g in enumerate(props.get("LocalSecondaryIndexes") or []):
        for k in ("ProvisionedThroughput", "OnDemandThroughput", "WarmThroughput", "ContributorInsightsSpecification"):
            if k in g:
                raise UsageError(f"table spec: LocalSecondaryIndexes[{i}].{k} is not a local index setting "
                                 "(a local index shares the table's)")


def definition_from_spec(spec: Dict[str, Any], table: Optional[str] = None, *,
                         path: str = "") -> TableDefinition:
    """A loaded spec (properties, a resource, or a template) -> its TableDefinition.

    ``table`` overrides the spec's TableName. Errors are one line naming ``path`` and the field.
    """
    try:
        props = spec.get("Properties", spec) if isinstance(spec, dict) else None
        if not isinstance(props, dict):
            raise UsageError("table spec: must be a mapping of AWS::DynamoDB::Table properties")
        name = table or props.get("TableName")
        if not name:
            raise UsageError("table spec: TableName is required (or give the table name on the command line)")
        spec_to_request(props, table_name=str(name))  # keys, indexes, billing, stream, unknown fields
        check_settings(props)
    except UsageError as e:
        if path:
            raise UsageError(e.message.replace("table spec:", f"table spec {path}:", 1)) from None
        raise
    notes = []
    if props.get("ImportSourceSpecification"):
        notes.append("ImportSourceSpecification: ddbmigrate creates the table empty; load data with "
                     "`ddbmigrate import` (or --native)")
    d = normalize(dict(props, TableName=str(name)))
    return TableDefinition(props=d, notes=notes, label=f"spec {path}" if path else "spec")


def load_definition(path: str, table: Optional[str] = None) -> TableDefinition:
    """Read and check a spec file (YAML/JSON: properties, a resource or a one-table template)."""
    return definition_from_spec(load_spec(path), table, path=path)


def is_spec_path(arg: str) -> bool:
    """Whether a command-line argument names a spec file rather than a table."""
    import os

    if arg.startswith("arn:"):
        return False  # a table ARN has a "/" but is a table
    return os.path.isfile(arg) or arg.lower().endswith((".yaml", ".yml", ".json")) or os.sep in arg
