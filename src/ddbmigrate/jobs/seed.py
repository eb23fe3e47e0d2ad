"""Seeding sample tables (the demo, the tests, the benchmarks): generated items into a table.

Seeding runs through the same pipeline and batch writer as a copy (a generator source), so it is
as fast as a copy.
"""

from __future__ import annotations

from typing import Any, Dict

from ..aws.client import DynamoClient
from ..core.items import KeySchema
from ..core.processing import Processing
from ..engine.pipeline import Pipeline
from ..sinks.table_writer import TableWriter
from ..sources.generated import GeneratedSource


def create_sample_table(client: DynamoClient, table: str, *, range_key: bool = False) -> Dict[str, Any]:
    from ..aws.tables import create_table

    attrs = [{"AttributeName": "pk", "AttributeType": "S"}]
    keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
    if range_key:
        attrs.append({"AttributeName": "sk", "AttributeType": "N"})
        keys.append({"AttributeName": "sk", "KeyType": "RANGE"})
    return create_table(client, {"TableName": table, "AttributeDefinitions": attrs, "KeySchema": keys,
                                 "BillingMode": "PAY_PER_REQUEST"})


def seed_table(client: DynamoClient, table: str, count: int, *, size: int = 1000, writers: int = 8,
               range_key: bool = False, start: int = 0) -> int:
    """Write ``count`` sample items into ``table`` (which must exist). Returns the count written."""
    desc = client.describe_table(table)
    keys = KeySchema.from_table_description(desc)
    src = GeneratedSource(count, size=size, hash_name=keys.hash_name,
                          range_name=keys.range_name if range_key or keys.range_name else None, start=start)
    p = Pipeline(src, TableWriter(client, table, keys), Processing(key_schema=keys, trusted=True),
                 readers=2, writers=writers)
    p.run()
    return p.counters.snapshot()["written"]
