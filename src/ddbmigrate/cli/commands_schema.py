"""``ddbmigrate create-table``, ``ddbmigrate schema diff`` and ``ddbmigrate schema export``.

Thin: parse options, call one function of :mod:`ddbmigrate.schema`, print. Spec errors are
UsageErrors naming the file and the field (exit 2); ``schema diff`` exits 4 on differences.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, Optional, Union

import click
import orjson

from ..config import TableRef
from ..schema.apply import create_table_from_spec
from .options import aws_options, endpoint_option, pass_kwargs, table_ref, two_sided_aws_options
from .render import handle_errors


@click.command("create-table")
@click.argument("table", required=False)
@click.option("--spec", "spec", required=True, type=click.Path(dir_okay=False),
              help="Table spec (YAML or JSON) in the shape of CloudFormation's AWS::DynamoDB::Table properties.")
@click.option("--kms-key", "--target-kms-key", "kms_key",
              help="Encrypt the table with this KMS key (overrides the spec's KMSMasterKeyId).")
@aws_options
@click.option("--quiet", "-q", is_flag=True, help="Print nothing on success.")
@handle_errors
@pass_kwargs
def create_table_cmd(kw: Dict[str, Any]) -> int:
    """Create TABLE (default: the spec's TableName) from --spec with every setting it gives.

    Waits until the table is ACTIVE, applies TTL, PITR, contributor insights and the resource
    policy, reads the table back and prints one line per setting not applied, with the reason.
    """
    table: Optional[str] = kw.get("table")
    desc = create_table_from_spec(kw["spec"], table, region=kw.get("region"), profile=kw.get("profile"),
                                  endpoint_url=endpoint_option(kw.get("endpoint_url")), role_arn=kw.get("role_arn"),
                                  kms_key=kw.get("kms_key"))
    if not kw.get("quiet"):
        for line in desc["Lines"]:
            click.echo(line)
    return 0


@click.group("schema")
def schema_group() -> None:
    """Table definitions: compare two tables (or a table and a spec), export one as code.

    \b
    ddbmigrate schema diff A B                  settings that differ (exit 0 equal, 4 different)
    ddbmigrate schema export TABLE --as FORMAT  spec | cloudformation | terraform | cdk
    """


def _side(arg: str, kw: Dict[str, Any], side: str) -> Union[TableRef, str]:
    from ..schema.spec import is_spec_path

    return arg if is_spec_path(arg) else table_ref(arg, kw, side or None)


@schema_group.command("diff")
@click.argument("a")
@click.argument("b")
@two_sided_aws_options
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing; the exit code says it (0 equal, 4 different).")
@handle_errors
@pass_kwargs
def schema_diff_cmd(kw: Dict[str, Any]) -> int:
    """Settings that differ between A and B: each a table (name or ARN) or a spec file.

    A takes the --source-* options and B the --target-* options (as in `copy`). Compared: keys,
    indexes (each setting of each), billing and throughput, stream, TTL, PITR, deletion
    protection, encryption, table class, contributor insights, resource policy, Kinesis
    destination, tags. Exit 0 when equal, 4 on differences.
    """
    from ..schema.diff import lines, schema_diff

    d = schema_diff(_side(kw["a"], kw, "source"), _side(kw["b"], kw, "target"))
    if kw.get("as_json"):
        click.echo(orjson.dumps(d.to_dict(), option=orjson.OPT_INDENT_2).decode())
    elif not kw.get("quiet"):
        for line in lines(d):
            click.echo(line)
    return d.exit_code


@schema_group.command("export")
@click.argument("table")
@click.option("--as", "fmt", type=click.Choice(["spec", "cloudformation", "terraform", "cdk"]), default="spec",
              show_default=True, help="Output: ddbmigrate's spec, a CloudFormation template, Terraform, CDK (TypeScript).")
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False), help="Write to FILE instead of stdout.")
@aws_options
@click.option("--quiet", "-q", is_flag=True, help="No notes on stderr.")
@handle_errors
@pass_kwargs
def schema_export_cmd(kw: Dict[str, Any]) -> int:
    """TABLE's full definition as code, to adopt it without ImportSourceSpecification (docs/iac.md).

    TABLE is a table (name or ARN), or a spec file to convert (e.g. a spec into CloudFormation).
    """
    from ..schema.read import definition_of
    from ..schema.render import export_notes, render

    side = _side(kw["table"], kw, "")
    if isinstance(side, str):
        from ..aws.tables import load_spec
        from ..errors import UsageError
        from ..schema.spec import definition_from_spec

        spec = load_spec(side)
        props = spec.get("Properties", spec)
        if isinstance(props, dict) and not props.get("TableName"):
            # Every format names the table (Terraform's import block, CloudFormation's resource
            # import): under a made-up name, the output would adopt or create another table.
            raise UsageError(f"table spec {side}: TableName is required to export it")
        definition = definition_from_spec(spec, path=side)
    else:
        definition = definition_of(side)
    text = render(definition, kw["fmt"])
    if kw.get("output"):
        from ..state.checkpoint import atomic_write

        atomic_write(kw["output"], text.encode("utf-8"))
    else:
        sys.stdout.write(text)
    if not kw.get("quiet"):
        for line in export_notes(definition, kw["fmt"]):
            click.echo(line, err=True)
    return 0


def preflight(source: TableRef, target: TableRef, quiet: bool) -> None:
    """copy/replicate/cutover: say on stderr when the existing target's settings differ."""
    if quiet:
        return
    from ..schema.diff import preflight_note

    note = preflight_note(source, target)
    if note:
        click.echo(note, err=True)


def register(group: click.Group) -> None:
    group.add_command(create_table_cmd)
    group.add_command(schema_group)
