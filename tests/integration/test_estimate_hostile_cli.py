"""Acceptance probes of ``ddbmigrate estimate`` against DynamoDB Local: the write units of items at
the 1 KB boundary, with a KEYS_ONLY index, are the units DynamoDB Local itself consumes; inputs so
far out of range that a time is infinite are one usage line (exit 2), not an internal error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import pytest
from click.testing import CliRunner
from support import boto_client, create_table, one_usage_line, unique

from ddbmigrate.cli import main

pytestmark = pytest.mark.integration

GSI = [{"IndexName": "byG", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
        "Projection": {"ProjectionType": "KEYS_ONLY"}}]


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _item(i: int, size: int) -> Dict[str, Any]:
    """An item of exactly ``size`` bytes (names + values, as DynamoDB counts them)."""
    pk, g = f"k{i:05d}", f"g{i % 3}"
    fixed = len("pk") + len(pk) + len("g") + len(g) + len("d")
    return {"pk": {"S": pk}, "g": {"S": g}, "d": {"S": "x" * (size - fixed)}}


def test_write_units_at_the_1kb_boundary_are_what_dynamodb_consumes(endpoint: str) -> None:
    src = create_table(endpoint, gsis=GSI)
    c = boto_client(endpoint)
    consumed = {"table": 0.0, "byG": 0.0}
    for i, size in enumerate([1023, 1024, 1025, 2048, 2049, 4096, 4097] * 2):
        cc = c.put_item(TableName=src, Item=_item(i, size), ReturnConsumedCapacity="INDEXES")["ConsumedCapacity"]
        consumed["table"] += cc["Table"]["CapacityUnits"]
        consumed["byG"] += cc["GlobalSecondaryIndexes"]["byG"]["CapacityUnits"]
    assert consumed == {"table": 2 * (1 + 1 + 2 + 2 + 3 + 4 + 5), "byG": 14.0}  # the index: keys only, 1 each
    r = _cli("estimate", "copy", src, unique("t"), "--endpoint-url", endpoint, "--json")
    assert r.exit_code == 0, r.output
    engine = {ln["lane"]: ln for ln in json.loads(r.stdout)["lanes"]}["engine"]
    assert engine["write_units"] == {"table": consumed["table"], "byG": consumed["byG"],
                                     "total": consumed["table"] + consumed["byG"]}


def test_a_limit_or_figure_that_makes_the_time_infinite_is_one_usage_line(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint)
    boto_client(endpoint).put_item(TableName=src, Item={"pk": {"S": "a"}, "d": {"S": "x" * 100}})
    args = ("estimate", "copy", src, unique("t"), "--endpoint-url", endpoint)
    # 1 unit / 1e-320 units/s is an infinite time: it was "internal error: OverflowError" (exit 1)
    one_usage_line(_cli(*args, "--max-write-units", "1e-320"), "write limit (--max-write-units)", "not a finite")
    one_usage_line(_cli(*args, "--max-read-units", "1e-320", "--json"), "source read capacity", "not a finite")
    figures = tmp_path / "prices.json"
    figures.write_text(json.dumps({"throughput": {"on_demand_new_table_write_units": 1e-320}}))
    one_usage_line(_cli(*args, "--prices", str(figures)), "target table capacity", "not a finite")
