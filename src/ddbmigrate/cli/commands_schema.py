"""``ddbmigrate create-table``: a table from a CloudFormation-shaped spec, waited until ACTIVE.

Thin: parse options, call :func:`ddbmigrate.aws.tables.create_table_from_spec`, print a summary.
Spec errors are UsageErrors naming the file and the field (exit 2).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import click

from ..aws.tables import create_table_from_spec
from .options import aws_options, pass_kwargs
from .render import handle_errors


def _keys(ks: List[Dict[str, str]], types: Dict[str, str]) -> str:
    return ", ".join(f"{k['AttributeName']} {k['KeyType']} {types.get(k['AttributeName'], '?')}" for k in ks)


def summary(desc: Dict[str, Any]) -> List[str]:
    """Lines describing the created table (keys, indexes, stream, status)."""
    types = {a["AttributeName"]: a["AttributeType"] for a in desc.get("AttributeDefinitions") or []}
    lines = [f"created table {desc['TableName']} ({desc.get('TableStatus', '?')}): {_keys(desc['KeySchema'], types)}"]
    for kind, label in (("GlobalSecondaryIndexes", "GSI"), ("LocalSecondaryIndexes", "LSI")):
        for g in desc.get(kind) or []:
            proj = (g.get("Projection") or {}).get("ProjectionType", "ALL")
            lines.append(f"  {label} {g['IndexName']}: {_keys(g['KeySchema'], types)}; projection {proj}")
    ss = desc.get("StreamSpecification") or {}
    if ss.get("StreamEnabled"):
        lines.append(f"  stream: {ss.get('StreamViewType')}")
    if desc.get("TimeToLiveAttribute"):
        lines.append(f"  time to live: {desc['TimeToLiveAttribute']}")
    if desc.get("NotApplied"):
        lines.append(f"  note: not applied by ddbmigrate: {', '.join(desc['NotApplied'])}")
    return lines


@click.command("create-table")
@click.argument("table", required=False)
@click.option("--spec", "spec", required=True, type=click.Path(dir_okay=False),
              help="Table spec (YAML or JSON) in the shape of CloudFormation's AWS::DynamoDB::Table properties.")
@aws_options
@click.option("--quiet", "-q", is_flag=True, help="Print nothing on success.")
@handle_errors
@pass_kwargs
def create_table_cmd(kw: Dict[str, Any]) -> int:
    """Create TABLE (default: the spec's TableName) from --spec and wait until it is ACTIVE."""
    table: Optional[str] = kw.get("table")
    desc = create_table_from_spec(kw["spec"], table, region=kw.get("region"), profile=kw.get("profile"),
                                  endpoint_url=kw.get("endpoint_url"), role_arn=kw.get("role_arn"))
    if not kw.get("quiet"):
        for line in summary(desc):
            click.echo(line)
    return 0


def register(group: click.Group) -> None:
    group.add_command(create_table_cmd)
