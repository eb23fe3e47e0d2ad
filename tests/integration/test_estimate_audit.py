"""Audit fixes of ``estimate`` against DynamoDB Local: each side's region prices, the header, the
source's indexes, the write cap with a GSI, a topped-up sample of a hot key, ImportTable of files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import orjson
import pytest
from click.testing import CliRunner
from support import create_table, put_items, unique

from ddbmigrate.cli import main

pytestmark = pytest.mark.integration

GSI = [{"IndexName": "GS1", "KeySchema": [{"AttributeName": "gpk", "KeyType": "HASH"}],
        "Projection": {"ProjectionType": "ALL"}}]


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _json(*args: str) -> Dict[str, Any]:
    r = _cli("estimate", *args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def _gsi_source(endpoint: str, n: int = 40) -> str:
    src = create_table(endpoint, gsis=GSI)
    put_items(endpoint, src, [{"pk": {"S": f"p{i:04d}"}, "gpk": {"S": f"g{i:04d}"}, "data": {"S": "x" * 1500}}
                              for i in range(n)])
    return src


def test_cross_region_copy_prices_each_side_in_its_region(endpoint: str) -> None:
    src = _gsi_source(endpoint)
    args = (src, unique("t"), "--endpoint-url", endpoint, "--source-region", "ap-northeast-1",
            "--target-region", "us-east-1")
    doc = _json("copy", *args)
    assert doc["prices"]["rates_region"] == "us-east-1"
    assert doc["prices"]["source_side"]["rates_region"] == "ap-northeast-1"
    lanes = {ln["lane"]: ln for ln in doc["lanes"]}
    engine = lanes["engine"]
    read = engine["read_units"]["total"]
    assert engine["cost_parts_usd"]["read units"] == pytest.approx(read * 0.1425 / 1e6, rel=1e-3)  # JSON: 10 decimals
    assert engine["cost_parts_usd"]["write units"] == pytest.approx(engine["write_units"]["total"] * 0.625 / 1e6, rel=1e-3)
    # Tokyo's export price is unknown: the native export is not priced at us-east-1's $0.10/GB
    assert lanes["import-table"]["cost_parts_usd"]["native export"] is None
    assert lanes["import-table"]["cost_usd"] is None
    assert any("inter-region data transfer" in a for a in doc["assumptions"])
    text = _cli("estimate", "copy", *args)
    assert text.exit_code == 0 and "prices: reads ap-northeast-1 of 2026-09, writes us-east-1 of" in text.stdout


def test_header_names_the_fallback_prices_and_the_source_indexes_are_listed(endpoint: str) -> None:
    src = _gsi_source(endpoint, 5)
    r = _cli("estimate", "copy", src, unique("t"), "--endpoint-url", endpoint, "--region", "eu-west-1")
    assert r.exit_code == 0, r.output
    assert "  prices: us-east-1 (none for eu-west-1 in the prices file) of " in r.stdout
    doc = _json("copy", src, unique("t"), "--endpoint-url", endpoint, "--region", "us-east-1")
    assert doc["inputs"]["source_table"]["indexes"] == ["GS1"]


def test_max_write_units_counts_the_gsi_writes(endpoint: str) -> None:
    """40 items of 2 WCU on the table and 2 on GS1 (ALL): 160 units at 10 units/s is 16 s."""
    src = _gsi_source(endpoint)
    doc = _json("copy", src, unique("t"), "--endpoint-url", endpoint, "--region", "us-east-1",
                "--max-write-units", "10")
    engine = next(ln for ln in doc["lanes"] if ln["lane"] == "engine")
    assert engine["write_units"] == {"table": 80, "GS1": 80, "total": 160}
    assert engine["duration_s"] == pytest.approx(16.0) and engine["limited_by"] == "write limit (--max-write-units)"


def test_a_hot_key_filling_one_segment_gets_the_others_share(endpoint: str) -> None:
    """2,000 items, 1,800 under pk "HOT" (one segment): the sample of 1,000 is topped up to 1,000
    and sees the hot key in about its true share, where 4 fixed shares of 250 saw 25 %."""
    src = create_table(endpoint, range_key=("sk", "N"))
    rows: List[Dict[str, Any]] = [{"pk": {"S": "HOT" if i % 10 else f"u{i}"}, "sk": {"N": str(i)},
                                   "v": {"S": "x" * 20}} for i in range(2000)]
    put_items(endpoint, src, rows)
    doc = _json("copy", src, unique("t"), "--endpoint-url", endpoint, "--region", "us-east-1")
    assert doc["inputs"]["sample"]["items"] == 1000
    hot = doc["keys"]["table"]["hottest"]
    assert hot["value"] == "HOT" and hot["share_of_items"] >= 0.75


def test_import_table_of_uncompressed_files_is_priced_by_their_size(endpoint: str, tmp_path: Path) -> None:
    data = tmp_path / "in"
    data.mkdir()
    lines = b"".join(b'{"Item":' + orjson.dumps({"pk": {"S": f"k{i}"}, "v": {"S": "y" * 200}}) + b"}\n"
                     for i in range(50))
    (data / "part.json").write_bytes(lines)
    spec = tmp_path / "spec.yaml"
    spec.write_text("BillingMode: PAY_PER_REQUEST\nAttributeDefinitions: [{AttributeName: pk, AttributeType: S}]\n"
                    "KeySchema: [{AttributeName: pk, KeyType: HASH}]\n")
    doc = _json("import", str(data), unique("new"), "--endpoint-url", endpoint, "--region", "us-east-1",
                "--spec", str(spec))
    imp = next(ln for ln in doc["lanes"] if ln["lane"] == "import-table")
    assert imp["cost_parts_usd"]["ImportTable"] == pytest.approx(len(lines) / 1024 ** 3 * 0.15, rel=1e-3)


@pytest.mark.parametrize("name, data", [
    ("garbage.json.zst", b"\x28\xb5\x2f\xfd" + b"garbage" * 20),  # a zstd header, then no zstd
    ("cut.json.gz", None),  # a gzip stream cut short
])
def test_a_file_the_import_would_refuse_is_not_estimated_as_read_whole(endpoint: str, tmp_path: Path, name: str,
                                                                        data: Any) -> None:
    """Before: "source: 0 items, 0 bytes (the sample is the whole source)", exit 0; the import of
    the same file fails (BadFile). Now the estimate says the file's problem, as the import would."""
    import gzip

    if data is None:
        whole = gzip.compress(b"".join(b'{"Item":{"pk":{"S":"k%d"}}}\n' % i for i in range(800)))
        data = whole[: len(whole) // 2]
    (tmp_path / name).write_bytes(data)
    r = _cli("estimate", "import", str(tmp_path / name), create_table(endpoint), "--endpoint-url", endpoint)
    assert r.exit_code == 1, r.output
    assert name in r.output and "the import would stop on it too" in r.output, r.output
